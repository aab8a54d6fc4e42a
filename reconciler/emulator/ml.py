"""Trained-model deployments: allocations that ramp up over time within a limited ML capacity.

A deployment's state is computed from the clock rather than driven by a background task, so the
emulator needs no scheduler and any number of deployments costs nothing while nobody looks:

- allocations start one by one, `deploy_seconds / target` apart, up to the target;
- the ML node has `ml_capacity` processors (an allocation uses `threads` of them); deployments
  take capacity in creation order and the rest of their allocations stay pending, with the
  reason Elasticsearch gives;
- a deployment of a model named by `--fail-model` fails half-way through its start-up;
- with autoscaling, what does not fit waits for the autoscaler (`scale_up_seconds`), else for
  freed capacity; without it a start that cannot be fully placed is refused (429).

`trained_model_stats` answers `GET /_ml/trained_models/<ids>/_stats` with the shape and the
computed `allocation_status.state` of the reference's §9.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from reconciler.catalog import E5_MODEL, E5_MODEL_X86, ELSER_MODEL, ELSER_MODEL_X86, RERANK_MODEL
from reconciler.emulator.errors import EsError, not_found

ML_NODE_ID = "mlnode0EmulatorNodeId0"
ML_NODE_NAME = "emulator-ml-0"
# Sizes of the models Elasticsearch ships; other models get a generic size.
MODEL_SIZES: dict[str, tuple[int, int]] = {
    ELSER_MODEL: (438123914, 2101346304),
    ELSER_MODEL_X86: (274756282, 2101346304),
    E5_MODEL: (470086322, 1051403560),
    E5_MODEL_X86: (118318368, 1051403560),
    RERANK_MODEL: (1421568472, 2168524676),
    "lang_ident_model_1": (1053992, 0),
}
ALWAYS_INSTALLED = ("lang_ident_model_1",)


@dataclass
class Deployment:
    """One trained-model deployment; everything that changes over time is derived from the clock."""

    deployment_id: str
    model_id: str
    threads: int
    target: int
    created: float
    adaptive: dict[str, Any] | None = None
    # The inference endpoint that started it (None: started through the ML API or shared).
    owner: str | None = None
    # Allocations already running at `ramp_from`; more start from then on.
    base: int = 0
    ramp_from: float = 0.0
    failure: str | None = None
    fail_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deployment:
        return cls(**data)


@dataclass
class MlSettings:
    """The ML tier: allocation speed, processors, whether it can scale, and failing models.

    `autoscaling` says the cluster can get more ML capacity (autoscaling or lazy ML nodes, as on
    Elastic Cloud): a start that cannot be placed then returns at once with 0 allocations instead
    of failing with 429 (C8). `scale_up_seconds` is how long the autoscaler takes to add the
    capacity a deployment is waiting for (None: it never does, allocations wait for freed capacity).
    """

    deploy_seconds: float = 5.0
    capacity: int | None = None
    autoscaling: bool = True
    fail_models: frozenset[str] = field(default_factory=frozenset)
    scale_up_seconds: float | None = None


def failure_reason(dep: Deployment) -> str:
    return f"Failed to load model [{dep.model_id}] for deployment [{dep.deployment_id}]: emulated failure (--fail-model)"


def new_deployment(
    settings: MlSettings,
    deployment_id: str,
    model_id: str,
    threads: int,
    target: int,
    now: float,
    *,
    adaptive: dict[str, Any] | None,
    owner: str | None,
) -> Deployment:
    dep = Deployment(deployment_id, model_id, threads, target, now, adaptive, owner, 0, now)
    if model_id in settings.fail_models:
        dep.failure = failure_reason(dep)
        dep.fail_at = now + settings.deploy_seconds / 2
    return dep


def has_failed(dep: Deployment, now: float) -> bool:
    return dep.failure is not None and dep.fail_at is not None and now >= dep.fail_at


def shares(settings: MlSettings, deployments: list[Deployment], now: float) -> dict[str, int]:
    """How many allocations each deployment can hold, capacity taken in creation order."""
    if settings.capacity is None:
        return {d.deployment_id: d.target for d in deployments}
    free = settings.capacity
    result: dict[str, int] = {}
    for dep in sorted(deployments, key=lambda d: (d.created, d.deployment_id)):
        if has_failed(dep, now):
            result[dep.deployment_id] = 0
            continue
        if scaled_up(settings, dep, now):
            # The autoscaler added a node for what did not fit: it holds all its allocations.
            result[dep.deployment_id] = dep.target
            continue
        share = max(0, min(dep.target, free // max(dep.threads, 1)))
        result[dep.deployment_id] = share
        free -= share * max(dep.threads, 1)
    return result


def scaled_up(settings: MlSettings, dep: Deployment, now: float) -> bool:
    delay = settings.scale_up_seconds
    return settings.autoscaling and delay is not None and now >= dep.created + delay


def allocation_count(settings: MlSettings, dep: Deployment, share: int, now: float) -> int:
    if has_failed(dep, now):
        return 0
    if settings.deploy_seconds <= 0:
        started = dep.target
    else:
        step = settings.deploy_seconds / max(dep.target, 1)
        ramp_from = dep.ramp_from
        if scaled_up(settings, dep, now):
            # Allocations that waited for the new node start once it is there.
            ramp_from = max(ramp_from, dep.created + (settings.scale_up_seconds or 0.0))
        started = dep.base + int((now - ramp_from) / step + 1e-9)
    return max(0, min(dep.target, share, started))


def allocation_state(count: int, target: int) -> str:
    """Elasticsearch computes this; 0/0 (adaptive, scaled to zero) counts as fully allocated."""
    if count == 0 and target > 0:
        return "starting"
    if count < target:
        return "started"
    return "fully_allocated"


def capacity_reason(settings: MlSettings, dep: Deployment, deployments: list[Deployment], now: float) -> str:
    used = 0
    table = shares(settings, deployments, now)
    for other in deployments:
        used += table.get(other.deployment_id, 0) * max(other.threads, 1)
    capacity = settings.capacity or 0
    return (
        f"Could not assign (more) allocations on node [{ML_NODE_ID}]. Reason: This node has insufficient "
        f"allocated processors. Available processors [{capacity}], free processors [{max(capacity - used, 0)}], "
        f"processors required for each allocation of this model [{dep.threads}]"
    )


def scale(settings: MlSettings, dep: Deployment, share: int, target: int, now: float) -> None:
    """Change the target: running allocations stay, new ones ramp up from now."""
    current = allocation_count(settings, dep, share, now)
    dep.target = target
    dep.base = min(current, target)
    dep.ramp_from = now


def _node(version: str) -> dict[str, Any]:
    index_version = "9009000" if version.startswith("9.") else "8525000"
    return {
        ML_NODE_ID: {
            "name": ML_NODE_NAME,
            "ephemeral_id": "emulatorEphemeralId000",
            "transport_address": "127.0.0.1:9300",
            "external_id": ML_NODE_NAME,
            "attributes": {"ml.allocated_processors": "8", "ml.machine_memory": "17179869184"},
            "roles": ["ml", "remote_cluster_client"],
            "version": version,
            "min_index_version": 7000099,
            "max_index_version": int(index_version),
        }
    }


def deployment_stats(
    settings: MlSettings, dep: Deployment, deployments: list[Deployment], now: float, version: str
) -> dict[str, Any]:
    share = shares(settings, deployments, now).get(dep.deployment_id, 0)
    count = allocation_count(settings, dep, share, now)
    failed = has_failed(dep, now)
    stats: dict[str, Any] = {
        "deployment_id": dep.deployment_id,
        "model_id": dep.model_id,
        "threads_per_allocation": dep.threads,
        "number_of_allocations": dep.target,
    }
    if dep.adaptive is not None:
        stats["adaptive_allocations"] = dep.adaptive
    stats["queue_capacity"] = 1024
    if failed:
        stats["state"] = "failed"
        stats["reason"] = dep.failure
    else:
        stats["state"] = "starting" if count == 0 and dep.target > 0 else "started"
        if share < dep.target:
            stats["reason"] = capacity_reason(settings, dep, deployments, now)
    stats["allocation_status"] = {
        "allocation_count": count,
        "target_allocation_count": dep.target,
        "state": allocation_state(count, dep.target),
    }
    stats["cache_size"] = "0b"
    stats["priority"] = "normal"
    stats["start_time"] = int(dep.created * 1000)
    stats["peak_throughput_per_minute"] = 0
    stats["nodes"] = _nodes(dep, count, share, failed, version)
    return stats


def _nodes(dep: Deployment, count: int, share: int, failed: bool, version: str) -> list[dict[str, Any]]:
    """The deployment's routing on the one ML node: failed, started, starting, or none yet."""
    idle = {"peak_throughput_per_minute": 0, "throughput_last_minute": 0}
    if failed:
        return [{"routing_state": {"routing_state": "failed", "reason": dep.failure}, **idle}]
    if count > 0:
        return [
            {
                "node": _node(version),
                "routing_state": {"routing_state": "started"},
                "inference_count": 0,
                "number_of_pending_requests": 0,
                "start_time": int(dep.created * 1000),
                "threads_per_allocation": dep.threads,
                "number_of_allocations": count,
                **idle,
            }
        ]
    if share > 0:
        return [{"routing_state": {"routing_state": "starting"}, **idle}]
    return []


def model_entry(model_id: str, pipeline_count: int, now: float) -> dict[str, Any]:
    size, memory = MODEL_SIZES.get(model_id, (268435456, 1073741824))
    return {
        "model_id": model_id,
        "model_size_stats": {"model_size_bytes": size, "required_native_memory_bytes": memory},
        "pipeline_count": pipeline_count,
        "inference_stats": {
            "failure_count": 0,
            "inference_count": 0,
            "cache_miss_count": 0,
            "missing_all_fields_count": 0,
            "timestamp": int(now * 1000),
        },
    }


def trained_model_stats(
    settings: MlSettings,
    models: list[str],
    deployments: list[Deployment],
    pipeline_counts: dict[str, int],
    ids: str | None,
    *,
    allow_no_match: bool,
    start: int,
    size: int,
    now: float,
    version: str,
) -> dict[str, Any]:
    """Resolve ids (model ids, deployment ids, wildcards) as the stats API does, then page."""
    all_models = sorted(set(models) | {d.model_id for d in deployments})
    matched_models, matched_deployments = _resolve_ids(all_models, deployments, ids, allow_no_match)

    def with_deployment(dep: Deployment) -> tuple[str, str, dict[str, Any]]:
        entry = _with_deployment(settings, dep, deployments, pipeline_counts, now, version)
        return dep.model_id, dep.deployment_id, entry

    entries: list[tuple[str, str, dict[str, Any]]] = []
    for model_id in sorted(matched_models):
        deps = [d for d in deployments if d.model_id == model_id]
        if not deps:
            entries.append((model_id, "", model_entry(model_id, pipeline_counts.get(model_id, 0), now)))
        for dep in deps:
            matched_deployments.discard(dep.deployment_id)
            entries.append(with_deployment(dep))
    by_id = {d.deployment_id: d for d in deployments}
    entries.extend(with_deployment(by_id[dep_id]) for dep_id in sorted(matched_deployments))
    entries.sort(key=lambda e: (e[0], e[1]))
    count = len({model for model, _, _ in entries})
    return {"count": count, "trained_model_stats": [e for _, _, e in entries[start : start + size]]}


def _resolve_ids(
    all_models: list[str], deployments: list[Deployment], ids: str | None, allow_no_match: bool
) -> tuple[set[str], set[str]]:
    """(model ids, deployment ids) the comma-separated ids name; an id that names nothing is a 404."""
    deployment_ids = [d.deployment_id for d in deployments]
    matched_models: set[str] = set()
    matched_deployments: set[str] = set()
    missing: list[str] = []
    for token in [t for t in (ids or "_all").split(",") if t] or ["_all"]:
        if token in ("_all", "*"):
            hit_models, hit_deps = list(all_models), []
        elif "*" in token:
            hit_models, hit_deps = fnmatch.filter(all_models, token), fnmatch.filter(deployment_ids, token)
        else:
            # An exact id names a model first, else a deployment; it must name something.
            hit_models = [token] if token in all_models else []
            hit_deps = [token] if not hit_models and token in deployment_ids else []
            if not hit_models and not hit_deps:
                missing.append(token)
                continue
        matched_models.update(hit_models)
        matched_deployments.update(hit_deps)
        if not hit_models and not hit_deps and not allow_no_match:
            missing.append(token)
    if missing:
        raise not_found(f"No known trained model with model_id [{','.join(missing)}]")
    return matched_models, matched_deployments


def _with_deployment(
    settings: MlSettings,
    dep: Deployment,
    deployments: list[Deployment],
    pipeline_counts: dict[str, int],
    now: float,
    version: str,
) -> dict[str, Any]:
    entry = model_entry(dep.model_id, pipeline_counts.get(dep.model_id, 0), now)
    entry["deployment_stats"] = deployment_stats(settings, dep, deployments, now, version)
    return entry


def start_failure(settings: MlSettings, dep: Deployment, share: int, now: float) -> EsError | None:
    """What a waiting start-deployment call answers, or None while it should keep waiting.

    No capacity and no way to scale is a 429 on every version up to 9.5.0
    (TrainedModelAssignmentClusterService.checkModelIsFullyAllocatedIfScalingIsNotPossible, C8).
    """
    if has_failed(dep, now):
        return EsError(
            500,
            "status_exception",
            "Could not start trained model deployment, the following nodes failed with errors "
            f"[{{{ML_NODE_ID}={dep.failure}}}]",
        )
    if not settings.autoscaling and share == 0 and dep.target > 0:
        return EsError(
            429,
            "status_exception",
            "Could not start deployment because no ML nodes with sufficient capacity were found",
        )
    if not settings.autoscaling and share < dep.target:
        return EsError(
            429,
            "status_exception",
            "Could not start deployment because there are not enough resources to provide all requested allocations",
        )
    return None
