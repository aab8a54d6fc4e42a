"""chunking_settings, parsed as the chunking package of the inference plugin parses them.

Each strategy (sentence, word, none, recursive; which ones depends on the version) takes its own
keys within its own bounds; what the server stores is the parsed settings, the default ones when
none are given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from reconciler.catalog.problems import (
    Problem,
    Stage,
    bound_reason,
    choice_problem,
    kind_accepts,
    missing_setting,
    not_positive,
    type_problem,
)
from reconciler.catalog.table import (
    CHUNK_KEYS,
    CHUNK_MIN,
    CHUNKING_STRATEGIES,
    DEFAULT_CHUNKING,
    EMBEDDING_TASK_TYPES,
    SEPARATOR_GROUPS,
    Json,
    Kind,
    Since,
    Version,
)

# What the server reports for an endpoint stored without chunking settings (created before 8.16,
# or rewritten by an affected `_update`, C5): ChunkingSettingsBuilder.OLD_DEFAULT_SETTINGS.
OLD_DEFAULT_CHUNKING: dict[str, Json] = {"strategy": "word", "max_chunk_size": 250, "overlap": 100}

_CHUNK_LABEL = {"sentence": "Sentence based", "word": "Word based", "recursive": "Recursive", "none": "None"}
# An upper bound of 300 words on max_chunk_size held up to 9.1.
_CHUNK_SIZE_UNBOUNDED = Since((9, 2))


def chunking_applies(task_type: str) -> bool:
    return task_type in EMBEDDING_TASK_TYPES


def check_chunking(value: Json, version: Version) -> tuple[dict[str, Json] | None, list[Problem]]:
    """Parse chunking_settings as Elasticsearch does; returns what it stores (None on error)."""
    if value is None or value == {}:
        return dict(DEFAULT_CHUNKING), []
    if not isinstance(value, dict):
        return None, [type_problem(Stage.CHUNKING, "chunking_settings", "chunking_settings", value, Kind.MAP)]
    strategy, refused = _chunking_strategy(value, version)
    if refused is not None:
        return None, [refused]
    if strategy == "none":
        return {"strategy": "none"}, []
    problems = _foreign_chunk_keys(value, strategy)
    upper = None if _CHUNK_SIZE_UNBOUNDED.covers(version) else 300
    size = _chunk_int(value, "max_chunk_size", problems, low=CHUNK_MIN[strategy], high=upper)
    stored: dict[str, Json] = {"strategy": strategy, "max_chunk_size": size}
    stored.update(_STRATEGY_SETTINGS[strategy](value, size, problems))
    return (None, problems) if problems else (stored, [])


def _chunk_problem(path: str, reason: str, es_type: str = "validation_exception") -> Problem:
    return Problem(Stage.CHUNKING, path, reason, es_type)


def _chunking_strategy(value: Mapping[str, Json], version: Version) -> tuple[str, Problem | None]:
    """The strategy named, or the problem with it."""
    path = "chunking_settings.strategy"
    if "strategy" not in value:
        reason = "Can't generate Chunker without ChunkingStrategy provided"
        return "", _chunk_problem(path, reason, "illegal_argument_exception")
    strategy = value["strategy"] if isinstance(value["strategy"], str) else str(value["strategy"])
    since = CHUNKING_STRATEGIES.get(strategy)
    if since is not None and since.covers(version):
        return strategy, None
    known = ", ".join(name for name, since in CHUNKING_STRATEGIES.items() if since.covers(version))
    reason = f"Invalid chunkingStrategy {strategy}"
    return strategy, Problem(
        Stage.CHUNKING, path, reason, "illegal_argument_exception", message=f"must be one of [{known}]"
    )


def _foreign_chunk_keys(value: Mapping[str, Json], strategy: str) -> list[Problem]:
    """Keys of another strategy: one problem per key, each naming them all."""
    invalid = [k for k in value if k not in CHUNK_KEYS[strategy]]
    label = _CHUNK_LABEL[strategy]
    reason = f"{label} chunking settings can not have the following settings: [{', '.join(invalid)}]"
    return [_chunk_problem(f"chunking_settings.{key}", reason) for key in invalid]


def _chunk_int(
    settings: Mapping[str, Json], name: str, problems: list[Problem], *, low: int | None, high: int | None
) -> int | None:
    """A required positive integer within bounds; None (and a problem) when it is not one."""
    path = f"chunking_settings.{name}"
    value = settings.get(name)
    if value is None:
        problems.append(_chunk_problem(path, missing_setting(name, "chunking_settings")))
        return None
    if not kind_accepts(Kind.INTEGER, value):
        problems.append(type_problem(Stage.CHUNKING, path, name, value, Kind.INTEGER))
        return None
    reason = None
    if value <= 0:
        reason = not_positive("chunking_settings", name, value)
    elif low is not None and value < low:
        reason = bound_reason("chunking_settings", name, value, low, "greater")
    elif high is not None and value > high:
        reason = bound_reason("chunking_settings", name, value, high, "less")
    if reason is not None:
        problems.append(_chunk_problem(path, reason))
        return None
    return int(value)


def _sentence_settings(
    value: Mapping[str, Json], size: int | None, problems: list[Problem]
) -> dict[str, Json]:
    overlap = value.get("sentence_overlap")
    path = "chunking_settings.sentence_overlap"
    if overlap is None:
        overlap = 1
    elif not kind_accepts(Kind.INTEGER, overlap):
        problems.append(type_problem(Stage.CHUNKING, path, "sentence_overlap", overlap, Kind.INTEGER))
    elif overlap not in (0, 1):
        problems.append(_chunk_problem(path, f"sentence_overlap[{overlap}] must be either 0 or 1"))
    return {"sentence_overlap": overlap}


def _word_settings(value: Mapping[str, Json], size: int | None, problems: list[Problem]) -> dict[str, Json]:
    high = math.floor(size / 2) if isinstance(size, int) else None
    return {"overlap": _chunk_int(value, "overlap", problems, low=None, high=high)}


def _recursive_settings(
    value: Mapping[str, Json], size: int | None, problems: list[Problem]
) -> dict[str, Json]:
    group = _separator_group(value.get("separator_group"), problems)
    separators = value.get("separators")
    path = "chunking_settings.separators"
    if separators is not None and not (
        isinstance(separators, list) and all(isinstance(s, str) for s in separators)
    ):
        problems.append(type_problem(Stage.CHUNKING, path, "separators", separators, Kind.LIST))
        separators = None
    if separators is not None and group is not None:
        reason = "Recursive chunking settings can not have both separators and separator_set"
        problems.append(_chunk_problem(path, reason))
    if group is not None:
        return {"separators": list(SEPARATOR_GROUPS[group])}
    if separators is not None and not separators:
        reason = "Recursive chunking settings can not have an empty list of separators"
        problems.append(_chunk_problem(path, reason))
    found = list(separators) if separators is not None else list(SEPARATOR_GROUPS["plaintext"])
    return {"separators": found}


def _separator_group(group: Json, problems: list[Problem]) -> str | None:
    """The named separator group (lower case), or None when absent or unknown."""
    if group is None:
        return None
    if isinstance(group, str) and group.strip().lower() in SEPARATOR_GROUPS:
        return group.strip().lower()
    choices = ", ".join(sorted(SEPARATOR_GROUPS))
    path = "chunking_settings.separator_group"
    problems.append(
        choice_problem(Stage.CHUNKING, path, "chunking_settings", "separator_group", group, choices)
    )
    return None


_STRATEGY_SETTINGS: dict[str, Callable[[Mapping[str, Json], int | None, list[Problem]], dict[str, Json]]] = {
    "sentence": _sentence_settings,
    "word": _word_settings,
    "recursive": _recursive_settings,
}
