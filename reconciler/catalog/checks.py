"""Checking an endpoint body against the service table, as Elasticsearch's PUT parses it.

`check_endpoint` is the one place that decides whether a PUT body is valid for a service, task type
and version, and what the server stores and echoes for it: defaults filled in, secrets set apart,
chunking_settings parsed. Its problems come in Elasticsearch's checking order (`Stage`).
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.catalog.chunking import check_chunking, chunking_applies
from reconciler.catalog.problems import (
    Checked,
    Problem,
    Stage,
    bound_reason,
    choice_problem,
    empty_string,
    kind_accepts,
    missing_one_of,
    missing_setting,
    not_positive,
    type_problem,
    unknown_problems,
)
from reconciler.catalog.table import Field, Json, Kind, Service, Special, Version


def check_endpoint(service: Service, task_type: str, body: Mapping[str, Json], version: Version) -> Checked:
    """Check an endpoint body (without `service` and `task_type`) as Elasticsearch's PUT does.

    Returns every problem found, in Elasticsearch's checking order, and what the server stores:
    the echoed service_settings (defaults filled in, secrets removed), the secrets, the echoed
    task_settings and the chunking_settings (None when the task type has none).
    """
    if not service.supports(task_type, version):
        reason = f"The [{service.name}] service does not support task type [{task_type}]"
        return Checked((Problem(Stage.TASK_TYPE, "task_type", reason, "status_exception"),))
    problems: list[Problem] = []
    raw_settings = _section(body, "service_settings", Stage.SERVICE_SETTINGS_MISSING, problems)
    raw_task = _section(body, "task_settings", Stage.TASK_SETTINGS, problems)
    settings_left, task_left = dict(raw_settings), dict(raw_task)
    stored_settings, secrets = _take_service_settings(
        service, task_type, raw_settings, settings_left, version, problems
    )
    stored_task = _take_task_settings(service, task_type, task_left, version, problems)
    top_left = {k: v for k, v in body.items() if k not in ("service_settings", "task_settings")}
    chunking: dict[str, Json] | None = None
    if chunking_applies(task_type):
        chunking, chunk_problems = check_chunking(top_left.pop("chunking_settings", None), version)
        problems.extend(chunk_problems)
    for section, left in (("", top_left), ("service_settings", settings_left), ("task_settings", task_left)):
        problems.extend(unknown_problems(Stage.UNKNOWN, section, left, service.name))
    problems.sort(key=lambda p: p.stage)
    return Checked(tuple(problems), stored_settings, secrets, stored_task, chunking)


def _section(body: Mapping[str, Json], name: str, stage: Stage, problems: list[Problem]) -> dict[str, Json]:
    """One settings object of the body ({} when absent or not an object); service_settings is required."""
    value = body.get(name)
    if value is None:
        if name == "service_settings":
            reason = f"Missing required field [{name}]"
            problems.append(Problem(Stage.SERVICE_SETTINGS_MISSING, name, reason, "status_exception"))
        return {}
    if not isinstance(value, dict):
        problems.append(type_problem(stage, name, name, value, Kind.MAP))
        return {}
    return value


def _take_service_settings(
    service: Service,
    task_type: str,
    raw: Mapping[str, Json],
    left: dict[str, Json],
    version: Version,
    problems: list[Problem],
) -> tuple[dict[str, Json], dict[str, Json]]:
    """The echoed service_settings and the secrets; what is taken is removed from `left`."""
    stored: dict[str, Json] = {}
    secrets: dict[str, Json] = {}
    # With `deployment_id`, an in-cluster endpoint takes its other settings from that deployment.
    from_deployment = service.deploys_model and raw.get("deployment_id") is not None
    for spec in service.settings(task_type, version):
        if spec.special is Special.DIMENSIONS_SET_BY_USER:
            stored[spec.name] = raw.get("dimensions") is not None
            continue
        required = spec.is_required(version) and not from_deployment
        value = _take(spec, left, "service_settings", service, task_type, problems, required)
        if value is None:
            continue
        if spec.secret:
            secrets[spec.name] = value
        elif spec.echo:
            stored[spec.echo_as or spec.name] = value
    if not from_deployment:
        _check_one_of(service, raw, task_type, version, problems)
    _check_rules(service, stored, problems)
    return stored, secrets


def check_task_settings(
    service: Service, task_type: str, settings: Mapping[str, Json], version: Version
) -> tuple[dict[str, Json], list[Problem]]:
    """Check task_settings alone (as `_update` does): what the server stores, and the problems."""
    left = dict(settings)
    problems: list[Problem] = []
    stored = _take_task_settings(service, task_type, left, version, problems)
    problems.extend(unknown_problems(Stage.UNKNOWN, "task_settings", left, service.name))
    return stored, problems


def _take_task_settings(
    service: Service, task_type: str, left: dict[str, Json], version: Version, problems: list[Problem]
) -> dict[str, Json]:
    stored: dict[str, Json] = {}
    for spec in service.task_fields(task_type, version):
        value = _take(spec, left, "task_settings", service, task_type, problems, spec.is_required(version))
        if value is not None and spec.echo:
            stored[spec.echo_as or spec.name] = value
    return stored


def _take(
    spec: Field,
    settings: dict[str, Json],
    section: str,
    service: Service,
    task_type: str,
    problems: list[Problem],
    required: bool,
) -> Json:
    """Remove one setting from `settings`, check it, and return the value the server stores."""
    path = f"{section}.{spec.name}"
    if not spec.accepted:
        return spec.default
    if spec.special is Special.RATE_LIMIT:
        return _take_rate_limit(settings, service, task_type, path, problems)
    if spec.special is Special.ADAPTIVE_ALLOCATIONS:
        return _take_adaptive(settings, path, problems)
    scope, stage = _scope(spec, section)
    value = settings.pop(spec.name, None)
    if value is None:
        if required:
            es_type, reason = spec.missing_reason or (
                "validation_exception",
                missing_setting(spec.name, scope),
            )
            problems.append(Problem(stage, path, reason, es_type))
        return spec.default
    problem = _value_problem(spec, value, scope, stage, path)
    if problem is not None:
        problems.append(problem)
        return None
    if spec.kind is Kind.ENUM:
        canonical = _choice(spec, value)
        return spec.echo_values.get(canonical, canonical)
    return value


def _scope(spec: Field, section: str) -> tuple[str, Stage]:
    """The settings object Elasticsearch names in its reasons, and the stage it checks it in."""
    if section == "task_settings":
        return "task_settings", Stage.TASK_SETTINGS
    if spec.secret:
        return "secret_settings", Stage.SECRETS
    return "service_settings", Stage.SERVICE_SETTINGS


def _choice(spec: Field, value: str) -> str:
    """The choice a value names (choices are matched trimmed and case-insensitively); '' when none."""
    return {c.lower(): c for c in spec.choices}.get(value.strip().lower(), "")


def _value_problem(spec: Field, value: Json, scope: str, stage: Stage, path: str) -> Problem | None:
    """The first rule a present value breaks, in the order the Java parser checks them."""
    if not kind_accepts(spec.kind, value):
        return type_problem(stage, path, spec.name, value, spec.kind)
    if spec.kind in (Kind.STRING, Kind.ENUM) and spec.non_empty and value == "":
        return Problem(stage, path, empty_string(scope, spec.name))
    if spec.kind is Kind.ENUM:
        if _choice(spec, value):
            return None
        choices = ", ".join(sorted(c.lower() for c in spec.choices))
        return choice_problem(stage, path, scope, spec.name, value, choices)
    reason = _number_reason(spec, value, scope)
    if reason is not None:
        return Problem(stage, path, reason)
    if spec.check == "power_of_two_32" and value not in (1, 2, 4, 8, 16, 32):
        reason = (
            "Validation Failed: 1: [threads_per_allocation] must be a power of 2 less than or equal to 32;"
        )
        return Problem(Stage.DEPLOYMENT, path, reason, "action_request_validation_exception")
    return None


def _number_reason(spec: Field, value: Json, scope: str) -> str | None:
    if spec.positive and value <= 0:
        return not_positive(scope, spec.name, value, "long" if spec.kind is Kind.LONG else "integer")
    if spec.minimum is not None and value < spec.minimum:
        return bound_reason(scope, spec.name, value, spec.minimum, "greater")
    if spec.maximum is not None and value > spec.maximum:
        return bound_reason(scope, spec.name, value, spec.maximum, "less")
    return None


def _take_rate_limit(
    settings: dict[str, Json], service: Service, task_type: str, path: str, problems: list[Problem]
) -> Json:
    value = settings.pop("rate_limit", None)
    if value is None:
        value = {}
    if not isinstance(value, dict):
        problems.append(type_problem(Stage.SERVICE_SETTINGS, path, "rate_limit", value, Kind.MAP))
        return None
    rest = dict(value)
    rpm = rest.pop("requests_per_minute", None)
    problems.extend(unknown_problems(Stage.SERVICE_SETTINGS, path, rest, service.name))
    if rpm is None:
        return {"requests_per_minute": service.default_rate_limit(task_type)}
    rpm_path = f"{path}.requests_per_minute"
    if not kind_accepts(Kind.LONG, rpm):
        name = "requests_per_minute"
        problems.append(
            type_problem(Stage.SERVICE_SETTINGS, rpm_path, name, rpm, Kind.LONG, integer_or_long=True)
        )
        return None
    if rpm <= 0:
        problems.append(
            Problem(
                Stage.SERVICE_SETTINGS,
                rpm_path,
                not_positive("rate_limit", "requests_per_minute", rpm, "long"),
            )
        )
        return None
    return {"requests_per_minute": rpm}


_ADAPTIVE_KINDS = {
    "enabled": Kind.BOOLEAN,
    "min_number_of_allocations": Kind.INTEGER,
    "max_number_of_allocations": Kind.INTEGER,
}


def _take_adaptive(settings: dict[str, Json], path: str, problems: list[Problem]) -> Json:
    value = settings.pop("adaptive_allocations", None)
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.append(type_problem(Stage.SERVICE_SETTINGS, path, "adaptive_allocations", value, Kind.MAP))
        return None
    stored: dict[str, Json] = {}
    for key, item in value.items():
        if key not in _ADAPTIVE_KINDS:
            reason = f"[adaptive_allocations] does not allow the setting [{key}]"
            problems.append(Problem(Stage.SERVICE_SETTINGS, f"{path}.{key}", reason))
        elif item is not None and not kind_accepts(_ADAPTIVE_KINDS[key], item):
            problems.append(
                type_problem(Stage.SERVICE_SETTINGS, f"{path}.{key}", key, item, _ADAPTIVE_KINDS[key])
            )
        elif item is not None:
            stored[key] = item
    problems.extend(_adaptive_bounds(stored, path))
    # The server always prints `enabled`; an absent value reads as false.
    return {
        "enabled": bool(stored.get("enabled", False)),
        **{k: v for k, v in stored.items() if k != "enabled"},
    }


def _adaptive_bounds(stored: Mapping[str, Json], path: str) -> list[Problem]:
    low = stored.get("min_number_of_allocations")
    high = stored.get("max_number_of_allocations")
    found: list[tuple[str, str]] = []
    if low is not None and low < 0:
        found.append(("min", "[min_number_of_allocations] must be a non-negative integer or null"))
    if high is not None and high < 1:
        found.append(("max", "[max_number_of_allocations] must be a positive integer or null"))
    if low is not None and high is not None and low > high:
        found.append(
            ("min", "[min_number_of_allocations] must not be larger than [max_number_of_allocations]")
        )
    return [
        Problem(Stage.SERVICE_SETTINGS, f"{path}.{bound}_number_of_allocations", reason)
        for bound, reason in found
    ]


def _check_one_of(
    service: Service, settings: Mapping[str, Json], task_type: str, version: Version, problems: list[Problem]
) -> None:
    applicable = {f.name: f for f in service.settings(task_type, version)}
    for group in service.one_of:
        names = [n for n in group.names if n in applicable]
        present = [n for n in names if settings.get(n) is not None]
        if not names or len(present) == 1 or (present and not group.exactly):
            continue
        secret = all(applicable[n].secret for n in names)
        scope = "secret_settings" if secret else "service_settings"
        stage = Stage.SECRETS if secret else Stage.SERVICE_SETTINGS
        if len(names) == 1:
            reason = missing_setting(names[0], scope)
        elif not present:
            reason = missing_one_of(names, scope)
        else:
            reason = f"[{scope}] must have only one of the [{'], ['.join(present)}] settings"
        problems.append(Problem(stage, f"service_settings.{(present or names)[0]}", reason))


def _check_rules(service: Service, settings: Mapping[str, Json], problems: list[Problem]) -> None:
    adaptive = settings.get("adaptive_allocations")
    if (
        "adaptive_excludes_num_allocations" in service.rules
        and settings.get("num_allocations") is not None
        and isinstance(adaptive, dict)
        and adaptive.get("enabled")
    ):
        reason = (
            "Validation Failed: 1: [number_of_allocations] cannot be set if adaptive allocations is enabled;"
        )
        path = "service_settings.num_allocations"
        problems.append(Problem(Stage.DEPLOYMENT, path, reason, "action_request_validation_exception"))
    if (
        "max_chunks_requires_chunk" in service.rules
        and settings.get("max_chunks_per_doc") is not None
        and settings.get("long_document_strategy") != "chunk"
    ):
        reason = "The [max_chunks_per_doc] setting requires [long_document_strategy] to be set to [chunk]"
        problems.append(Problem(Stage.SERVICE_SETTINGS, "service_settings.max_chunks_per_doc", reason))
