"""The options of the emulator and of the cluster commands, and checks of what could only fail later.

The tables are plain data: the command line makes typer options of them. Each check raises
`OptionError`, whose message names the option and what is wrong with it; the command line prints it
as one `Error:` line and exits 1. Nothing here prints or reads a secret.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_STR, _INT, _PATH, _MANY = str | None, int | None, Path | None, list[str] | None


@dataclass(frozen=True)
class Row:
    """One option: its default, help and flags; its type is the default's unless `kind` says."""

    default: Any
    help: str
    flags: tuple[str, ...] = ()
    kind: Any = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def option(default: Any, help: str, *flags: str, kind: Any = None, **extra: Any) -> Row:
    return Row(default, help, flags, kind, extra)


EMULATOR: dict[str, Row] = {
    "host": option("127.0.0.1", "Address to listen on.", metavar="ADDRESS"),
    "port": option(9200, "Port to listen on (0 picks a free one)."),
    "version": option(
        "9.5.0", "Elasticsearch version to emulate: 8.16.x to 8.19.x, or 9.0.x to 9.5.x.", metavar="VERSION"
    ),
    "latency_ms": option(0.0, "Latency added to every request, in milliseconds."),
    "fault_rate": option(0.0, "Share of requests answered 429 or 503 without being applied (0 to 1)."),
    "fault_seed": option(0, "Seed of the fault injection, for repeatable runs."),
    "lost_response_rate": option(0.0, "Share of writes applied whose response is then lost (0 to 1)."),
    "retry_after": option(1.0, "Seconds sent in Retry-After with injected 429s."),
    "deploy_seconds": option(
        5.0, "Seconds a trained-model deployment takes to reach its target allocations."
    ),
    "ml_capacity": option(
        None, "Processors on the ML node (an allocation uses num_threads); more stay pending.", kind=_INT
    ),
    "ml_autoscaling": option(
        True,
        "The ML tier can scale (as on Elastic Cloud): a start that cannot be placed answers at once "
        "with 0 allocations, which wait for capacity; without it such a start fails with 429.",
    ),
    "ml_scale_up_seconds": option(
        None,
        "With autoscaling: seconds until the ML tier has grown to place a waiting deployment "
        "(default: never, it waits for freed capacity).",
        kind=float | None,
        metavar="NUMBER",
    ),
    "max_put_wait": option(
        30.0, "Seconds a PUT of an in-cluster endpoint waits at most before answering 408."
    ),
    "fail_models": option(
        None, "Deployments of this model fail (repeatable).", "--fail-model", kind=_MANY, metavar="MODEL"
    ),
    "api_key": option(
        None, "Require `Authorization: ApiKey <this>`; without it none is needed.", kind=_STR, metavar="KEY"
    ),
    "data_dir": option(
        None, "Persist the cluster here across restarts (default: in memory).", kind=_PATH, metavar="DIR"
    ),
    "eis": option(False, "Also list the preconfigured EIS (`elastic` service) endpoints."),
    "trained_models": option(
        None,
        "A model uploaded with eland, as MODEL_ID[:TASK_TYPE] (default text_embedding; repeatable).",
        "--trained-model",
        kind=_MANY,
        metavar="MODEL",
    ),
}


_SECRET = {"kind": _STR, "show_default": False}
NO_COLOR_HELP = "No colours in the output (also when NO_COLOR is set to anything)."
COMMON: dict[str, Row] = {
    "url": option(
        None,
        "Elasticsearch URL (default http://localhost:9200); several comma-separated are tried in order.",
        envvar=["ELASTICSEARCH_URL", "ELASTICSEARCH_ENDPOINTS", "ES_URL"],
        show_envvar=True,
        kind=_STR,
        metavar="URL",
    ),
    "cloud_id": option(
        None,
        "Elastic Cloud ID (NAME:BASE64, from the deployment's page), instead of --url.",
        envvar=["ELASTIC_CLOUD_ID", "ES_CLOUD_ID"],
        kind=_STR,
        metavar="ID",
    ),
    "api_key": option(
        None,
        "API key: the encoded form, or ID:KEY (Authorization: ApiKey).",
        envvar=["ELASTICSEARCH_API_KEY", "ES_API_KEY"],
        metavar="KEY",
        **_SECRET,
    ),
    "username": option(
        None, "Basic auth user.", envvar=["ELASTICSEARCH_USERNAME", "ES_USERNAME"], kind=_STR, metavar="USER"
    ),
    "password": option(
        None,
        "Basic auth password.",
        envvar=["ELASTICSEARCH_PASSWORD", "ES_PASSWORD"],
        metavar="PASSWORD",
        **_SECRET,
    ),
    "bearer_token": option(
        None, "Bearer token.", envvar="ELASTICSEARCH_BEARER_TOKEN", metavar="TOKEN", **_SECRET
    ),
    "ca_cert": option(
        None, "CA certificate file (PEM) to trust.", envvar="ELASTICSEARCH_CA_CERT", kind=_STR, metavar="FILE"
    ),
    "ca_data": option(
        None,
        "CA certificate to trust, as PEM text.",
        envvar="ELASTICSEARCH_CA_DATA",
        kind=_STR,
        metavar="PEM",
    ),
    "ca_fingerprint": option(
        None,
        "Trust the server whose certificate (or a CA of its chain) has this SHA-256 fingerprint.",
        envvar="ELASTICSEARCH_CA_FINGERPRINT",
        kind=_STR,
        metavar="HEX",
    ),
    "client_cert": option(
        None,
        "Client certificate (PEM) for mutual TLS.",
        envvar="ELASTICSEARCH_CLIENT_CERT",
        kind=_STR,
        metavar="FILE",
    ),
    "client_key": option(
        None,
        "Its private key (PEM, unencrypted), unless the certificate file holds it.",
        envvar="ELASTICSEARCH_CLIENT_KEY",
        kind=_STR,
        metavar="FILE",
    ),
    "insecure": option(
        False, "Do not verify TLS certificates (warns).", "--insecure", envvar="ELASTICSEARCH_INSECURE"
    ),
    "request_timeout": option(
        None,
        "Time each request may take (default 30s).",
        envvar="ELASTICSEARCH_REQUEST_TIMEOUT",
        kind=_STR,
        metavar="DURATION",
    ),
    "header": option(
        None, "Extra HTTP header sent with every request (repeatable).", kind=_MANY, metavar="'NAME: VALUE'"
    ),
    "state": option(
        "cluster", "Where the state lives: cluster, or file:PATH.", envvar="RECONCILER_STATE", metavar="WHERE"
    ),
    "workspace": option(
        "default", "State workspace (one state each).", envvar="RECONCILER_WORKSPACE", metavar="NAME"
    ),
    # --env: the project file's environment replaces the connection, state and workspace options.
    "env": option(
        None,
        "An environment of the project file (its connection, state, version, overlay).",
        envvar="RECONCILER_ENV",
        kind=_STR,
        metavar="NAME",
    ),
    "project": option(
        Path("reconciler.yaml"),
        "The project file naming the environments.",
        envvar="RECONCILER_PROJECT",
        metavar="FILE",
    ),
    "log_format": option(
        "console", "Logs on stderr: console or json.", envvar="RECONCILER_LOG_FORMAT", metavar="FORMAT"
    ),
    "no_color": option(False, NO_COLOR_HELP, "--no-color"),
}


_WORKSPACE = re.compile(r"[A-Za-z0-9_.-]+")

# The emulator's HTTP server: the `[emulator]` extra, left out of a lean production install.
EMULATOR_SERVER = ("starlette", "uvicorn")
# Emulator options: (lowest, highest) allowed, None for no bound.
EMULATOR_RANGES: dict[str, tuple[float, float | None]] = {
    "port": (0, 65535),
    "latency_ms": (0, None),
    "fault_rate": (0, 1),
    "lost_response_rate": (0, 1),
    "retry_after": (0, None),
    "deploy_seconds": (0, None),
    "max_put_wait": (0, None),
    "ml_capacity": (0, None),
    "ml_scale_up_seconds": (0, None),
}


PLANNING: dict[str, Row] = {
    "target": option(None, "Only this endpoint (repeatable).", kind=_MANY, metavar="ID"),
    "replace": option(
        None, "Replace this endpoint even if unchanged (repeatable).", kind=_MANY, metavar="ID"
    ),
    "refresh_only": option(False, "Only accept the cluster's values into the state.", "--refresh-only"),
    "destroy": option(False, "Delete every managed endpoint.", "--destroy"),
    "allow_referenced": option(
        False, "Delete or replace endpoints in use (with force).", "--allow-referenced"
    ),
    "allow_takeover": option(
        False, "Act on endpoints another workspace's state manages.", "--allow-takeover"
    ),
}


def color(no_color: bool, environ: Mapping[str, str], terminal: bool) -> bool:
    """Colours on a terminal, unless --no-color or NO_COLOR holds any value (no-color.org): read
    here, not as the flag's variable, which would refuse any value but a boolean's."""
    return terminal and not no_color and not environ.get("NO_COLOR")


class OptionError(ValueError):
    """An option's value the tool refuses; the message names the option."""


def workspace(name: str) -> str:
    """A workspace name: letters, digits, `_`, `.` and `-` (it names a file and a document)."""
    if not _WORKSPACE.fullmatch(name):
        raise OptionError(f"--workspace {name!r}: use only letters, digits, '_', '.' and '-'")
    return name


def state(spec: str, workspace: str) -> str:
    """`cluster`, or `file:PATH` where PATH can be written: in a folder that exists, not a folder
    (PATH as the workspace names it: `state.json` is `state.NAME.json` in workspace NAME)."""
    from reconciler.storage import state_file  # imported only by the commands that have a state

    if spec == "cluster":
        return spec
    path = state_file(spec, workspace)
    if path is None:
        raise OptionError(f"--state {spec!r}: give cluster or file:PATH")
    writable(path, "--state")
    return spec


def writable(path: Path, option: str) -> Path:
    """A file the tool is to write: its folder exists and it is not a folder itself."""
    if path.is_dir():
        raise OptionError(f"{option} {path}: is a folder; give a file path")
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise OptionError(f"{option} {path}: the folder {folder} {what}")
    return path


def check_emulator(options: Mapping[str, Any]) -> None:
    """The emulator's server libraries are installed (the `[emulator]` extra), and its numeric
    options are within their ranges (rates are shares, 0 to 1)."""
    missing = [name for name in EMULATOR_SERVER if importlib.util.find_spec(name) is None]
    if missing:
        raise OptionError(
            f"the emulator needs {' and '.join(missing)}, which this install lacks: "
            "pip install 'es-inference-reconciler[emulator]'"
        )
    for name, (low, high) in EMULATOR_RANGES.items():
        value = options.get(name)
        if value is None:
            continue
        if not math.isfinite(value) or value < low or (high is not None and value > high):
            flag = "--" + name.replace("_", "-")
            allowed = f"from {low:g} to {high:g}" if high is not None else f"{low:g} or more"
            raise OptionError(f"{flag} {value:g}: must be {allowed}")
