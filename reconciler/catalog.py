"""The service catalog: what Elasticsearch accepts, fills in and lets change, per service and version.

Everything the project knows about inference services lives here: as data (the `SERVICES` table at
the end of this module) read through a few pure functions. The manifest validator, the
planner, the redactor and the emulator all read it, so they cannot disagree about a setting. Nothing
here does I/O.

`check_endpoint` is the one place that decides whether a PUT body is valid for a service, task type
and version, and what the server stores and echoes for it. Every problem it finds carries both a
dotted path (for the validator's `file:line: path: message`) and Elasticsearch's own error type and
reason (for the emulator), in the order Elasticsearch checks them.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

# JSON values as Python's json module reads them.
Json = Any

# ---------------------------------------------------------------------------------------------
# Versions


@dataclass(frozen=True, order=True, slots=True)
class Version:
    """An Elasticsearch version; only major and minor decide behaviour."""

    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> Version:
        match = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?(?:[-+].*)?", text.strip())
        if match is None:
            raise ValueError(f"not an Elasticsearch version: {text!r} (expected MAJOR.MINOR[.PATCH])")
        return cls(int(match[1]), int(match[2]), int(match[3] or 0))

    def at_least(self, major: int, minor: int) -> bool:
        return (self.major, self.minor) >= (major, minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


OLDEST_SUPPORTED = Version(8, 19)
NEWEST_SUPPORTED = Version(9, 5)
DEFAULT_VERSION = Version(9, 5, 0)


def supported(version: Version) -> bool:
    """The versions whose behaviour the catalog describes: 8.19.x and 9.0.x to 9.5.x."""
    return OLDEST_SUPPORTED <= Version(version.major, version.minor) <= NEWEST_SUPPORTED


@dataclass(frozen=True, slots=True)
class Since:
    """The versions a feature exists in.

    Each entry is the (major, minor) where it arrived on that major line; every later major line has
    it from its first release. `Since((8, 19), (9, 1))` is 8.19+ on 8.x and 9.1+ on 9.x.
    """

    lines: tuple[tuple[int, int], ...] = ((8, 0),)

    def __init__(self, *lines: tuple[int, int]) -> None:
        object.__setattr__(self, "lines", tuple(sorted(lines)) or ((8, 0),))

    def covers(self, version: Version) -> bool:
        for major, minor in self.lines:
            if version.major == major:
                return version.minor >= minor
        return any(version.major > major for major, _ in self.lines)


ALWAYS = Since((8, 0))

# ---------------------------------------------------------------------------------------------
# Task types

TASK_TYPES: dict[str, Since] = {
    "text_embedding": ALWAYS,
    "sparse_embedding": ALWAYS,
    "rerank": ALWAYS,
    "completion": ALWAYS,
    "chat_completion": Since((8, 18), (9, 0)),
    "embedding": Since((9, 4)),
}
EMBEDDING_TASK_TYPES = frozenset({"text_embedding", "sparse_embedding", "embedding"})


def task_types(version: Version) -> list[str]:
    """The task types the server knows, in Elasticsearch's order."""
    return [name for name, since in TASK_TYPES.items() if since.covers(version)]


def parse_task_type(text: str, version: Version) -> str | None:
    """Elasticsearch reads task types trimmed and case-insensitively; None when unknown."""
    name = text.strip().lower()
    return name if name in TASK_TYPES and TASK_TYPES[name].covers(version) else None


# ---------------------------------------------------------------------------------------------
# Inference ids

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
# Value kinds, as the Java parser checks them


class Kind(enum.Enum):
    """The Java type a setting is read as; the value is the name Elasticsearch prints."""

    STRING = "String"
    INTEGER = "Integer"
    LONG = "Long"
    DOUBLE = "Double"
    BOOLEAN = "Boolean"
    MAP = "Map"
    LIST = "List"
    ENUM = "String enum"


_INT32 = 2**31
_INT64 = 2**63


def kind_accepts(kind: Kind, value: Json) -> bool:
    """Whether Jackson would produce a value of this Java type from the JSON value.

    JSON `1` is an Integer and never a Double (so `temperature: 1` is refused); integers past 32 bits
    become Long; `1.0` is a Double and never an Integer.
    """
    if kind in (Kind.STRING, Kind.ENUM):
        return isinstance(value, str)
    if kind is Kind.INTEGER:
        return type(value) is int and -_INT32 <= value < _INT32
    if kind is Kind.LONG:
        return type(value) is int and -_INT64 <= value < _INT64
    if kind is Kind.DOUBLE:
        return type(value) is float
    if kind is Kind.BOOLEAN:
        return type(value) is bool
    if kind is Kind.MAP:
        return isinstance(value, dict)
    return isinstance(value, list)


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


def java_double(value: float) -> str:
    """Java's Double.toString: plain notation in [1e-3, 1e7), else d.dddE±n."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        return repr(value)  # repr's plain range covers this one
    # The shortest digits that read back as the value, as Java (and repr) choose them.
    exact = Decimal(repr(value))
    digits = "".join(map(str, exact.as_tuple().digits)).rstrip("0") or "0"
    sign = "-" if value < 0 else ""
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{exact.adjusted()}"


# ---------------------------------------------------------------------------------------------
# Settings and services


class Special(enum.Enum):
    """Settings with a parser of their own rather than a plain typed value."""

    RATE_LIMIT = "rate_limit"
    ADAPTIVE_ALLOCATIONS = "adaptive_allocations"
    # Not accepted in a request; the server stores whether `dimensions` was given.
    DIMENSIONS_SET_BY_USER = "dimensions_set_by_user"


@dataclass(frozen=True, slots=True)
class Field:
    """One setting of service_settings or task_settings.

    `default` is what the server stores and echoes when the setting is absent (None: nothing).
    `task_types` limits the setting to some task types (empty: all the service's task types).
    `updatable` says the newest `_update` can change it in place; secrets always can.
    `accepted=False` marks a value only the server writes: sending it is an unknown setting.
    `echo_values` maps an accepted enum value to the one the server prints back.
    """

    name: str
    kind: Kind = Kind.STRING
    required: bool = False
    # From these versions on a required setting may be left out.
    optional_since: Since | None = None
    secret: bool = False
    choices: tuple[str, ...] = ()
    task_types: frozenset[str] = frozenset()
    since: Since = ALWAYS
    positive: bool = False
    minimum: float | None = None
    maximum: float | None = None
    non_empty: bool = True
    default: Json = None
    echo: bool = True
    echo_as: str | None = None
    echo_values: Mapping[str, str] = field(default_factory=dict)
    accepted: bool = True
    updatable: bool = False
    special: Special | None = None
    # Elasticsearch's own wording where a setting's errors are not the generic ones.
    missing_reason: tuple[str, str] | None = None
    check: Literal["power_of_two_32"] | None = None

    def applies(self, task_type: str, version: Version) -> bool:
        return (not self.task_types or task_type in self.task_types) and self.since.covers(version)

    def is_required(self, version: Version) -> bool:
        return self.required and not (self.optional_since is not None and self.optional_since.covers(version))


@dataclass(frozen=True, slots=True)
class OneOf:
    """A group of settings of which exactly one (or at least one) must be present."""

    names: tuple[str, ...]
    exactly: bool = True


@dataclass(frozen=True, slots=True)
class Service:
    """What one inference service accepts, fills in and lets change."""

    name: str
    task_types: Mapping[str, Since]
    service_settings: tuple[Field, ...]
    task_settings: tuple[Field, ...] = ()
    since: Since = ALWAYS
    # Default requests_per_minute per task type ("*" for every task type); None: no rate_limit.
    rate_limit: Mapping[str, int] | None = None
    # For text_embedding: the server measures `dimensions` and stores `similarity` when unset:
    # the default, or the first rule (setting, values, similarity) that matches the settings.
    dimensions_filled: bool = False
    similarity: str | None = None
    similarity_rules: tuple[tuple[str, frozenset[str], str], ...] = ()
    # How `_update` applies task_settings: merged key by key, or replaced whole.
    task_settings_update: Literal["merge", "replace"] = "merge"
    one_of: tuple[OneOf, ...] = ()
    # Cross-setting rules of the in-cluster service, by name (see `_check_rules`).
    rules: frozenset[str] = frozenset()
    deploys_model: bool = False
    # A deprecated alias: the service name the server stores and returns instead, and since when.
    stored_as: tuple[str, Since] | None = None
    deprecated: str | None = None

    def available(self, version: Version) -> bool:
        return self.since.covers(version)

    def supports(self, task_type: str, version: Version) -> bool:
        since = self.task_types.get(task_type)
        return since is not None and since.covers(version) and TASK_TYPES[task_type].covers(version)

    def supported_task_types(self, version: Version) -> list[str]:
        return [t for t in self.task_types if self.supports(t, version)]

    def settings(self, task_type: str, version: Version) -> list[Field]:
        return _applicable(self, "service_settings", task_type, version)

    def task_fields(self, task_type: str, version: Version) -> list[Field]:
        return _applicable(self, "task_settings", task_type, version)

    def default_rate_limit(self, task_type: str) -> int | None:
        if self.rate_limit is None:
            return None
        return self.rate_limit.get(task_type, self.rate_limit.get("*"))

    def default_similarity(self, settings: Mapping[str, Json]) -> str | None:
        for setting, values, similarity in self.similarity_rules:
            if str(settings.get(setting, "")).lower() in values:
                return similarity
        return self.similarity

    def stored_name(self, version: Version) -> str:
        if self.stored_as is not None and self.stored_as[1].covers(version):
            return self.stored_as[0]
        return self.name


_APPLICABLE: dict[tuple[str, str, str, int, int], list[Field]] = {}


def _applicable(service: Service, section: str, task_type: str, version: Version) -> list[Field]:
    """The fields of a section for a task type and version (memoised: planning asks per endpoint)."""
    key = (service.name, section, task_type, version.major, version.minor)
    found = _APPLICABLE.get(key)
    if found is None:
        fields: tuple[Field, ...] = getattr(service, section)
        found = _APPLICABLE[key] = [f for f in fields if f.applies(task_type, version)]
    return list(found)


# ---------------------------------------------------------------------------------------------
# Problems


class Stage(enum.IntEnum):
    """The order in which Elasticsearch checks a PUT body; the emulator reports the first stage."""

    SERVICE_SETTINGS_MISSING = 1
    TASK_TYPE = 2
    SERVICE_SETTINGS = 3
    TASK_SETTINGS = 4
    SECRETS = 5
    CHUNKING = 6
    UNKNOWN = 7
    DEPLOYMENT = 8


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an endpoint body.

    `path` is dotted (`task_settings.max_tokens`); `reason` is Elasticsearch's own text;
    `es_type` the error type it answers with; `text` the value-free wording for the validator. Unknown keys also carry `unknown` = (key, value), so
    the emulator can print them together as Elasticsearch does.
    """

    stage: Stage
    path: str
    reason: str
    es_type: str = "validation_exception"
    unknown: tuple[str, Json] | None = None
    # The validator's wording where Elasticsearch's reason would print the value (which may come
    # from a secret reference); None when the reason is safe to show as it is.
    message: str | None = None

    @property
    def text(self) -> str:
        """What the manifest validator shows: never the offending value."""
        return self.message or self.reason


@dataclass(frozen=True, slots=True)
class Checked:
    """The outcome of `check_endpoint`: the problems, and what the server would store and echo."""

    problems: tuple[Problem, ...]
    service_settings: dict[str, Json] = field(default_factory=dict)
    secrets: dict[str, Json] = field(default_factory=dict)
    task_settings: dict[str, Json] = field(default_factory=dict)
    chunking_settings: dict[str, Json] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def missing_setting(name: str, scope: str) -> str:
    return f"[{scope}] does not contain the required setting [{name}]"


def wrong_type(name: str, value: Json, kind: Kind) -> str:
    java = "String" if kind is Kind.ENUM else kind.value
    return (
        f"field [{name}] is not of the expected type. "
        f"The value [{java_str(value)}] cannot be converted to a [{java}]"
    )


KIND_WORDS = {
    Kind.STRING: "a string",
    Kind.ENUM: "a string",
    Kind.INTEGER: "an integer",
    Kind.LONG: "an integer",
    Kind.DOUBLE: "a number",
    Kind.BOOLEAN: "true or false",
    Kind.MAP: "a mapping",
    Kind.LIST: "a list",
}


def type_problem(stage: Stage, path: str, name: str, value: Json, kind: Kind) -> Problem:
    return Problem(stage, path, wrong_type(name, value, kind), message=f"must be {KIND_WORDS[kind]}")


def unknown_problem(stage: Stage, path: str, left: Mapping[str, Json], key: str, service: str) -> Problem:
    reason = unknown_settings_reason(left, service)
    message = f"unknown setting of the {service} service"
    return Problem(stage, path, reason, "status_exception", unknown=(key, left[key]), message=message)


def unknown_settings_reason(settings: Mapping[str, Json], service: str) -> str:
    return f"Model configuration contains settings [{java_str(dict(settings))}] unknown to the [{service}] service"


# ---------------------------------------------------------------------------------------------
# Chunking (chunking package of the inference plugin)

DEFAULT_CHUNKING: dict[str, Json] = {"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": 1}
SEPARATOR_GROUPS: dict[str, list[str]] = {
    "plaintext": ["(?<!\\n)\\n\\n(?!\\n)", "(?<!\\n)\\n(?!\\n)"],
    "markdown": [
        "\n# ",
        "\n## ",
        "\n### ",
        "\n#### ",
        "\n##### ",
        "\n###### ",
        "\n^(?!\\s*$).*\\n-{1,}\\n",
        "\n^(?!\\s*$).*\\n={1,}\\n",
    ],
}
CHUNKING_STRATEGIES: dict[str, Since] = {
    "sentence": ALWAYS,
    "word": ALWAYS,
    # The 8.19 spec knows only sentence and word; none and recursive arrived with 9.1.
    "none": Since((9, 1)),
    "recursive": Since((9, 1)),
}
_CHUNK_KEYS = {
    "sentence": ("strategy", "max_chunk_size", "sentence_overlap"),
    "word": ("strategy", "max_chunk_size", "overlap"),
    "none": ("strategy",),
    "recursive": ("strategy", "max_chunk_size", "separator_group", "separators"),
}
_CHUNK_LABEL = {"sentence": "Sentence based", "word": "Word based", "recursive": "Recursive", "none": "None"}
_CHUNK_MIN = {"sentence": 20, "word": 10, "recursive": 10}


def chunking_applies(task_type: str) -> bool:
    return task_type in EMBEDDING_TASK_TYPES


def check_chunking(value: Json, version: Version) -> tuple[dict[str, Json] | None, list[Problem]]:
    """Parse chunking_settings as Elasticsearch does; returns what it stores (None on error)."""
    if value is None or value == {}:
        return dict(DEFAULT_CHUNKING), []
    if not isinstance(value, dict):
        return None, [type_problem(Stage.CHUNKING, "chunking_settings", "chunking_settings", value, Kind.MAP)]
    if "strategy" not in value:
        reason = "Can't generate Chunker without ChunkingStrategy provided"
        return None, [_chunk_problem("chunking_settings.strategy", reason, "illegal_argument_exception")]
    strategy = str(value["strategy"]) if not isinstance(value["strategy"], str) else value["strategy"]
    since = CHUNKING_STRATEGIES.get(strategy)
    if since is None or not since.covers(version):
        reason = f"Invalid chunkingStrategy {strategy}"
        known = ", ".join(name for name, since in CHUNKING_STRATEGIES.items() if since.covers(version))
        problem = Problem(
            Stage.CHUNKING,
            "chunking_settings.strategy",
            reason,
            "illegal_argument_exception",
            message=f"must be one of [{known}]",
        )
        return None, [problem]
    if strategy == "none":
        return {"strategy": "none"}, []

    problems: list[Problem] = []
    rest = dict(value)
    invalid = [k for k in rest if k not in _CHUNK_KEYS[strategy]]
    if invalid:
        label = _CHUNK_LABEL[strategy]
        for key in invalid:
            reason = f"{label} chunking settings can not have the following settings: [{', '.join(invalid)}]"
            problems.append(_chunk_problem(f"chunking_settings.{key}", reason))
    # An upper bound of 300 words held up to 9.1.
    upper = 300 if not version.at_least(9, 2) else None
    size = _chunk_int(rest, "max_chunk_size", problems, required=True, low=_CHUNK_MIN[strategy], high=upper)
    stored: dict[str, Json] = {"strategy": strategy, "max_chunk_size": size}

    if strategy == "sentence":
        overlap = rest.get("sentence_overlap")
        if overlap is None:
            overlap = 1
        elif not kind_accepts(Kind.INTEGER, overlap):
            path = "chunking_settings.sentence_overlap"
            problems.append(type_problem(Stage.CHUNKING, path, "sentence_overlap", overlap, Kind.INTEGER))
        elif overlap not in (0, 1):
            problems.append(
                _chunk_problem(
                    "chunking_settings.sentence_overlap", f"sentence_overlap[{overlap}] must be either 0 or 1"
                )
            )
        stored["sentence_overlap"] = overlap
    elif strategy == "word":
        high = math.floor(size / 2) if isinstance(size, int) else None
        stored["overlap"] = _chunk_int(rest, "overlap", problems, required=True, low=None, high=high)
    else:
        stored["separators"] = _recursive_separators(rest, problems)
    return (None, problems) if problems else (stored, [])


def _chunk_problem(path: str, reason: str, es_type: str = "validation_exception") -> Problem:
    return Problem(Stage.CHUNKING, path, reason, es_type)


def _chunk_int(
    settings: Mapping[str, Json],
    name: str,
    problems: list[Problem],
    *,
    required: bool,
    low: int | None,
    high: int | None,
) -> int | None:
    path = f"chunking_settings.{name}"
    value = settings.get(name)
    if value is None:
        if required:
            problems.append(_chunk_problem(path, missing_setting(name, "chunking_settings")))
        return None
    if not kind_accepts(Kind.INTEGER, value):
        problems.append(type_problem(Stage.CHUNKING, path, name, value, Kind.INTEGER))
        return None
    if value <= 0:
        problems.append(
            _chunk_problem(
                path, f"[chunking_settings] Invalid value [{value}]. [{name}] must be a positive integer"
            )
        )
        return None
    if low is not None and value < low:
        problems.append(_chunk_problem(path, _bound_reason("chunking_settings", name, value, low, "greater")))
        return None
    if high is not None and value > high:
        problems.append(_chunk_problem(path, _bound_reason("chunking_settings", name, value, high, "less")))
        return None
    return int(value)


def _bound_reason(scope: str, name: str, value: float, bound: float, direction: str) -> str:
    return (
        f"[{scope}] Invalid value [{java_double(float(value))}]. "
        f"[{name}] must be a {direction} than or equal to [{java_double(float(bound))}]"
    )


def _recursive_separators(settings: Mapping[str, Json], problems: list[Problem]) -> list[str] | None:
    group = settings.get("separator_group")
    separators = settings.get("separators")
    if group is not None and (not isinstance(group, str) or group.strip().lower() not in SEPARATOR_GROUPS):
        choices = ", ".join(sorted(SEPARATOR_GROUPS))
        reason = (
            f"[chunking_settings] Invalid value [{java_str(group)}] received. "
            f"[separator_group] must be one of [{choices}]"
        )
        problems.append(
            Problem(
                Stage.CHUNKING,
                "chunking_settings.separator_group",
                reason,
                message=f"must be one of [{choices}]",
            )
        )
        group = None
    if separators is not None and not (
        isinstance(separators, list) and all(isinstance(s, str) for s in separators)
    ):
        path = "chunking_settings.separators"
        problems.append(type_problem(Stage.CHUNKING, path, "separators", separators, Kind.LIST))
        separators = None
    if separators is not None and group is not None:
        reason = "Recursive chunking settings can not have both separators and separator_set"
        problems.append(_chunk_problem("chunking_settings.separators", reason))
    if group is not None:
        return list(SEPARATOR_GROUPS[group.strip().lower()])
    if separators is not None and not separators:
        reason = "Recursive chunking settings can not have an empty list of separators"
        problems.append(_chunk_problem("chunking_settings.separators", reason))
    return list(separators) if separators is not None else list(SEPARATOR_GROUPS["plaintext"])


# ---------------------------------------------------------------------------------------------
# Checking a PUT body against a service


def check_endpoint(service: Service, task_type: str, body: Mapping[str, Json], version: Version) -> Checked:
    """Check an endpoint body (without `service` and `task_type`) as Elasticsearch's PUT does.

    Returns every problem found, in Elasticsearch's checking order, and what the server stores:
    the echoed service_settings (defaults filled in, secrets removed), the secrets, the echoed
    task_settings and the chunking_settings (None when the task type has none).
    """
    problems: list[Problem] = []
    if not service.supports(task_type, version):
        reason = f"The [{service.name}] service does not support task type [{task_type}]"
        return Checked((Problem(Stage.TASK_TYPE, "task_type", reason, "status_exception"),))

    raw_settings = body.get("service_settings")
    if raw_settings is None:
        reason = "Missing required field [service_settings]"
        problems.append(
            Problem(Stage.SERVICE_SETTINGS_MISSING, "service_settings", reason, "status_exception")
        )
        raw_settings = {}
    elif not isinstance(raw_settings, dict):
        stage = Stage.SERVICE_SETTINGS_MISSING
        problems.append(type_problem(stage, "service_settings", "service_settings", raw_settings, Kind.MAP))
        raw_settings = {}
    raw_task = body.get("task_settings")
    if raw_task is None:
        raw_task = {}
    elif not isinstance(raw_task, dict):
        problems.append(
            type_problem(Stage.TASK_SETTINGS, "task_settings", "task_settings", raw_task, Kind.MAP)
        )
        raw_task = {}

    settings_left = dict(raw_settings)
    task_left = dict(raw_task)
    stored_settings: dict[str, Json] = {}
    secrets: dict[str, Json] = {}
    # With `deployment_id`, an in-cluster endpoint takes its other settings from that deployment.
    from_deployment = service.deploys_model and raw_settings.get("deployment_id") is not None
    for spec in service.settings(task_type, version):
        required = spec.is_required(version) and not from_deployment
        if spec.special is Special.DIMENSIONS_SET_BY_USER:
            stored_settings[spec.name] = raw_settings.get("dimensions") is not None
            continue
        value = _take(spec, settings_left, "service_settings", service, task_type, problems, required)
        if value is None:
            continue
        if spec.secret:
            secrets[spec.name] = value
        elif spec.echo:
            stored_settings[spec.echo_as or spec.name] = value
    if not from_deployment:
        _check_one_of(service, raw_settings, task_type, version, problems)
    _check_rules(service, stored_settings, problems)

    stored_task = _take_task_settings(service, task_type, task_left, version, problems)

    chunking: dict[str, Json] | None = None
    top_left = {k: v for k, v in body.items() if k not in ("service_settings", "task_settings")}
    if chunking_applies(task_type):
        chunking, chunk_problems = check_chunking(top_left.pop("chunking_settings", None), version)
        problems.extend(chunk_problems)

    for section, left in (("", top_left), ("service_settings", settings_left), ("task_settings", task_left)):
        for key in left:
            path = f"{section}.{key}" if section else key
            problems.append(unknown_problem(Stage.UNKNOWN, path, left, key, service.name))

    problems.sort(key=lambda p: p.stage)
    return Checked(tuple(problems), stored_settings, secrets, stored_task, chunking)


def check_task_settings(
    service: Service, task_type: str, settings: Mapping[str, Json], version: Version
) -> tuple[dict[str, Json], list[Problem]]:
    """Check task_settings alone (as `_update` does): what the server stores, and the problems."""
    left = dict(settings)
    problems: list[Problem] = []
    stored = _take_task_settings(service, task_type, left, version, problems)
    for key in left:
        problems.append(unknown_problem(Stage.UNKNOWN, f"task_settings.{key}", left, key, service.name))
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
    if section == "task_settings":
        scope, stage = "task_settings", Stage.TASK_SETTINGS
    elif spec.secret:
        scope, stage = "secret_settings", Stage.SECRETS
    else:
        scope, stage = "service_settings", Stage.SERVICE_SETTINGS
    if not spec.accepted:
        return spec.default
    if spec.special is Special.RATE_LIMIT:
        return _take_rate_limit(settings, service, task_type, path, problems)
    if spec.special is Special.ADAPTIVE_ALLOCATIONS:
        return _take_adaptive(settings, path, problems)
    value = settings.pop(spec.name, None)
    if value is None:
        if required:
            if spec.missing_reason is not None:
                es_type, reason = spec.missing_reason
                problems.append(Problem(stage, path, reason, es_type))
            else:
                problems.append(Problem(stage, path, missing_setting(spec.name, scope)))
        return spec.default
    if not kind_accepts(spec.kind, value):
        problems.append(type_problem(stage, path, spec.name, value, spec.kind))
        return None
    if spec.kind in (Kind.STRING, Kind.ENUM) and spec.non_empty and value == "":
        reason = f"[{scope}] Invalid value empty string. [{spec.name}] must be a non-empty string"
        problems.append(Problem(stage, path, reason))
        return None
    if spec.kind is Kind.ENUM:
        canonical = {c.lower(): c for c in spec.choices}.get(value.strip().lower())
        if canonical is None:
            choices = ", ".join(sorted(c.lower() for c in spec.choices))
            reason = f"[{scope}] Invalid value [{value}] received. [{spec.name}] must be one of [{choices}]"
            problems.append(Problem(stage, path, reason, message=f"must be one of [{choices}]"))
            return None
        return spec.echo_values.get(canonical, canonical)
    if spec.positive and value <= 0:
        noun = "long" if spec.kind is Kind.LONG else "integer"
        reason = f"[{scope}] Invalid value [{value}]. [{spec.name}] must be a positive {noun}"
        problems.append(Problem(stage, path, reason))
        return None
    if spec.minimum is not None and value < spec.minimum:
        problems.append(Problem(stage, path, _bound_reason(scope, spec.name, value, spec.minimum, "greater")))
        return None
    if spec.maximum is not None and value > spec.maximum:
        problems.append(Problem(stage, path, _bound_reason(scope, spec.name, value, spec.maximum, "less")))
        return None
    if spec.check == "power_of_two_32" and value not in (1, 2, 4, 8, 16, 32):
        reason = (
            "Validation Failed: 1: [threads_per_allocation] must be a power of 2 less than or equal to 32;"
        )
        problems.append(Problem(Stage.DEPLOYMENT, path, reason, "action_request_validation_exception"))
        return None
    return value


def _take_rate_limit(
    settings: dict[str, Json], service: Service, task_type: str, path: str, problems: list[Problem]
) -> Json:
    value = settings.pop("rate_limit", None)
    default = service.default_rate_limit(task_type)
    if value is None:
        value = {}
    if not isinstance(value, dict):
        problems.append(type_problem(Stage.SERVICE_SETTINGS, path, "rate_limit", value, Kind.MAP))
        return None
    rest = dict(value)
    rpm = rest.pop("requests_per_minute", None)
    for key in rest:
        problems.append(unknown_problem(Stage.SERVICE_SETTINGS, f"{path}.{key}", rest, key, service.name))
    if rpm is None:
        return {"requests_per_minute": default}
    if not kind_accepts(Kind.LONG, rpm):
        reason = (
            f"field [requests_per_minute] is not of one of the expected types. "
            f"The value [{java_str(rpm)}] cannot be converted to one of [Integer, Long]"
        )
        problems.append(Problem(Stage.SERVICE_SETTINGS, f"{path}.requests_per_minute", reason))
        return None
    if rpm <= 0:
        reason = f"[rate_limit] Invalid value [{rpm}]. [requests_per_minute] must be a positive long"
        problems.append(Problem(Stage.SERVICE_SETTINGS, f"{path}.requests_per_minute", reason))
        return None
    return {"requests_per_minute": rpm}


def _take_adaptive(settings: dict[str, Json], path: str, problems: list[Problem]) -> Json:
    value = settings.pop("adaptive_allocations", None)
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.append(type_problem(Stage.SERVICE_SETTINGS, path, "adaptive_allocations", value, Kind.MAP))
        return None
    stored: dict[str, Json] = {}
    kinds = {
        "enabled": Kind.BOOLEAN,
        "min_number_of_allocations": Kind.INTEGER,
        "max_number_of_allocations": Kind.INTEGER,
    }
    for key, item in value.items():
        if key not in kinds:
            reason = f"[adaptive_allocations] does not allow the setting [{key}]"
            problems.append(Problem(Stage.SERVICE_SETTINGS, f"{path}.{key}", reason))
        elif item is not None and not kind_accepts(kinds[key], item):
            problems.append(type_problem(Stage.SERVICE_SETTINGS, f"{path}.{key}", key, item, kinds[key]))
        elif item is not None:
            stored[key] = item
    low = stored.get("min_number_of_allocations")
    high = stored.get("max_number_of_allocations")
    if low is not None and low < 0:
        reason = "[min_number_of_allocations] must be a non-negative integer or null"
        problems.append(Problem(Stage.SERVICE_SETTINGS, f"{path}.min_number_of_allocations", reason))
    if high is not None and high < 1:
        reason = "[max_number_of_allocations] must be a positive integer or null"
        problems.append(Problem(Stage.SERVICE_SETTINGS, f"{path}.max_number_of_allocations", reason))
    if low is not None and high is not None and low > high:
        reason = "[min_number_of_allocations] must not be larger than [max_number_of_allocations]"
        problems.append(Problem(Stage.SERVICE_SETTINGS, f"{path}.min_number_of_allocations", reason))
    # The server always prints `enabled`; an absent value reads as false.
    return {
        "enabled": bool(stored.get("enabled", False)),
        **{k: v for k, v in stored.items() if k != "enabled"},
    }


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
            reason = f"[{scope}] does not contain one of the required settings [{', '.join(names)}]"
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
        problems.append(
            Problem(
                Stage.DEPLOYMENT,
                "service_settings.num_allocations",
                reason,
                "action_request_validation_exception",
            )
        )
    if (
        "max_chunks_requires_chunk" in service.rules
        and settings.get("max_chunks_per_doc") is not None
        and settings.get("long_document_strategy") != "chunk"
    ):
        reason = "The [max_chunks_per_doc] setting requires [long_document_strategy] to be set to [chunk]"
        problems.append(Problem(Stage.SERVICE_SETTINGS, "service_settings.max_chunks_per_doc", reason))


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
    others = [p for p in found if p.es_type != "validation_exception"]
    if others:
        return others[0].es_type, others[0].reason
    if len(found) == 1 and found[0].reason.startswith("Validation Failed"):
        return found[0].es_type, found[0].reason
    joined = "".join(f"{i}: {p.reason};" for i, p in enumerate(found, start=1))
    return "validation_exception", f"Validation Failed: {joined}"


# ---------------------------------------------------------------------------------------------
# The services
#
# Sources: the reference's §3 table, the 8.19 and 9.5 OpenAPI specs, and the Java settings classes
# of the inference plugin (Java types decide Integer versus Double). Where the two specs differ
# and nothing dates a change, a feature absent from 8.19 and present in 9.5 is taken to exist from
# 9.2 (8.19 shipped beside 9.1, so later features came after); one present in 8.19 but added in
# 2025 exists from 8.19 and 9.1.

SIMILARITIES = ("cosine", "dot_product", "l2_norm")
INPUT_TYPES = ("classification", "clustering", "ingest", "search")
TRUNCATIONS = ("END", "NONE", "START")

EMBED = frozenset({"text_embedding"})
EMBEDDINGS = frozenset({"text_embedding", "embedding"})
RERANK = frozenset({"rerank"})
COMPLETIONS = frozenset({"completion", "chat_completion"})

SINCE_8_19_9_1 = Since((8, 19), (9, 1))
SINCE_9_2 = Since((9, 2))


def _secret(
    name: str = "api_key", *, required: bool = True, kind: Kind = Kind.STRING, since: Since = ALWAYS
) -> Field:
    return Field(name, kind, required=required, secret=True, updatable=True, since=since)


def _rate_limit() -> Field:
    return Field("rate_limit", Kind.MAP, special=Special.RATE_LIMIT, updatable=True)


def _embedding_fields(
    task_types: frozenset[str] = EMBED, *, positive: bool = True, dimensions: bool = True
) -> tuple[Field, ...]:
    """similarity, dimensions and max_input_tokens as the text_embedding settings classes read them."""
    fields = [
        Field("similarity", Kind.ENUM, choices=SIMILARITIES, task_types=task_types),
        Field("max_input_tokens", Kind.INTEGER, positive=positive, task_types=task_types),
    ]
    if dimensions:
        fields.insert(1, Field("dimensions", Kind.INTEGER, positive=positive, task_types=task_types))
    return tuple(fields)


def _in_cluster_settings(*, model_required: bool) -> tuple[Field, ...]:
    model_missing = (
        "illegal_argument_exception",
        "Error parsing service settings, model_id must be provided",
    )
    return (
        Field("num_allocations", Kind.INTEGER, positive=True, updatable=True),
        Field("num_threads", Kind.INTEGER, required=True, positive=True, check="power_of_two_32"),
        Field("model_id", required=model_required, missing_reason=model_missing),
        Field("adaptive_allocations", Kind.MAP, special=Special.ADAPTIVE_ALLOCATIONS, updatable=True),
        Field("deployment_id"),
    )


_SERVICES: tuple[Service, ...] = (
    Service(
        "ai21",
        since=SINCE_9_2,
        task_types={"completion": ALWAYS, "chat_completion": ALWAYS},
        service_settings=(Field("model_id", required=True), _secret(), _rate_limit()),
        rate_limit={"*": 200},
    ),
    Service(
        "alibabacloud-ai-search",
        task_types={t: ALWAYS for t in ("completion", "rerank", "sparse_embedding", "text_embedding")},
        service_settings=(
            _secret(),
            Field("service_id", required=True),
            Field("host", required=True),
            Field("workspace", required=True),
            Field("http_schema", Kind.ENUM, choices=("https", "http")),
            _rate_limit(),
            *_embedding_fields(positive=False),
        ),
        task_settings=(
            Field(
                "input_type",
                Kind.ENUM,
                choices=("ingest", "search"),
                task_types=frozenset({"text_embedding", "sparse_embedding"}),
            ),
            Field("return_token", Kind.BOOLEAN, task_types=frozenset({"sparse_embedding"})),
            Field("parameters", Kind.MAP, task_types=frozenset({"completion"})),
        ),
        rate_limit={"*": 1000},
        dimensions_filled=True,
        # The 8.16-era service overwrote any similarity with dot_product.
        similarity="dot_product",
    ),
    Service(
        "amazon_sagemaker",
        since=SINCE_8_19_9_1,
        task_types={
            t: ALWAYS
            for t in ("text_embedding", "completion", "chat_completion", "sparse_embedding", "rerank")
        },
        service_settings=(
            _secret("access_key"),
            _secret("secret_key"),
            Field("endpoint_name", required=True),
            Field("api", Kind.ENUM, required=True, choices=("openai", "elastic")),
            Field("region", required=True),
            Field("target_model"),
            Field("target_container_hostname"),
            Field("inference_component_name"),
            Field("batch_size", Kind.INTEGER, positive=True),
            Field("dimensions", Kind.INTEGER, positive=True, task_types=EMBED),
            Field("similarity", Kind.ENUM, choices=SIMILARITIES, task_types=EMBED),
            Field("element_type", Kind.ENUM, choices=("byte", "float", "bit"), task_types=EMBED),
        ),
        task_settings=tuple(
            Field(name)
            for name in (
                "custom_attributes",
                "enable_explanations",
                "inference_id",
                "session_id",
                "target_variant",
                "user",
            )
        ),
        dimensions_filled=True,
    ),
    Service(
        "amazonbedrock",
        task_types={"completion": ALWAYS, "text_embedding": ALWAYS, "chat_completion": SINCE_9_2},
        service_settings=(
            _secret("access_key"),
            _secret("secret_key"),
            Field("region", required=True),
            Field("model", required=True),
            # Required by the Java parser although the spec marks it optional; echoed upper case.
            Field(
                "provider",
                Kind.ENUM,
                required=True,
                choices=("AMAZONTITAN", "ANTHROPIC", "AI21LABS", "COHERE", "META", "MISTRAL"),
            ),
            _rate_limit(),
            # dimensions is measured by the server and refused in a request.
            Field("dimensions", Kind.INTEGER, task_types=EMBED, accepted=False),
            Field("max_input_tokens", Kind.INTEGER, positive=True, task_types=EMBED),
            Field("similarity", Kind.ENUM, choices=SIMILARITIES, task_types=EMBED),
        ),
        task_settings=(
            Field("temperature", Kind.DOUBLE, minimum=0.0, maximum=1.0, task_types=COMPLETIONS),
            Field("top_p", Kind.DOUBLE, minimum=0.0, maximum=1.0, task_types=COMPLETIONS),
            Field("top_k", Kind.DOUBLE, minimum=0.0, maximum=1.0, task_types=COMPLETIONS),
            Field("max_new_tokens", Kind.INTEGER, positive=True, task_types=COMPLETIONS),
            Field("truncate", Kind.ENUM, choices=TRUNCATIONS, task_types=EMBED, since=SINCE_8_19_9_1),
        ),
        rate_limit={"*": 240},
        dimensions_filled=True,
        similarity="cosine",
        similarity_rules=(("provider", frozenset({"cohere"}), "dot_product"),),
    ),
    Service(
        "anthropic",
        task_types={"completion": ALWAYS, "chat_completion": Since((9, 5))},
        service_settings=(_secret(), Field("model_id", required=True), _rate_limit()),
        task_settings=(
            Field("max_tokens", Kind.INTEGER, required=True, positive=True),
            Field("temperature", Kind.DOUBLE),
            Field("top_p", Kind.DOUBLE),
            # Elasticsearch writes top_k back under the key top_p (src commit 01195333).
            Field("top_k", Kind.INTEGER, echo_as="top_p"),
        ),
        rate_limit={"*": 50},
        task_settings_update="replace",
    ),
    Service(
        "azureaistudio",
        task_types={"completion": ALWAYS, "text_embedding": ALWAYS, "rerank": SINCE_9_2},
        service_settings=(
            _secret(),
            Field("target", required=True),
            Field(
                "provider",
                Kind.ENUM,
                required=True,
                choices=("openai", "mistral", "meta", "microsoft_phi", "cohere", "databricks"),
            ),
            Field("endpoint_type", Kind.ENUM, required=True, choices=("token", "realtime")),
            _rate_limit(),
            *_embedding_fields(),
        ),
        task_settings=(
            Field("user", task_types=EMBED),
            Field("temperature", Kind.DOUBLE, minimum=0.0, maximum=2.0, task_types=COMPLETIONS),
            Field("top_p", Kind.DOUBLE, minimum=0.0, maximum=2.0, task_types=COMPLETIONS),
            Field("do_sample", Kind.BOOLEAN, task_types=COMPLETIONS),
            # The server fills max_new_tokens: 64 and echoes it.
            Field("max_new_tokens", Kind.INTEGER, positive=True, default=64, task_types=COMPLETIONS),
            Field("return_documents", Kind.BOOLEAN, task_types=RERANK),
            Field("top_n", Kind.INTEGER, positive=True, task_types=RERANK),
        ),
        rate_limit={"*": 240},
        dimensions_filled=True,
        similarity="dot_product",
    ),
    Service(
        "azureopenai",
        task_types={"completion": ALWAYS, "text_embedding": ALWAYS, "chat_completion": SINCE_9_2},
        service_settings=(
            Field("resource_name", required=True),
            Field("deployment_id", required=True),
            Field("api_version", required=True),
            _secret(required=False),
            _secret("entra_id", required=False),
            _secret("client_secret", required=False, since=Since((9, 5))),
            Field("client_id", since=Since((9, 5))),
            Field("scopes", Kind.LIST, since=Since((9, 5))),
            Field("tenant_id", since=Since((9, 5))),
            _rate_limit(),
            *_embedding_fields(),
        ),
        task_settings=(Field("user"), Field("headers", Kind.MAP, since=SINCE_9_2)),
        rate_limit={"text_embedding": 1440, "*": 120},
        one_of=(OneOf(("api_key", "entra_id", "client_secret")),),
        dimensions_filled=True,
        similarity="dot_product",
    ),
    Service(
        "cohere",
        task_types={"completion": ALWAYS, "rerank": ALWAYS, "text_embedding": ALWAYS},
        service_settings=(
            _secret(),
            Field("model_id", required=True),
            Field("url"),
            _rate_limit(),
            *_embedding_fields(),
            # Echoed through the vector element type: int8 prints as byte, binary as bit.
            Field(
                "embedding_type",
                Kind.ENUM,
                choices=("float", "int8", "byte", "binary", "bit"),
                default="float",
                echo_values={"int8": "byte", "binary": "bit"},
                task_types=EMBED,
            ),
        ),
        task_settings=(
            Field("input_type", Kind.ENUM, choices=INPUT_TYPES, task_types=EMBED),
            Field("truncate", Kind.ENUM, choices=TRUNCATIONS, task_types=EMBED),
            Field("top_n", Kind.INTEGER, positive=True, task_types=RERANK),
            Field("return_documents", Kind.BOOLEAN, task_types=RERANK),
            Field("max_chunks_per_doc", Kind.INTEGER, positive=True, task_types=RERANK),
        ),
        rate_limit={"*": 10000},
        dimensions_filled=True,
        similarity="dot_product",
        similarity_rules=(
            ("embedding_type", frozenset({"byte", "int8"}), "cosine"),
            ("embedding_type", frozenset({"bit", "binary"}), "l2_norm"),
        ),
    ),
    Service(
        "contextualai",
        since=SINCE_9_2,
        task_types={"rerank": ALWAYS},
        service_settings=(_secret(), Field("model_id", required=True), _rate_limit()),
        # The spec names top_k; the Java parser reads top_n.
        task_settings=(Field("top_n", Kind.INTEGER, positive=True), Field("instruction")),
        rate_limit={"*": 1000},
        task_settings_update="replace",
    ),
    Service(
        "custom",
        since=SINCE_8_19_9_1,
        task_types={t: ALWAYS for t in ("text_embedding", "sparse_embedding", "rerank", "completion")},
        service_settings=(
            Field("url", required=True),
            Field("headers", Kind.MAP),
            Field("query_parameters", Kind.LIST),
            # A template string with ${...} placeholders (the spec says object; Java reads a String).
            Field("request", required=True),
            Field("response", Kind.MAP, required=True),
            _secret("secret_parameters", required=False, kind=Kind.MAP),
            Field("input_type", Kind.MAP),
            Field("batch_size", Kind.INTEGER, positive=True),
            _rate_limit(),
            *_embedding_fields(positive=False),
        ),
        task_settings=(Field("parameters", Kind.MAP),),
        rate_limit={"*": 10000},
        dimensions_filled=True,
        similarity="dot_product",
    ),
    Service(
        "deepseek",
        since=SINCE_8_19_9_1,
        task_types={"completion": ALWAYS, "chat_completion": ALWAYS},
        # The rate limit is fixed and neither accepted nor echoed.
        service_settings=(_secret(), Field("model_id", required=True), Field("url")),
    ),
    Service(
        "elasticsearch",
        task_types={"rerank": ALWAYS, "sparse_embedding": ALWAYS, "text_embedding": ALWAYS},
        service_settings=(
            *_in_cluster_settings(model_required=True),
            Field(
                "long_document_strategy",
                Kind.ENUM,
                choices=("chunk", "truncate"),
                task_types=RERANK,
                since=SINCE_9_2,
            ),
            Field("max_chunks_per_doc", Kind.INTEGER, positive=True, task_types=RERANK, since=SINCE_9_2),
        ),
        task_settings=(Field("return_documents", Kind.BOOLEAN, default=True, task_types=RERANK),),
        one_of=(OneOf(("num_allocations", "adaptive_allocations"), exactly=False),),
        rules=frozenset({"adaptive_excludes_num_allocations", "max_chunks_requires_chunk"}),
        deploys_model=True,
    ),
    Service(
        "elser",
        task_types={"sparse_embedding": ALWAYS},
        service_settings=_in_cluster_settings(model_required=False),
        one_of=(OneOf(("num_allocations", "adaptive_allocations"), exactly=False),),
        rules=frozenset({"adaptive_excludes_num_allocations"}),
        deploys_model=True,
        stored_as=("elasticsearch", Since((8, 16))),
        deprecated=(
            "The [elser] service is deprecated and will be removed in a future release. "
            "Use the [elasticsearch] service instead, with [model_id] set to [{model_id}] in the [service_settings]"
        ),
    ),
    Service(
        "fireworksai",
        since=Since((9, 4)),
        task_types={"text_embedding": ALWAYS, "completion": ALWAYS, "chat_completion": ALWAYS},
        service_settings=(
            _secret(),
            Field("model_id", required=True),
            Field("url", default="https://api.fireworks.ai/inference/v1/embeddings", task_types=EMBED),
            Field("url", task_types=COMPLETIONS),
            *_embedding_fields(),
            _rate_limit(),
        ),
        task_settings=(
            Field("user", task_types=COMPLETIONS),
            Field("headers", Kind.MAP, task_types=COMPLETIONS),
        ),
        rate_limit={"*": 6000},
        dimensions_filled=True,
        similarity="cosine",
    ),
    Service(
        "googleaistudio",
        task_types={"completion": ALWAYS, "text_embedding": ALWAYS},
        service_settings=(_secret(), Field("model_id", required=True), _rate_limit(), *_embedding_fields()),
        rate_limit={"*": 360},
        dimensions_filled=True,
        similarity="dot_product",
    ),
    Service(
        "googlevertexai",
        task_types={
            "text_embedding": ALWAYS,
            "rerank": ALWAYS,
            "completion": SINCE_8_19_9_1,
            "chat_completion": SINCE_8_19_9_1,
        },
        service_settings=(
            _secret("service_account_json"),
            # Optional in newer versions: without it the global endpoint is used.
            Field("location", required=True, optional_since=SINCE_9_2, task_types=EMBED),
            Field("location", task_types=COMPLETIONS),
            Field("project_id", required=True, task_types=EMBED | RERANK),
            Field("project_id", task_types=COMPLETIONS),
            Field("model_id", required=True, task_types=EMBED),
            Field("model_id", task_types=RERANK | COMPLETIONS),
            Field(
                "provider",
                Kind.ENUM,
                choices=("GOOGLE", "ANTHROPIC", "META", "HUGGING_FACE", "MISTRAL", "AI21"),
                default="GOOGLE",
                task_types=COMPLETIONS,
                since=SINCE_9_2,
            ),
            Field("url", task_types=COMPLETIONS, since=SINCE_9_2),
            Field("streaming_url", task_types=COMPLETIONS, since=SINCE_9_2),
            Field("max_input_tokens", Kind.INTEGER, positive=True, task_types=EMBED),
            Field("dimensions", Kind.INTEGER, positive=True, task_types=EMBED),
            # Defaulted in the constructor, so GET always shows it.
            Field("similarity", Kind.ENUM, choices=SIMILARITIES, default="dot_product", task_types=EMBED),
            Field("max_batch_size", Kind.INTEGER, positive=True, task_types=EMBED, since=SINCE_9_2),
            _rate_limit(),
        ),
        task_settings=(
            Field("auto_truncate", Kind.BOOLEAN, task_types=EMBED),
            Field("top_n", Kind.INTEGER, positive=True, task_types=RERANK),
            Field("thinking_config", Kind.MAP, task_types=COMPLETIONS),
            Field("max_tokens", Kind.INTEGER, positive=True, task_types=COMPLETIONS, since=SINCE_9_2),
        ),
        rate_limit={"text_embedding": 30000, "rerank": 300, "*": 1000},
        dimensions_filled=True,
        similarity="dot_product",
    ),
    Service(
        "groq",
        since=Since((9, 3)),
        task_types={"chat_completion": ALWAYS},
        service_settings=(
            Field("model_id", required=True),
            # Required by the Java parser although the spec marks it optional.
            _secret(),
            Field("url"),
            Field("organization_id"),
            _rate_limit(),
        ),
        task_settings=(Field("user"), Field("headers", Kind.MAP)),
        rate_limit={"*": 1000},
    ),
    Service(
        "hugging_face",
        task_types={
            "text_embedding": ALWAYS,
            "sparse_embedding": ALWAYS,
            "completion": SINCE_8_19_9_1,
            "chat_completion": SINCE_8_19_9_1,
            "rerank": SINCE_8_19_9_1,
        },
        service_settings=(
            _secret(),
            Field("url", required=True),
            Field("model_id", task_types=COMPLETIONS),
            *_embedding_fields(),
            # A constant for sparse embeddings: always echoed, refused in a request.
            Field(
                "max_input_tokens",
                Kind.INTEGER,
                default=512,
                accepted=False,
                task_types=frozenset({"sparse_embedding"}),
            ),
            _rate_limit(),
        ),
        task_settings=(
            Field("top_n", Kind.INTEGER, positive=True, task_types=RERANK),
            Field("return_documents", Kind.BOOLEAN, task_types=RERANK),
        ),
        rate_limit={"*": 3000},
        dimensions_filled=True,
        similarity="cosine",
    ),
    Service(
        "jinaai",
        since=Since((8, 18), (9, 0)),
        task_types={"text_embedding": ALWAYS, "rerank": ALWAYS, "embedding": Since((9, 4))},
        service_settings=(
            _secret(),
            Field("model_id", required=True),
            _rate_limit(),
            Field("similarity", Kind.ENUM, choices=SIMILARITIES, task_types=EMBEDDINGS),
            Field("dimensions", Kind.INTEGER, positive=True, task_types=EMBEDDINGS),
            Field("max_input_tokens", Kind.INTEGER, task_types=EMBEDDINGS),
            Field(
                "embedding_type",
                Kind.ENUM,
                choices=("float", "bit", "binary"),
                default="float",
                task_types=EMBEDDINGS,
            ),
            Field("multimodal_model", Kind.BOOLEAN, default=True, task_types=frozenset({"embedding"})),
        ),
        task_settings=(
            Field("input_type", Kind.ENUM, choices=INPUT_TYPES, task_types=EMBEDDINGS),
            Field("late_chunking", Kind.BOOLEAN, task_types=EMBEDDINGS),
            Field("top_n", Kind.INTEGER, positive=True, task_types=RERANK),
            Field("return_documents", Kind.BOOLEAN, task_types=RERANK),
        ),
        rate_limit={"*": 2000},
        dimensions_filled=True,
        similarity="dot_product",
        similarity_rules=(("embedding_type", frozenset({"bit", "binary"}), "l2_norm"),),
    ),
    Service(
        "llama",
        since=SINCE_9_2,
        task_types={"text_embedding": ALWAYS, "completion": ALWAYS, "chat_completion": ALWAYS},
        service_settings=(
            Field("url", required=True),
            Field("model_id", required=True),
            _secret(required=False),
            *_embedding_fields(),
            _rate_limit(),
        ),
        rate_limit={"*": 3000},
        dimensions_filled=True,
        similarity="cosine",
    ),
    Service(
        "mistral",
        task_types={
            "text_embedding": ALWAYS,
            "completion": SINCE_8_19_9_1,
            "chat_completion": SINCE_8_19_9_1,
        },
        # The model key is `model`, not `model_id`.
        service_settings=(_secret(), Field("model", required=True), *_embedding_fields(), _rate_limit()),
        rate_limit={"*": 240},
        dimensions_filled=True,
        similarity="dot_product",
    ),
    Service(
        "nvidia",
        since=Since((9, 3)),
        task_types={t: ALWAYS for t in ("text_embedding", "completion", "chat_completion", "rerank")},
        service_settings=(
            _secret(),
            Field("model_id", required=True),
            # The default endpoint URL is filled in and echoed.
            Field("url", default="https://integrate.api.nvidia.com/v1/embeddings", task_types=EMBED),
            Field(
                "url", default="https://integrate.api.nvidia.com/v1/chat/completions", task_types=COMPLETIONS
            ),
            Field(
                "url", default="https://ai.api.nvidia.com/v1/retrieval/nvidia/reranking", task_types=RERANK
            ),
            Field("max_input_tokens", Kind.INTEGER, positive=True, task_types=EMBED),
            Field("similarity", Kind.ENUM, choices=SIMILARITIES, task_types=EMBED),
            Field("dimensions", Kind.INTEGER, task_types=EMBED, accepted=False),
            _rate_limit(),
        ),
        task_settings=(
            Field("input_type", Kind.ENUM, choices=("ingest", "search"), task_types=EMBED),
            Field("truncate", Kind.ENUM, choices=TRUNCATIONS, task_types=EMBED),
        ),
        rate_limit={"*": 3000},
        dimensions_filled=True,
        similarity="dot_product",
    ),
    Service(
        "openai",
        task_types={
            "text_embedding": ALWAYS,
            "completion": ALWAYS,
            "chat_completion": Since((8, 18), (9, 0)),
            "embedding": Since((9, 5)),
        },
        service_settings=(
            Field("model_id", required=True),
            # Up to 9.4 the api_key is required; 9.5 also takes OAuth2 client credentials instead.
            _secret(required=False),
            _secret("client_secret", required=False, since=Since((9, 5))),
            Field("client_id", since=Since((9, 5))),
            Field("scopes", Kind.LIST, since=Since((9, 5))),
            Field("token_url", since=Since((9, 5))),
            Field("url"),
            Field("organization_id"),
            Field("similarity", Kind.ENUM, choices=SIMILARITIES, task_types=EMBEDDINGS),
            Field("dimensions", Kind.INTEGER, positive=True, task_types=EMBEDDINGS),
            Field("max_input_tokens", Kind.INTEGER, positive=True),
            _rate_limit(),
        ),
        task_settings=(Field("user"), Field("headers", Kind.MAP, since=SINCE_9_2)),
        rate_limit={"text_embedding": 3000, "embedding": 3000, "*": 500},
        one_of=(OneOf(("api_key", "client_secret")),),
        dimensions_filled=True,
        similarity="dot_product",
    ),
    Service(
        "openshift_ai",
        since=Since((9, 3)),
        task_types={t: ALWAYS for t in ("text_embedding", "completion", "chat_completion", "rerank")},
        service_settings=(
            _secret(),
            Field("url", required=True),
            Field("model_id"),
            *_embedding_fields(),
            Field(
                "dimensions_set_by_user",
                Kind.BOOLEAN,
                special=Special.DIMENSIONS_SET_BY_USER,
                accepted=False,
                task_types=EMBED,
            ),
            _rate_limit(),
        ),
        task_settings=(
            Field("return_documents", Kind.BOOLEAN, task_types=RERANK),
            Field("top_n", Kind.INTEGER, positive=True, task_types=RERANK),
        ),
        rate_limit={"*": 3000},
        dimensions_filled=True,
        similarity="dot_product",
    ),
    Service(
        "voyageai",
        since=SINCE_8_19_9_1,
        task_types={"text_embedding": ALWAYS, "rerank": ALWAYS},
        service_settings=(
            _secret(),
            Field("model_id", required=True),
            _rate_limit(),
            Field(
                "embedding_type",
                Kind.ENUM,
                choices=("float", "int8", "bit"),
                default="float",
                task_types=EMBED,
            ),
            *_embedding_fields(positive=False),
        ),
        task_settings=(
            Field("input_type", Kind.ENUM, choices=("ingest", "search"), task_types=EMBED),
            Field("truncation", Kind.BOOLEAN),
            Field("top_k", Kind.INTEGER, positive=True, task_types=RERANK),
            Field("return_documents", Kind.BOOLEAN, task_types=RERANK),
        ),
        rate_limit={"*": 2000},
        dimensions_filled=True,
        similarity="dot_product",
    ),
    Service(
        "watsonxai",
        task_types={
            "text_embedding": ALWAYS,
            "rerank": ALWAYS,
            "completion": SINCE_9_2,
            "chat_completion": SINCE_9_2,
        },
        service_settings=(
            _secret(),
            Field("model_id", required=True),
            Field("project_id", required=True),
            Field("url", required=True),
            Field("api_version", required=True),
            *_embedding_fields(),
            _rate_limit(),
        ),
        task_settings=(
            Field("top_n", Kind.INTEGER, positive=True, task_types=RERANK),
            Field("return_documents", Kind.BOOLEAN, task_types=RERANK),
            Field("truncate_input_tokens", Kind.INTEGER, positive=True, task_types=RERANK),
        ),
        rate_limit={"*": 120},
        dimensions_filled=True,
        similarity="dot_product",
    ),
)

SERVICES: dict[str, Service] = {service.name: service for service in _SERVICES}
# Every secret field name across services: manifests treat these keys as secrets whatever the service.
SECRET_FIELD_NAMES = frozenset(f.name for service in _SERVICES for f in service.service_settings if f.secret)


def service(name: str, version: Version) -> Service | None:
    """The service of that exact name if the version has it (names are case-sensitive)."""
    found = SERVICES.get(name)
    return found if found is not None and found.available(version) else None


def services(version: Version) -> list[Service]:
    return [s for s in _SERVICES if s.available(version)]


# ---------------------------------------------------------------------------------------------
# Built-in trained models of the in-cluster service

ELSER_MODEL = ".elser_model_2"
ELSER_MODEL_X86 = ".elser_model_2_linux-x86_64"
E5_MODEL = ".multilingual-e5-small"
E5_MODEL_X86 = ".multilingual-e5-small_linux-x86_64"
RERANK_MODEL = ".rerank-v1"


@dataclass(frozen=True, slots=True)
class BuiltinModel:
    """A model Elasticsearch can download and deploy itself, and the task type it serves."""

    model_id: str
    task_type: str
    family: Literal["elser", "e5", "rerank"]
    x86_only: bool = False


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    m.model_id: m
    for m in (
        BuiltinModel(ELSER_MODEL, "sparse_embedding", "elser"),
        BuiltinModel(ELSER_MODEL_X86, "sparse_embedding", "elser", x86_only=True),
        BuiltinModel(E5_MODEL, "text_embedding", "e5"),
        BuiltinModel(E5_MODEL_X86, "text_embedding", "e5", x86_only=True),
        BuiltinModel(RERANK_MODEL, "rerank", "rerank"),
    )
}


def default_elser_model(linux_x86: bool) -> str:
    """The ELSER model id the server picks: the optimised one on homogeneous linux-x86_64 ML nodes."""
    return ELSER_MODEL_X86 if linux_x86 else ELSER_MODEL


# ---------------------------------------------------------------------------------------------
# What `_update` can change in place (reference §6)

_UPDATE_ARRIVED = Since((8, 17), (9, 0))
_NEWEST_UPDATE = Since((9, 5))


def updatable_in_place(service: Service, task_type: str, path: str, version: Version) -> bool:
    """Whether `_update` can change this dotted path on this version; anything else is a replace.

    From 8.17: secrets, task_settings, and num_allocations of in-cluster endpoints. From 9.5 also
    chunking_settings, adaptive_allocations and the service settings the newest parser merges.
    """
    if not _UPDATE_ARRIVED.covers(version):
        return False
    section, _, rest = path.partition(".")
    name = rest.split(".")[0]
    newest = _NEWEST_UPDATE.covers(version)
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
    return newest and spec.updatable
