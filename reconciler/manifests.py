"""Reading the desired state: manifest files into validated `Desired` endpoints, or located errors.

Files are read recursively (`*.yaml`, `*.yml`) in sorted order, several documents per file, by
`reconciler.manifests_yaml` (the YAML rules and the parsing bounds); every value keeps its line, so
each error reads `file:line: field.path: message`.

Validation is offline and reports everything at once: the manifest format (`reconciler.model`),
the id rules, then the service catalog for the chosen Elasticsearch version, after references are
resolved (`reconciler.resolver`; offline, only their syntax is checked, and the catalog's verdict
on a value from a reference is dropped). Secrets never reach a message: the catalog is shown a
placeholder in their place, and messages never print a value.

A value that came from a reference is a secret in any field (DESIGN.md §9): besides the catalog's
secret fields, every `service_settings` value holding a `${...}` (at `key` or `key.inner`) goes to
`Desired.secrets` / `secret_references` and out of `service_settings`, so plans show `(sensitive)`,
compare its digest and send its reference. A reference anywhere else (a list, deeper, another
section, the top level) is refused: nothing could keep it from being shown. `$${` stays literal.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reconciler import catalog
from reconciler.catalog import Kind, Service, Version
from reconciler.manifests_yaml import Document, ManifestError, dump_manifest, read_documents
from reconciler.model import Desired, Manifest, Source, parse_duration
from reconciler.overlays import Layers, compose, id_of
from reconciler.resolver import Resolver
from reconciler.sensitive import REDACTED, BadReferenceError, Secret, is_single_reference, references

SECTIONS = ("service_settings", "task_settings", "chunking_settings")
TOP_LEVEL_KEYS = tuple(Manifest.model_fields)
__all__ = ["ManifestError", "Validation", "dump_manifest", "load", "load_files", "manifest_files"]


@dataclass(frozen=True)
class Validation:
    """The outcome of reading a manifests folder."""

    endpoints: tuple[Desired, ...]
    errors: tuple[ManifestError, ...]
    warnings: tuple[ManifestError, ...]
    files: int

    @property
    def ok(self) -> bool:
        return not self.errors


def manifest_files(root: Path) -> list[Path]:
    """Every `*.yaml` / `*.yml` under root, in sorted order of their relative paths."""
    found = [p for pattern in ("*.yaml", "*.yml") for p in root.rglob(pattern) if p.is_file()]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


# -- validation --------------------------------------------------------------------------------


def load(
    root: Path | Layers, version: Version, env: Mapping[str, str], resolver: Resolver | None = None
) -> Validation:
    """Read and validate every manifest under root (or an environment's layers) for a version."""
    if isinstance(root, Layers):
        documents, files = compose(root)
        memo = root.shared.checked if root.shared is not None else None
        return load_documents(documents, files, version, env, resolver, memo)
    if not root.is_dir():
        return Validation(
            (), (ManifestError(str(root), 1, "", "the manifests folder does not exist"),), (), 0
        )
    return load_files(manifest_files(root), version, env, resolver)


def load_files(
    files: Sequence[Path], version: Version, env: Mapping[str, str], resolver: Resolver | None = None
) -> Validation:
    """Read and validate these manifest files (ids must be unique across them)."""
    # Read every file, then validate them: faster than alternating the two (a quarter, for 1,000).
    documents = [item for path in files for item in read_documents(path, str(path))]
    return load_documents(documents, len(files), version, env, resolver)


def load_documents(
    documents: Iterable[Document | ManifestError],
    files: int,
    version: Version,
    env: Mapping[str, str],
    resolver: Resolver | None = None,
    memo: dict[tuple[int, str, int], Any] | None = None,
) -> Validation:
    """Validate manifest documents read from `files` files (ids must be unique across them).
    `memo` keeps each document's outcome per version and environment, for documents that several
    validations share (`overlays.Shared`)."""
    resolver = resolver or Resolver(env)
    errors: list[ManifestError] = []
    warnings: list[ManifestError] = []
    endpoints: list[Desired] = []
    seen: dict[str, tuple[str, int]] = {}
    duplicated: set[str] = set()
    for item in documents:
        if isinstance(item, ManifestError):
            errors.append(item)
            continue
        desired, found, warned = _checked(item, version, resolver, memo, id(env))
        errors.extend(found)
        warnings.extend(warned)
        inference_id = id_of(item)
        if inference_id is not None:
            here = item.locate("inference_id")
            there = seen.setdefault(inference_id, here)
            if there != here:
                duplicated.add(inference_id)
                errors.append(
                    ManifestError(
                        *here, "inference_id", f"{inference_id} is also defined at {there[0]}:{there[1]}"
                    )
                )
                errors.append(
                    ManifestError(
                        *there, "inference_id", f"{inference_id} is also defined at {here[0]}:{here[1]}"
                    )
                )
        if desired is not None:
            endpoints.append(desired)
    endpoints = [d for d in endpoints if d.inference_id not in duplicated]
    return Validation(tuple(endpoints), tuple(sorted(set(errors))), tuple(sorted(set(warnings))), files)


def _checked(
    doc: Document, version: Version, resolver: Resolver, memo: dict[Any, Any] | None, env_id: int
) -> tuple[Desired | None, list[ManifestError], list[ManifestError]]:
    key = (id(doc), str(version), env_id)
    if memo is not None and key in memo:
        return memo[key][1]  # type: ignore[no-any-return]
    checker = _Checker(doc, version, resolver)
    outcome = checker.check(), checker.errors, checker.warnings
    if memo is not None:
        memo[key] = (doc, outcome)  # the document kept alive, so that its id stays its own
    return outcome


class _Checker:
    """Validates one document; collects errors and warnings rather than stopping at the first."""

    def __init__(self, doc: Document, version: Version, resolver: Resolver) -> None:
        self.doc = doc
        self.version = version
        self.resolver = resolver
        self.errors: list[ManifestError] = []
        self.warnings: list[ManifestError] = []
        self.secret_references: dict[str, str] = {}
        self.resolved_paths: set[str] = set()  # values the catalog is shown resolved from a reference

    def error(self, path: str, message: str) -> None:
        self.errors.append(ManifestError(*self.doc.locate(path), path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(ManifestError(*self.doc.locate(path), path, message))

    def check(self) -> Desired | None:
        data = self.doc.data
        if not isinstance(data, dict):
            self.error("", "a manifest is a mapping of keys (inference_id, task_type, service, ...)")
            return None
        manifest = self._format(data)
        inference_id = data.get("inference_id")
        if isinstance(inference_id, str):
            self._check_id(inference_id)
        service = self._service(data.get("service"), resolved_value(self.resolver, data.get("service")))
        secrets, resolved = self._references(data)
        task_type = self._task_type(data.get("task_type"), resolved.get("task_type"))
        if service is None or task_type is None or not isinstance(resolved.get("service_settings"), dict):
            return None
        service = catalog.route(service, task_type, self.version)
        self._normalise(service, task_type, resolved)
        self._check_settings(service, task_type, resolved, secrets)
        self._check_lifecycle(data, service, task_type)
        wait_timeout = self._check_wait(manifest, service)
        if self.errors or manifest is None or not isinstance(inference_id, str):
            return None
        return Desired(
            inference_id=inference_id,
            task_type=task_type,
            service=service.stored_name(self.version),
            written_service=service.name,
            service_settings=_without(resolved["service_settings"], secrets),
            secrets=secrets,
            secret_references=self.secret_references,
            task_settings=resolved.get("task_settings"),
            chunking_settings=resolved.get("chunking_settings"),
            lifecycle=manifest.lifecycle,
            wait_timeout=wait_timeout,
            source=Source(self.doc.file, self.doc.line),
        )

    # -- the manifest format -------------------------------------------------------------------

    def _format(self, data: dict[str, Any]) -> Manifest | None:
        try:
            return Manifest.model_validate(data)
        except ValidationError as failure:
            for problem in failure.errors():
                path = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in problem["loc"]).replace(
                    ".[", "["
                )
                self.error(path, _format_message(problem, path))
            return None

    def _check_id(self, inference_id: str) -> None:
        if catalog.valid_inference_id(inference_id):
            return
        if inference_id.startswith("."):
            message = "ids starting with '.' are reserved for the preconfigured endpoints"
        elif inference_id == "_all":
            message = "_all is reserved"
        elif inference_id != inference_id.lower():
            message = "must be lowercase"
        else:
            message = (
                "may hold only a-z, 0-9, '-', '_' and '.', and must start and end with a letter or digit"
            )
        self.error("inference_id", message)

    # Messages show values as written: a reference is shown as the reference, never resolved.

    def _task_type(self, written: Any, value: Any) -> str | None:
        if not isinstance(value, str):
            return None
        task_type = catalog.parse_task_type(value, self.version)
        if task_type is None:
            known = ", ".join(catalog.task_types(self.version))
            self.error(
                "task_type",
                f"unknown task type '{written}' for Elasticsearch {self._line()} (known: {known})",
            )
        return task_type

    def _service(self, written: Any, value: Any) -> Service | None:
        if not isinstance(value, str):
            return None
        service = catalog.service(value, self.version)
        if service is None:
            if value in catalog.SERVICES:
                self.error("service", f"the {value} service is not available on Elasticsearch {self._line()}")
            else:
                names = [s.name for s in catalog.services(self.version)]
                close = difflib.get_close_matches(value, names, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                self.error("service", f"unknown service '{written}'{hint}")
            return None
        if service.deprecated is not None:
            self.warn(
                "service",
                f"the {service.name} service is deprecated: Elasticsearch stores it as service "
                f"{service.stored_name(self.version)} with a model_id; write that instead",
            )
        return service

    def _line(self) -> str:
        return f"{self.version.major}.{self.version.minor}"

    # -- references and secrets ----------------------------------------------------------------

    def _references(self, data: dict[str, Any]) -> tuple[dict[str, Secret], dict[str, Any]]:
        """Resolve references; secrets come out as `Secret`s. A catalog secret leaves a placeholder
        in `resolved`; any other value from a reference is a secret too, resolved there for the
        catalog's checks only. Outside service_settings a reference is refused."""
        secrets: dict[str, Secret] = {}
        resolved: dict[str, Any] = {}
        for key, value in data.items():
            if key == "service_settings" and isinstance(value, dict):
                resolved[key] = {
                    name: self._setting(f"{key}.{name}", name, item, secrets) for name, item in value.items()
                }
            elif key in ("lifecycle", "wait"):
                resolved[key] = value
            else:
                resolved[key] = self._resolve(key, value)
        return secrets, resolved

    def _setting(self, path: str, name: str, item: Any, secrets: dict[str, Secret]) -> Any:
        if name in catalog.SECRET_FIELD_NAMES and isinstance(item, dict):
            return {
                inner: self._secret(f"{path}.{inner}", raw, secrets, f"{name}.{inner}")
                for inner, raw in item.items()
            }
        if name in catalog.SECRET_FIELD_NAMES:
            return self._secret(path, item, secrets, name)
        if isinstance(item, dict):
            return {
                inner: self._referenced(f"{path}.{inner}", raw, secrets, f"{name}.{inner}")
                if _has_reference(raw)
                else self._resolve(f"{path}.{inner}", raw)
                for inner, raw in item.items()
            }
        if _has_reference(item):
            return self._referenced(path, item, secrets, name)
        return self._resolve(path, item)

    def _referenced(self, path: str, value: str, secrets: dict[str, Secret], key: str) -> str:
        """A value that came from a reference, in a field the catalog does not mark secret."""
        try:
            resolved = self.resolver.resolve(value)
        except BadReferenceError as error:
            hint = " (write $${ for a literal ${)" if "not set" in str(error) else ""
            self.error(path, f"{error}{hint}")
            return value
        secrets[key] = Secret(resolved)
        self.secret_references[key] = value
        self.resolved_paths.add(path)
        return resolved

    def _secret(self, path: str, value: Any, secrets: dict[str, Secret], key: str) -> str:
        example = (
            "${"
            + re.sub(r"[^A-Z0-9]+", "_", f"{self.doc.data.get('inference_id', 'ENDPOINT')}_{key}".upper())
            + "}"
        )
        if not isinstance(value, str) or not is_single_reference(value):
            self.error(
                path, f"a secret must be a reference such as {example} or ${{file:PATH}}, not a literal value"
            )
            return REDACTED
        try:
            secrets[key] = Secret(self.resolver.resolve(value))
            self.secret_references[key] = value
        except BadReferenceError as error:
            self.error(path, str(error))
        return REDACTED

    def _resolve(self, path: str, value: Any) -> Any:
        """A value where a reference could not be kept secret: `$${` escapes undone, references refused."""
        if isinstance(value, str):
            if "${" not in value:
                return value
            try:
                if _has_reference(value):
                    self.error(path, _NOT_HERE)
                    return value
                return self.resolver.resolve(value)
            except BadReferenceError as error:
                self.error(path, str(error))
                return value
        if isinstance(value, dict):
            return {k: self._resolve(f"{path}.{k}", v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve(f"{path}[{i}]", v) for i, v in enumerate(value)]
        return value

    # -- the service catalog -------------------------------------------------------------------

    def _normalise(self, service: Service, task_type: str, resolved: dict[str, Any]) -> None:
        """Values written naturally become what Elasticsearch needs: an integer Double is a float."""
        for section, fields in (
            ("service_settings", service.settings(task_type, self.version)),
            ("task_settings", service.task_fields(task_type, self.version)),
        ):
            values = resolved.get(section)
            if not isinstance(values, dict):
                continue
            for spec in fields:
                if spec.kind is Kind.DOUBLE and type(values.get(spec.name)) is int:
                    values[spec.name] = float(values[spec.name])

    def _check_settings(
        self, service: Service, task_type: str, resolved: dict[str, Any], secrets: dict[str, Secret]
    ) -> None:
        body = {k: resolved[k] for k in SECTIONS if k in resolved}
        checked = catalog.check_endpoint(service, task_type, body, self.version)
        for problem in checked.problems:
            if self._unknown_offline(problem.path):
                continue
            message = problem.text
            for secret in secrets.values():  # a value from a reference never reaches a message
                if secret.reveal():
                    message = message.replace(secret.reveal(), REDACTED)
            if problem.unknown is not None:
                message += self._known(service, task_type, problem.path)
            self.error(problem.path, message)
        task = resolved.get("task_settings")
        for spec in service.task_fields(task_type, self.version):
            if spec.unreadable is not None and isinstance(task, dict) and spec.name in task:
                self.error(f"task_settings.{spec.name}", spec.unreadable)
        if service.deploys_model:
            self._check_model(service, task_type, resolved["service_settings"])

    def _unknown_offline(self, path: str) -> bool:
        """Whether the value at path came from a reference that `validate --offline` did not resolve:
        the catalog was shown a stand-in, so what it says of that value says nothing. (A catalog
        secret is shown a placeholder online too: what is said of it holds offline.)"""
        return self.resolver.is_offline and path in self.resolved_paths

    def _known(self, service: Service, task_type: str, path: str) -> str:
        section = path.rpartition(".")[0]
        if section == "":
            return ": chunking_settings applies to embedding task types only"
        if section == "service_settings":
            names = [f.name for f in service.settings(task_type, self.version) if f.accepted]
        elif section == "task_settings":
            names = [f.name for f in service.task_fields(task_type, self.version)]
        else:
            names = ["requests_per_minute"]
        return f" for task type {task_type} (known: {', '.join(names) or 'none'})"

    def _check_model(self, service: Service, task_type: str, settings: dict[str, Any]) -> None:
        model_id = settings.get("model_id")
        if "model_id" in self.secret_references:
            model_id = self.secret_references["model_id"]  # from a reference: named, never shown
        builtin = catalog.BUILTIN_MODELS.get(model_id) if isinstance(model_id, str) else None
        if builtin is not None and builtin.task_type != task_type:
            self.warn(
                "service_settings.model_id",
                f"{model_id} serves {builtin.task_type}; Elasticsearch accepts it for {task_type} but it will not work",
            )
        elif isinstance(model_id, str) and builtin is None:
            self.warn(
                "service_settings.model_id",
                f"{model_id} is not a built-in model: it must be uploaded with eland first",
            )

    def _check_lifecycle(self, data: dict[str, Any], service: Service, task_type: str) -> None:
        lifecycle = data.get("lifecycle")
        paths = lifecycle.get("ignore_changes") if isinstance(lifecycle, dict) else None
        if not isinstance(paths, list):
            return
        known = {
            "service_settings": {f.name for f in service.settings(task_type, self.version)},
            "task_settings": {f.name for f in service.task_fields(task_type, self.version)},
        }
        for i, path in enumerate(paths):
            if not isinstance(path, str):
                continue
            section, _, name = path.partition(".")
            where = f"lifecycle.ignore_changes[{i}]"
            if section not in SECTIONS:
                self.error(
                    where, "must be a dotted path in service_settings, task_settings or chunking_settings"
                )
            elif section in known and name.split(".")[0] not in known[section]:
                self.error(
                    where,
                    f"{name or '(empty)'} is not a {section} key of the {service.name} service for {task_type}",
                )

    def _check_wait(self, manifest: Manifest | None, service: Service) -> float | None:
        if manifest is None or manifest.wait is None or manifest.wait.timeout is None:
            return None
        if not service.deploys_model:
            self.warn(
                "wait", f"the {service.name} service deploys no trained model: there is nothing to wait for"
            )
        return parse_duration(manifest.wait.timeout)


def resolved_value(resolver: Resolver, value: Any) -> Any:
    """A top-level string with its references resolved (None when they cannot be, reported later,
    or when they are not resolved: offline)."""
    if not isinstance(value, str) or "${" not in value:
        return value
    try:
        if resolver.is_offline and references(value):
            return None
        return resolver.resolve(value)
    except BadReferenceError:
        return None


_NOT_HERE = (
    "a reference must be the whole value of a service_settings field at most two levels deep "
    "(service_settings.key or service_settings.key.inner): not in a list, deeper, or another section"
)


def _has_reference(value: Any) -> bool:
    """Whether a string holds a `${...}` reference (a malformed one counts; `$${` does not)."""
    if not isinstance(value, str) or "${" not in value:
        return False
    try:
        return bool(references(value))
    except BadReferenceError:
        return True


def _without(settings: Mapping[str, Any], secrets: Mapping[str, Secret]) -> dict[str, Any]:
    """service_settings without the catalog's secret fields and the secret paths (`key`, `key.inner`)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in settings.items()}
    for name in catalog.SECRET_FIELD_NAMES & set(out):
        del out[name]
    for path in secrets:
        top, _, inner = path.partition(".")
        if inner and isinstance(out.get(top), dict):
            out[top].pop(inner, None)
        else:
            out.pop(top, None)
    return out


_FORMAT_MESSAGES = {
    "missing": "required key is missing",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
}


def _format_message(problem: Any, path: str) -> str:
    kind = problem["type"]
    if kind == "extra_forbidden":
        parent = path.rpartition(".")[0]
        keys = {
            "": TOP_LEVEL_KEYS,
            "lifecycle": ("prevent_destroy", "ignore_changes"),
            "wait": ("timeout",),
        }.get(parent, ())
        return f"unknown key (known: {', '.join(keys)})"
    if kind == "value_error":
        return str(problem["msg"]).removeprefix("Value error, ")
    return _FORMAT_MESSAGES.get(kind, str(problem["msg"]))
