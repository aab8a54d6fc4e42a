"""`import`: write a manifest for each live endpoint, and nothing else.

The manifest holds what the endpoint needs, in the form the manifests use: server defaults left
out (the default rate_limit, the default chunking, task settings defaults, num_allocations moved by
adaptive allocations, elser's filled-in model id), and each secret as a reference to fill in,
`${<ID>_<FIELD>}` in upper snake case. Import never overwrites a file and never writes the state:
the next `plan` shows each imported endpoint as an `adopt` for review (or, for one with a secret
the state cannot know, an update that sends it: `secret-unknown`), and `apply` records them.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reconciler import catalog
from reconciler.catalog import Service, Version
from reconciler.manifests import Validation, dump_manifest, load_files
from reconciler.sensitive import REDACTED, REDACTED_CHANGED
from reconciler.session import Cluster
from reconciler.storage import now_iso


def reference_name(inference_id: str, field: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", f"{inference_id}_{field}".upper()).strip("_")


def manifest_for(endpoint: Mapping[str, Any], service: Service) -> tuple[dict[str, Any], list[str]]:
    """A manifest for a live endpoint, and the environment variables its secrets need."""
    task_type = str(endpoint["task_type"])
    # A deep copy: the masked values are rewritten in place, and the cluster read is not ours.
    settings = copy.deepcopy(dict(endpoint.get("service_settings") or {}))
    fields = {f.name: f for f in service.service_settings if f.applies(task_type, catalog.NEWEST_SUPPORTED)}
    rate_limit = settings.get("rate_limit")
    if isinstance(rate_limit, dict) and rate_limit.get("requests_per_minute") == service.default_rate_limit(
        task_type
    ):
        settings.pop("rate_limit")
    adaptive = settings.get("adaptive_allocations")
    if isinstance(adaptive, dict) and adaptive.get("enabled"):
        settings.pop("num_allocations", None)
    for name, spec in fields.items():
        if spec.default is not None and settings.get(name) == spec.default:
            settings.pop(name)
        if not spec.accepted:
            settings.pop(name, None)
    references = []
    for name in _secrets_needed(service, task_type):
        variable = reference_name(str(endpoint["inference_id"]), name)
        settings[name] = (
            {"token": f"${{{variable}}}"} if fields[name].kind is catalog.Kind.MAP else f"${{{variable}}}"
        )
        references.append(variable)
    references += _masked_as_references(str(endpoint["inference_id"]), settings)
    manifest: dict[str, Any] = {
        "inference_id": endpoint["inference_id"],
        "task_type": task_type,
        "service": endpoint["service"],
        "service_settings": settings,
    }
    task = {
        k: v
        for k, v in (endpoint.get("task_settings") or {}).items()
        if not _is_default(service, task_type, k, v)
    }
    if task:
        manifest["task_settings"] = task
    chunking = endpoint.get("chunking_settings")
    if chunking is not None and chunking != catalog.DEFAULT_CHUNKING:
        manifest["chunking_settings"] = chunking
    return manifest, references


def _masked_as_references(inference_id: str, settings: dict[str, Any]) -> list[str]:
    """Values the state knows only by digest (a manifest referenced them, in any field) come back
    masked from the cluster read: write them as references to fill in, never as the mask."""
    found = []
    for name, value in list(settings.items()):
        inner = value if isinstance(value, dict) else {None: value}
        for key, item in inner.items():
            if item in (REDACTED, REDACTED_CHANGED):
                variable = reference_name(inference_id, name if key is None else f"{name}_{key}")
                if key is None:
                    settings[name] = f"${{{variable}}}"
                else:
                    value[key] = f"${{{variable}}}"
                found.append(variable)
    return found


def _is_default(service: Service, task_type: str, key: str, value: Any) -> bool:
    return any(
        f.name == key and f.default is not None and f.default == value
        for f in service.task_fields(task_type, catalog.NEWEST_SUPPORTED)
    )


def _secrets_needed(service: Service, task_type: str) -> list[str]:
    fields = [
        f for f in service.service_settings if f.secret and f.applies(task_type, catalog.NEWEST_SUPPORTED)
    ]
    needed = [f.name for f in fields if f.required]
    for group in service.one_of:
        names = [n for n in group.names if any(f.name == n for f in fields)]
        if names and not any(n in needed for n in names):
            needed.append(names[0])
    return needed


class UnsafeImportError(Exception):
    """A manifest `import` would write is refused (an id unfit for a file name, an existing file),
    or one it wrote does not validate."""


def manifest_paths(endpoints: Sequence[Mapping[str, Any]], folder: Path) -> list[Path]:
    """`<inference_id>.yaml` in `folder` per endpoint, every one checked before anything is written:
    the id must be a valid inference id (a server can say anything), the file must resolve to an
    entry of `folder` itself, and no file may be there yet (import never overwrites)."""
    inside = folder.resolve()
    paths, problems = [], []
    for endpoint in endpoints:
        inference_id = str(endpoint.get("inference_id"))
        path = folder / f"{inference_id}.yaml"
        if not catalog.valid_inference_id(inference_id) or path.resolve().parent != inside:
            problems.append(f"{inference_id!r} is not a valid inference id to name a file after")
        elif os.path.lexists(path):
            problems.append(f"{path} already exists (import never overwrites a manifest)")
        paths.append(path)
    if problems:
        raise UnsafeImportError("nothing was imported: " + "; ".join(problems))
    return paths


def write_manifests(
    endpoints: Sequence[Mapping[str, Any]], folder: Path, cluster: Cluster
) -> list[tuple[Path, list[str]]]:
    """Write `<inference_id>.yaml` per endpoint (checked by `manifest_paths` first; created
    exclusively, so a file that appears meanwhile is not overwritten either); returns each file
    and the variables to set. On a refusal, nothing of this call stays written."""
    paths = manifest_paths(endpoints, folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Path, list[str]]] = []
    try:
        for endpoint, path in zip(endpoints, paths, strict=True):
            manifest, references = manifest_for(endpoint, catalog.SERVICES[str(endpoint["service"])])
            comment = f"Imported from Elasticsearch {cluster.version} on {now_iso()}."
            if references:
                comment += f"\nSet {', '.join(references)} before plan or apply."
            with path.open("x") as handle:
                handle.write(dump_manifest(manifest, comment))
            written.append((path, references))
    except FileExistsError as error:
        for path, _ in written:
            path.unlink(missing_ok=True)
        raise UnsafeImportError(
            f"nothing was imported: {error.filename} already exists (import never overwrites a manifest)"
        ) from None
    return written


def validated(written: Sequence[tuple[Path, list[str]]], version: Version) -> Validation:
    """The written manifests, validated in place (their references filled with placeholders);
    UnsafeImportError naming each problem when one does not validate."""
    placeholders = {name: "imported" for _, references in written for name in references}
    validation = load_files([path for path, _ in written], version, placeholders)
    if validation.errors:
        problems = "\n".join(str(e) for e in validation.errors)
        raise UnsafeImportError(
            f"the imported manifests were written but do not validate: fix them before plan:\n{problems}"
        )
    return validation
