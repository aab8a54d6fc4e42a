"""Hypothesis strategies: arbitrary valid manifests for any service, task type and version.

They are drawn from the service catalog itself (required settings, kinds, bounds, choices,
secrets, one-of groups, the in-cluster service's models and rules), so every test built on them
covers every service the catalog knows.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from reconciler import catalog
from reconciler.catalog import Field, Kind, Service, Special, Version

VERSIONS = [
    Version(8, 16, 2),
    Version(8, 17, 1),
    Version(8, 19, 3),
    Version(9, 0, 4),
    Version(9, 2, 1),
    Version(9, 5, 0),
]
NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12).filter(
    lambda s: s[0].isalnum() and s[-1].isalnum()
)


def _value(spec: Field) -> st.SearchStrategy[Any]:
    if spec.kind is Kind.ENUM:
        return st.sampled_from(spec.choices)
    if spec.kind in (Kind.INTEGER, Kind.LONG):
        if spec.check == "power_of_two_32":
            return st.sampled_from([1, 2, 4, 8])
        low = int(spec.minimum) if spec.minimum is not None else (1 if spec.positive else 0)
        high = int(spec.maximum) if spec.maximum is not None else 4096
        return st.integers(low, high)
    if spec.kind is Kind.DOUBLE:
        bottom = spec.minimum if spec.minimum is not None else 0.0
        top = spec.maximum if spec.maximum is not None else 2.0
        return st.floats(bottom, top, allow_nan=False).map(lambda f: round(f, 3))
    if spec.kind is Kind.BOOLEAN:
        return st.booleans()
    if spec.kind is Kind.MAP:
        return st.just({"key": "value"})
    if spec.kind is Kind.LIST:
        return st.just(["item"])
    return NAME


def _chunking(version: Version) -> st.SearchStrategy[dict[str, Any] | None]:
    options: list[st.SearchStrategy[dict[str, Any] | None]] = [
        st.none(),
        st.builds(
            lambda size, overlap: {
                "strategy": "sentence",
                "max_chunk_size": size,
                "sentence_overlap": overlap,
            },
            st.integers(20, 300),
            st.sampled_from([0, 1]),
        ),
        st.integers(10, 300).flatmap(
            lambda size: st.integers(1, size // 2).map(
                lambda overlap: {"strategy": "word", "max_chunk_size": size, "overlap": overlap}
            )
        ),
    ]
    if catalog.CHUNKING_STRATEGIES["none"].covers(version):
        options.append(st.just({"strategy": "none"}))
    if catalog.CHUNKING_STRATEGIES["recursive"].covers(version):
        options.append(
            st.builds(
                lambda size, group: {
                    "strategy": "recursive",
                    "max_chunk_size": size,
                    "separator_group": group,
                },
                st.integers(10, 300),
                st.sampled_from(["plaintext", "markdown"]),
            )
        )
    return st.one_of(options)


def _setting(draw: st.DrawFn, spec: Field, env: dict[str, str]) -> Any:
    """A value for one service setting; a secret is a reference, its value put in `env`."""
    if spec.secret:
        name = f"S_{spec.name.upper()}"
        env[name] = draw(NAME)
        return {"token": f"${{{name}}}"} if spec.kind is Kind.MAP else f"${{{name}}}"
    if spec.special is Special.RATE_LIMIT:
        return {"requests_per_minute": draw(st.integers(1, 10000))}
    if spec.special is Special.ADAPTIVE_ALLOCATIONS:
        low = draw(st.integers(0, 2))
        return {
            "enabled": True,
            "min_number_of_allocations": low,
            "max_number_of_allocations": low + draw(st.integers(1, 3)),
        }
    return draw(_value(spec))


def _service_settings(
    draw: st.DrawFn, service: Service, task_type: str, version: Version, env: dict[str, str]
) -> dict[str, Any]:
    fields = [
        f
        for f in service.settings(task_type, version)
        if f.accepted and f.special is not Special.DIMENSIONS_SET_BY_USER
    ]
    chosen: set[str] = set()
    for group in service.one_of:
        names = [n for n in group.names if any(f.name == n for f in fields)]
        if names:
            chosen.add(draw(st.sampled_from(names)))
    excluded = {n for group in service.one_of for n in group.names} - chosen
    # max_chunks_per_doc needs long_document_strategy: chunk (a rule of its own)
    skipped = excluded | {"max_chunks_per_doc"} | ({"deployment_id"} if service.deploys_model else set())
    settings: dict[str, Any] = {}
    for spec in fields:
        if spec.name in skipped:
            continue
        if spec.name in chosen or spec.is_required(version) or draw(st.booleans()):
            settings[spec.name] = _setting(draw, spec, env)
    if service.deploys_model:
        _in_cluster(draw, service, task_type, settings)
    return settings


def _in_cluster(draw: st.DrawFn, service: Service, task_type: str, settings: dict[str, Any]) -> None:
    """A built-in model, and allocations fixed or adaptive (never both)."""
    models = [m for m in catalog.BUILTIN_MODELS.values() if m.task_type == task_type and not m.x86_only]
    settings["model_id"] = draw(st.sampled_from([m.model_id for m in models]))
    if service.name == "elser" and draw(st.booleans()):
        settings.pop("model_id")
    if isinstance(settings.get("adaptive_allocations"), dict):
        settings.pop("num_allocations", None)
    elif "num_allocations" not in settings:
        settings["num_allocations"] = draw(st.integers(1, 3))


@st.composite
def manifests(
    draw: st.DrawFn, version: Version, service: Service | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """A valid manifest (as a mapping) for this version, and the environment its references need."""
    if service is None:
        service = draw(
            st.sampled_from([s for s in catalog.services(version) if s.supported_task_types(version)])
        )
    task_type = draw(st.sampled_from(service.supported_task_types(version)))
    env: dict[str, str] = {}
    manifest: dict[str, Any] = {
        "inference_id": draw(NAME),
        "task_type": task_type,
        "service": service.name,
        "service_settings": _service_settings(draw, service, task_type, version, env),
    }
    task: dict[str, Any] = {}
    for spec in service.task_fields(task_type, version):
        if spec.unreadable is not None:
            continue  # valid for Elasticsearch, refused by validate (the endpoint could not be read back)
        if spec.is_required(version) or draw(st.booleans()):
            task[spec.name] = draw(_value(spec))
    if task:
        manifest["task_settings"] = task
    if catalog.chunking_applies(task_type):
        chunking = draw(_chunking(version))
        if chunking is not None:
            manifest["chunking_settings"] = chunking
    return manifest, env
