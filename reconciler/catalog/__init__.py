"""The service catalog: what Elasticsearch accepts, fills in and lets change, per service and version.

Everything the project knows about inference services is read through this package, so the
validator, the planner, the redactor, the applier and the emulator cannot disagree about a
setting. Nothing in it does I/O or imports anything but the standard library. Its modules:

- `table`: the data, `SERVICES` and the chunking tables and built-in models, with their value types;
- `checks`: `check_endpoint`, whether a PUT body is valid and what the server stores for it, with
  `chunking` for chunking_settings and `problems` for what they report;
- this module: the rules that read the table (versions, task types, ids, what `_update` can
  change, the deployment an endpoint uses and how healthy it is); it re-exports the names the
  rest of the project uses from the other modules, so callers import `reconciler.catalog` only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from reconciler.catalog.checks import check_endpoint, check_task_settings
from reconciler.catalog.chunking import OLD_DEFAULT_CHUNKING, check_chunking, chunking_applies
from reconciler.catalog.problems import (
    KIND_WORDS,
    BadChoice,
    Checked,
    Problem,
    Stage,
    WrongType,
    empty_string,
    java_double,
    kind_accepts,
    missing_one_of,
    missing_setting,
    not_positive,
)
from reconciler.catalog.table import (
    ALWAYS,
    BUILTIN_MODELS,
    CHUNKING_STRATEGIES,
    DEFAULT_CHUNKING,
    E5_MODEL,
    E5_MODEL_X86,
    ELSER_MODEL,
    ELSER_MODEL_X86,
    EMBEDDING_TASK_TYPES,
    RERANK_MODEL,
    SEPARATOR_GROUPS,
    SERVICES,
    TASK_TYPES,
    BuiltinModel,
    Field,
    Json,
    Kind,
    OneOf,
    Service,
    Since,
    Special,
    Version,
)

__all__ = [
    "ABSENT_DEPLOYMENT",
    "ALWAYS",
    "BUILTIN_MODELS",
    "CHUNKING_STRATEGIES",
    "DEFAULT_CHUNKING",
    "DEFAULT_VERSION",
    "E5_MODEL",
    "E5_MODEL_X86",
    "ELSER_MODEL",
    "ELSER_MODEL_X86",
    "EMBEDDING_TASK_TYPES",
    "INFERENCE_ID",
    "KIND_WORDS",
    "NEWEST_SUPPORTED",
    "NEWEST_UPDATE",
    "OLDEST_SUPPORTED",
    "OLD_DEFAULT_CHUNKING",
    "PUT_TIMEOUT",
    "RERANK_MODEL",
    "SECRET_FIELD_NAMES",
    "SEPARATOR_GROUPS",
    "SERVICES",
    "TASK_TYPES",
    "UPDATE_ARRIVED",
    "BadChoice",
    "BuiltinModel",
    "Checked",
    "Field",
    "Json",
    "Kind",
    "OneOf",
    "Problem",
    "Service",
    "Since",
    "Special",
    "Stage",
    "Version",
    "WrongType",
    "check_chunking",
    "check_endpoint",
    "check_task_settings",
    "chunking_applies",
    "default_elser_model",
    "deployment_health",
    "deployment_id",
    "empty_string",
    "invalid_inference_id_reason",
    "java_double",
    "kind_accepts",
    "missing_one_of",
    "missing_setting",
    "not_positive",
    "parse_task_type",
    "route",
    "service",
    "services",
    "supported",
    "task_types",
    "updatable_in_place",
    "update_changes_chunking",
    "update_resets_chunking",
    "valid_inference_id",
]

# ---------------------------------------------------------------------------------------------
# Versions

OLDEST_SUPPORTED = Version(8, 16)
NEWEST_SUPPORTED = Version(9, 5)
DEFAULT_VERSION = Version(9, 5, 0)
# `_update` arrived with 8.16 and 9.0: PR #114457 (merged to main and 8.x on 2024-10-14, before
# the 8.16 branch, whose docs got the API page by #114980) is in the 8.16.0 release notes; the
# spec's `@availability stack since=8.17.0` disagrees. 9.5 rewrote it (chunking, adaptive
# allocations, merged settings).
UPDATE_ARRIVED = Since((8, 16), (9, 0))
NEWEST_UPDATE = Since((9, 5))
# PUT takes `timeout` from 8.19 and 9.1 (transport version INFERENCE_ADD_TIMEOUT_PUT_ENDPOINT_8_19);
# older servers refuse it as an unrecognized parameter.
PUT_TIMEOUT = Since((8, 19), (9, 1))
# C5: an `_update` rebuilds the endpoint without its chunking settings, which then read back as
# the old default (issue #139574). Fixed on main by PR #140003 (9.4) and backported to 9.2
# (#141687) and 9.3 (#141682) in patch releases whose numbers are not known, so every 9.2.x and
# 9.3.x counts as affected; the 8.19 backport (#141555) was closed unmerged.
_UPDATE_KEEPS_CHUNKING = Since((9, 4))


# The versions `supported` accepts, as messages name them.
SUPPORTED_RANGE = "8.16 to 8.19 and 9.0 to 9.5"


def supported(version: Version) -> bool:
    """The versions whose behaviour the catalog describes: 8.16.x to 8.19.x and 9.0.x to 9.5.x."""
    return OLDEST_SUPPORTED <= Version(version.major, version.minor) <= NEWEST_SUPPORTED


def update_resets_chunking(version: Version) -> bool:
    """Whether a successful `_update` on this version resets chunking_settings to the old default."""
    return UPDATE_ARRIVED.covers(version) and not _UPDATE_KEEPS_CHUNKING.covers(version)


def update_changes_chunking(chunking: Mapping[str, Json] | None, version: Version) -> bool:
    """Whether an `_update` on this version leaves an endpoint with these (stored) chunking settings
    with other ones: it resets them (C5) and they are not that old default."""
    return chunking is not None and update_resets_chunking(version) and chunking != OLD_DEFAULT_CHUNKING


# ---------------------------------------------------------------------------------------------
# Task types, services and ids


def task_types(version: Version) -> list[str]:
    """The task types the server knows, in Elasticsearch's order."""
    return [name for name, since in TASK_TYPES.items() if since.covers(version)]


def parse_task_type(text: str, version: Version) -> str | None:
    """Elasticsearch reads task types trimmed and case-insensitively; None when unknown."""
    name = text.strip().lower()
    return name if name in TASK_TYPES and TASK_TYPES[name].covers(version) else None


def service(name: str, version: Version) -> Service | None:
    """The service of that exact name if the version has it (names are case-sensitive)."""
    found = SERVICES.get(name)
    return found if found is not None and found.available(version) else None


def route(found: Service, task_type: str, version: Version) -> Service:
    """The service that parses the endpoint. A deprecated alias stored as another service is that
    service's own parser under an old name: the task types the alias lacks go to it (`elser` with
    text_embedding or rerank is the elasticsearch service, C14)."""
    if found.stored_as is None or found.supports(task_type, version):
        return found
    name, since = found.stored_as
    target = SERVICES[name]
    return target if since.covers(version) and target.supports(task_type, version) else found


def services(version: Version) -> list[Service]:
    return [s for s in SERVICES.values() if s.available(version)]


# Every secret field name across services: manifests treat these keys as secrets whatever the service.
SECRET_FIELD_NAMES = frozenset(
    f.name for service in SERVICES.values() for f in service.service_settings if f.secret
)

INFERENCE_ID = re.compile(r"[a-z0-9](?:[a-z0-9_\-.]*[a-z0-9])?")


def valid_inference_id(inference_id: str) -> bool:
    """Elasticsearch's id rule (MlStrings.isValidId): lowercase, no leading `.`, not `_all`."""
    return inference_id != "_all" and INFERENCE_ID.fullmatch(inference_id) is not None


def invalid_inference_id_reason(inference_id: str) -> str:
    return (
        f"Invalid inference_id; '{inference_id}' can contain lowercase alphanumeric (a-z and 0-9), "
        "hyphens or underscores; must start and end with alphanumeric"
    )


# ---------------------------------------------------------------------------------------------
# What `_update` can change in place (reference §6)


def updatable_in_place(service: Service, task_type: str, path: str, version: Version) -> bool:
    """Whether `_update` can change this dotted path on this version; anything else is a replace.

    From 8.16: secrets, task_settings, and num_allocations of in-cluster endpoints. From 9.5 also
    chunking_settings, adaptive_allocations and the service settings the service's own update
    parser takes (`Service.updatable`, C6).
    """
    if not UPDATE_ARRIVED.covers(version):
        return False
    section, _, rest = path.partition(".")
    name = rest.split(".")[0]
    newest = NEWEST_UPDATE.covers(version)
    if section == "task_settings":
        return not service.deploys_model or newest
    if section == "chunking_settings":
        return newest and chunking_applies(task_type)
    if section != "service_settings":
        return False
    fields = {f.name: f for f in service.settings(task_type, version)}
    spec = fields.get(name)
    if spec is None:
        return False
    if spec.secret:
        return True
    if service.deploys_model:
        return name == "num_allocations" or (newest and name == "adaptive_allocations")
    return newest and name in service.updatable


# ---------------------------------------------------------------------------------------------
# Trained-model deployments of in-cluster endpoints (reference §9)


def default_elser_model(linux_x86: bool) -> str:
    """The ELSER model id the server picks: the optimised one on homogeneous linux-x86_64 ML nodes."""
    return ELSER_MODEL_X86 if linux_x86 else ELSER_MODEL


def deployment_id(endpoint: Mapping[str, Json]) -> str:
    """The deployment an in-cluster endpoint uses: the one it was given, else its own (its id)."""
    return str((endpoint.get("service_settings") or {}).get("deployment_id") or endpoint["inference_id"])


ABSENT_DEPLOYMENT = "the deployment does not exist (Elasticsearch deletes one that failed to start)"


def deployment_health(stats: Mapping[str, Json] | None) -> tuple[str, int, int, str, str | None]:
    """(outcome, allocations, target, state, reason) of a deployment from its trained-model stats.

    The outcome is `done` when fully allocated at its target, `failed` when the deployment or every
    one of its nodes failed, or when it does not exist, else `waiting`. An endpoint's deployment
    exists once its PUT answered (even with 0 allocations, C8); Elasticsearch deletes one that failed
    to start and keeps the endpoint (C9), so "endpoint present, deployment missing" is a failure.
    """
    if stats is None:
        return "failed", 0, 0, "absent", ABSENT_DEPLOYMENT
    status = stats.get("allocation_status") or {}
    count, target = int(status.get("allocation_count", 0)), int(status.get("target_allocation_count", 0))
    nodes = stats.get("nodes") or []
    node_failures = [n for n in nodes if (n.get("routing_state") or {}).get("routing_state") == "failed"]
    reason = stats.get("reason") or next((n["routing_state"].get("reason") for n in node_failures), None)
    if stats.get("state") == "failed" or (nodes and len(node_failures) == len(nodes)):
        return "failed", count, target, "failed", reason
    if status.get("state") == "fully_allocated" and count == target:
        return "done", count, target, str(status.get("state")), None
    return "waiting", count, target, str(status.get("state", stats.get("state", "starting"))), reason
