"""The project file (`reconciler.yaml`): the environments one manifest repository is applied to.

Optional: without it every command works as before. It names, per environment, which environment
variables hold the connection (never their values: a value that looks like one is refused), where
the state lives and its workspace (default: the environment's name), the Elasticsearch version
expected (checked against GET / before anything else) and the overlay folder patching the base
manifests (`reconciler.overlays`). It is read with the bounded YAML reader of the manifests, so
each error reads `file:line: field.path: message`, all of them reported together.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from reconciler import catalog
from reconciler.catalog import Version
from reconciler.manifests_yaml import Document, ManifestError, read_documents

DEFAULT_FILE = "reconciler.yaml"
ENVIRONMENT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_VARIABLE = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
_WORKSPACE = re.compile(r"[A-Za-z0-9_.-]+")
_NOT_A_NAME = (
    "must be the name of an environment variable (upper-case letters, digits and '_', such as "
    "PROD_ES_API_KEY), never its value"
)


# The project file is as untrusted as the manifests (a pull request can change it, DESIGN.md §9):
# were it free to name any variable, `url_env: ANTHROPIC_API_KEY` would print that key in an error
# or send it as a host name. So each kind of variable must say by its name what it holds.
SUFFIXES = {
    "url_env": ("_URL", "_URLS", "_ENDPOINTS"),
    "cloud_id_env": ("_CLOUD_ID",),
    "api_key_env": ("_API_KEY",),
}


def _variable(value: str | None, info: ValidationInfo) -> str | None:
    # The value is never echoed: it may be the very secret that should not be in the file.
    if value is None:
        return value
    if not _VARIABLE.fullmatch(value):
        raise ValueError(_NOT_A_NAME)
    suffixes = SUFFIXES[str(info.field_name)]
    if not value.endswith(suffixes):
        raise ValueError(
            f"must name a variable ending in {' or '.join(suffixes)}, such as PROD_ES{suffixes[0]}"
        )
    return value


class ConnectionSpec(BaseModel):
    """Which environment variables hold the cluster's address and credentials."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url_env: str | None = Field(None, description="Variable holding the URL (comma-separated URLs).")
    cloud_id_env: str | None = Field(None, description="Variable holding the Elastic Cloud id.")
    api_key_env: str | None = Field(None, description="Variable holding the API key.")

    _names = field_validator("url_env", "cloud_id_env", "api_key_env")(_variable)


class EnvironmentSpec(BaseModel):
    """One environment: a cluster, its state, its expected version and its overlay."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connection: ConnectionSpec = Field(description="Which environment variables hold the connection.")
    state: str = Field("cluster", description="cluster, or file:PATH (relative to the project file).")
    workspace: str | None = Field(None, description="State workspace (default: the environment's name).")
    es_version: str | None = Field(
        None, description="Expected Elasticsearch version (9.1 or 9.1.3); checked against GET /."
    )
    overlay: str | None = Field(None, description="Overlay folder (relative to the project file).")

    @field_validator("state")
    @classmethod
    def _state(cls, value: str) -> str:
        if value != "cluster" and not (value.startswith("file:") and len(value) > 5):
            raise ValueError("give cluster or file:PATH")
        return value

    @field_validator("workspace")
    @classmethod
    def _workspace(cls, value: str | None) -> str | None:
        if value is not None and not _WORKSPACE.fullmatch(value):
            raise ValueError("use only letters, digits, '_', '.' and '-'")
        return value

    @field_validator("es_version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        # `es_version: 9.1` is a YAML number; `9.10` would read 9.1, so the docs quote it.
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @field_validator("es_version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            version = Version.parse(value)
        except ValueError:
            raise ValueError("a version such as 9.1 or 9.1.3") from None
        if not catalog.supported(version):
            raise ValueError(f"the tool knows Elasticsearch {catalog.SUPPORTED_RANGE}")
        return value


class ProjectSpec(BaseModel):
    """The project file: the base manifests and the environments they are applied to."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="reconciler project file")

    manifests: str = Field("manifests", description="The base manifests folder (relative to this file).")
    environments: dict[str, EnvironmentSpec] = Field(description="The environments, by name.")


@dataclass(frozen=True)
class Environment:
    """One environment as the commands use it: names of variables, resolved paths, no values."""

    name: str
    url_env: str | None
    cloud_id_env: str | None
    api_key_env: str | None
    state: str  # cluster, or file:ABSOLUTE_PATH
    workspace: str
    es_version: str | None
    base: Path
    overlay: Path | None
    source: str  # where it is defined: file:line

    def version_problem(self, reported: str) -> str | None:
        """Why the version GET / reported is not the one expected (None when it is)."""
        if self.es_version is None:
            return None
        wanted = self.es_version.split(".")
        if reported.split(".")[: len(wanted)] == wanted:
            return None
        return (
            f"environment {self.name} expects Elasticsearch {self.es_version} ({self.source}) "
            f"but the cluster reports {reported}"
        )

    def connection_values(self, env: Mapping[str, str]) -> dict[str, str | None]:
        """url, cloud_id and api_key read from the variables named (a named variable unset is an error)."""
        values: dict[str, str | None] = {}
        for key, variable in (
            ("url", self.url_env),
            ("cloud_id", self.cloud_id_env),
            ("api_key", self.api_key_env),
        ):
            if variable is None:
                continue
            if not env.get(variable):
                raise ValueError(f"--env {self.name}: the variable {variable} ({self.source}) is not set")
            values[key] = env[variable]
        url = values.get("url")
        if url is not None and not all(_is_url(part) for part in url.split(",") if part.strip()):
            # Not shown: a misnamed variable may hold anything.
            raise ValueError(
                f"--env {self.name}: the variable {self.url_env} ({self.source}) does not hold http(s) URLs"
            )
        return values


def _is_url(text: str) -> bool:
    try:
        parts = urlsplit(text.strip())
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


@dataclass(frozen=True)
class Project:
    """The environments of a project file, by name, in the order written."""

    file: Path
    base: Path
    environments: Mapping[str, Environment]

    def environment(self, name: str) -> Environment:
        if name not in self.environments:
            known = ", ".join(self.environments) or "none"
            raise ValueError(f"--env {name}: {self.file} defines no such environment (known: {known})")
        return self.environments[name]


class ProjectError(ValueError):
    """The project file is missing or invalid; `errors` holds every problem, located."""

    def __init__(self, errors: list[ManifestError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


def load(path: Path) -> Project:
    """Read and validate a project file; ProjectError with every problem, located."""
    if not path.is_file():
        raise ProjectError([ManifestError(str(path), 1, "", "the project file does not exist")])
    documents = list(read_documents(path, str(path)))
    failed = [d for d in documents if isinstance(d, ManifestError)]
    if failed:
        raise ProjectError(failed)
    if len(documents) != 1:
        raise ProjectError([ManifestError(str(path), 1, "", "a project file holds one YAML document")])
    document = documents[0]
    assert isinstance(document, Document)
    return parse(document, path.parent)


def parse(document: Document, root: Path) -> Project:
    """A project from its YAML document; paths are relative to `root` (the file's folder)."""
    errors: list[ManifestError] = []

    def error(path: str, message: str) -> None:
        errors.append(ManifestError(document.file, document.line_of(path), path, message))

    if not isinstance(document.data, dict):
        error("", "a project file is a mapping with the keys manifests and environments")
        raise ProjectError(errors)
    try:
        spec = ProjectSpec.model_validate(document.data)
    except ValidationError as failure:
        for problem in failure.errors():
            path = ".".join(str(p) for p in problem["loc"])
            error(path, _message(problem, len(problem["loc"])))
        raise ProjectError(sorted(errors)) from None
    environments = {}
    for name, env in spec.environments.items():
        where = f"environments.{name}"
        if not ENVIRONMENT_NAME.fullmatch(name):
            error(where, "an environment name holds a-z, 0-9, '-' and '_', starting with a letter or digit")
        if env.connection.url_env and env.connection.cloud_id_env:
            error(f"{where}.connection", "give url_env or cloud_id_env, not both")
        elif not (env.connection.url_env or env.connection.cloud_id_env):
            error(f"{where}.connection", "give url_env or cloud_id_env")
        overlay = root / env.overlay if env.overlay is not None else None
        if overlay is not None and not overlay.is_dir():
            error(f"{where}.overlay", f"the folder {overlay} does not exist")
        state = env.state if env.state == "cluster" else "file:" + str(root / env.state.removeprefix("file:"))
        environments[name] = Environment(
            name,
            env.connection.url_env,
            env.connection.cloud_id_env,
            env.connection.api_key_env,
            state,
            env.workspace or name,
            env.es_version,
            root / spec.manifests,
            overlay,
            f"{document.file}:{document.line_of(where)}",
        )
    if not spec.environments:
        error("environments", "name at least one environment")
    if errors:
        raise ProjectError(sorted(errors))
    return Project(Path(document.file), root / spec.manifests, environments)


_KNOWN: dict[int, type[BaseModel]] = {
    1: ProjectSpec,
    3: EnvironmentSpec,
    4: ConnectionSpec,
}  # by the depth of the key


def _message(problem: Mapping[str, Any], depth: int) -> str:
    kind = problem["type"]
    if kind == "extra_forbidden":
        return f"unknown key (known: {', '.join(_KNOWN[depth].model_fields)})"
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return str(problem["msg"]).removeprefix("Value error, ")
    if kind in ("dict_type", "model_type"):
        return "must be a mapping"
    if kind == "string_type":
        return "must be a string"
    return str(problem["msg"])


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the project file, for editors (`reconciler schema --project`)."""
    return ProjectSpec.model_json_schema()
