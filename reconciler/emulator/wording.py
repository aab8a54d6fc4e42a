"""Elasticsearch's wording of the catalog's problems: the exact reason and the first failure it reports.

The catalog finds problems with their facts (the stage, the offending key or value, its expected
kind); this module prints them as the server does, with values written the way Java's toString
writes them, and picks what Elasticsearch answers when several things are wrong: it stops at the
first stage that failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reconciler.catalog import BadChoice, Json, Kind, Problem, Version, WrongType, java_double


def java_str(value: Json) -> str:
    """How Java's toString prints a parsed JSON value in Elasticsearch's messages."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, float):
        return java_double(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={java_str(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(java_str(v) for v in value) + "]"
    return str(value)


# The name some services print in their unknown-settings reason instead of the request's service
# string (C13): the first JinaAI service passed its display name (JinaAIServiceTests at the 8.18 /
# 9.0 commit expect `unknown to the [JinaAI] service`; later ones `[jinaai]`).
_PRINTED_NAMES: dict[str, tuple[str, frozenset[tuple[int, int]]]] = {
    "jinaai": ("JinaAI", frozenset({(8, 18), (9, 0)})),
}


def printed_service_name(name: str, version: Version) -> str:
    """The service name as Elasticsearch prints it in reasons on this version."""
    shown, minors = _PRINTED_NAMES.get(name, (name, frozenset()))
    return shown if (version.major, version.minor) in minors else name


def unknown_settings_reason(settings: Mapping[str, Json], service: str) -> str:
    return f"Model configuration contains settings [{java_str(dict(settings))}] unknown to the [{service}] service"


def wrong_type(detail: WrongType) -> str:
    if detail.integer_or_long:
        return (
            f"field [{detail.name}] is not of one of the expected types. "
            f"The value [{java_str(detail.value)}] cannot be converted to one of [Integer, Long]"
        )
    java = "String" if detail.kind is Kind.ENUM else detail.kind.value
    return (
        f"field [{detail.name}] is not of the expected type. "
        f"The value [{java_str(detail.value)}] cannot be converted to a [{java}]"
    )


def bad_choice(detail: BadChoice) -> str:
    return (
        f"[{detail.scope}] Invalid value [{java_str(detail.value)}] received. "
        f"[{detail.name}] must be one of [{detail.choices}]"
    )


def reason(problem: Problem) -> str:
    """Elasticsearch's reason for one problem (unknown keys are printed together, see below)."""
    if isinstance(problem.detail, WrongType):
        return wrong_type(problem.detail)
    if isinstance(problem.detail, BadChoice):
        return bad_choice(problem.detail)
    return problem.reason


# Settings read with the three-argument ServiceUtils.removeAsType, which throws a bare
# ElasticsearchStatusException (400 status_exception) at the first wrong type rather than adding it
# to a ValidationException: AnthropicChatCompletionTaskSettings reads temperature, top_p and top_k
# so (max_tokens goes through extractRequiredPositiveInteger and its ValidationException).
_THROWN_TYPE_ERRORS = {
    ("anthropic", "task_settings.temperature"),
    ("anthropic", "task_settings.top_p"),
    ("anthropic", "task_settings.top_k"),
}


def _thrown(problem: Problem, service_name: str) -> bool:
    return isinstance(problem.detail, WrongType) and (service_name, problem.path) in _THROWN_TYPE_ERRORS


def first_failure(problems: Sequence[Problem], service_name: str) -> tuple[str, str]:
    """The (error type, reason) Elasticsearch answers with for these problems.

    It stops at the first stage that failed. Validation errors of that stage are joined as
    `Validation Failed: 1: a;2: b;`; unknown settings are printed as one map per section.
    """
    stage = min(p.stage for p in problems)
    found = [p for p in problems if p.stage == stage]
    unknown = [p for p in found if p.unknown is not None]
    if unknown:
        section = unknown[0].path.rpartition(".")[0]
        keys = {
            p.unknown[0]: p.unknown[1] for p in unknown if p.unknown and p.path.rpartition(".")[0] == section
        }
        return "status_exception", unknown_settings_reason(keys, service_name)
    thrown = [p for p in found if _thrown(p, service_name)]
    if thrown:
        return "status_exception", reason(thrown[0])
    others = [p for p in found if p.es_type != "validation_exception"]
    if others:
        return others[0].es_type, reason(others[0])
    if len(found) == 1 and found[0].reason.startswith("Validation Failed"):
        return found[0].es_type, found[0].reason
    joined = "".join(f"{i}: {reason(p)};" for i, p in enumerate(found, start=1))
    return "validation_exception", f"Validation Failed: {joined}"
