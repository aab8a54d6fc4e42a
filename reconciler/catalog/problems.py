"""The vocabulary of the catalog's checks: value kinds, problems, and the reasons both sides show.

A `Problem` is one thing wrong with an endpoint body, found by `reconciler.catalog.checks` or
`reconciler.catalog.chunking`. Elasticsearch's reasons that the validator shows as they are
(missing settings, bounds, positive numbers) are worded here; the ones that print a raw JSON
value are left as facts (`WrongType`, `BadChoice`, the unknown key) for the emulator to word.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from reconciler.catalog.table import Json, Kind

# ---------------------------------------------------------------------------------------------
# Value kinds, as the Java parser checks them

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


def java_double(value: float) -> str:
    """Java's Double.toString: plain notation in [1e-3, 1e7), else d.dddE±n.

    Bound errors print their numbers this way, and the validator shows those reasons as they are.
    """
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
class WrongType:
    """A value the setting's Java type cannot be read from."""

    name: str
    value: Json
    kind: Kind
    # rate_limit.requests_per_minute is read as Integer or Long, and Elasticsearch names both.
    integer_or_long: bool = False


@dataclass(frozen=True, slots=True)
class BadChoice:
    """A value that is none of a setting's choices (`choices` as Elasticsearch lists them)."""

    scope: str
    name: str
    value: Json
    choices: str


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an endpoint body.

    `path` is dotted (`task_settings.max_tokens`); `es_type` is the error type Elasticsearch answers
    with; `text` is what the validator shows, never the offending value. `reason` is
    Elasticsearch's own text when it prints no raw JSON value; otherwise it is empty and the facts
    it is printed from are in `unknown` (key, value) or `detail`, for the emulator to word.
    """

    stage: Stage
    path: str
    reason: str
    es_type: str = "validation_exception"
    unknown: tuple[str, Json] | None = None
    detail: WrongType | BadChoice | None = None
    # The validator's wording where it differs from `reason`; None: show the reason.
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


# Elasticsearch's reasons that both the validator and the emulator show.


def missing_setting(name: str, scope: str) -> str:
    return f"[{scope}] does not contain the required setting [{name}]"


def missing_one_of(names: list[str], scope: str) -> str:
    return f"[{scope}] does not contain one of the required settings [{', '.join(names)}]"


def empty_string(scope: str, name: str) -> str:
    return f"[{scope}] Invalid value empty string. [{name}] must be a non-empty string"


def not_positive(scope: str, name: str, value: Json, noun: str = "integer") -> str:
    return f"[{scope}] Invalid value [{value}]. [{name}] must be a positive {noun}"


def bound_reason(scope: str, name: str, value: float, bound: float, direction: str) -> str:
    return (
        f"[{scope}] Invalid value [{java_double(float(value))}]. "
        f"[{name}] must be a {direction} than or equal to [{java_double(float(bound))}]"
    )


# The validator's plain words for a kind.
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


def type_problem(
    stage: Stage, path: str, name: str, value: Json, kind: Kind, *, integer_or_long: bool = False
) -> Problem:
    detail = WrongType(name, value, kind, integer_or_long)
    return Problem(stage, path, "", detail=detail, message=f"must be {KIND_WORDS[kind]}")


def choice_problem(stage: Stage, path: str, scope: str, name: str, value: Json, choices: str) -> Problem:
    detail = BadChoice(scope, name, value, choices)
    return Problem(stage, path, "", detail=detail, message=f"must be one of [{choices}]")


def unknown_problems(stage: Stage, section: str, left: Mapping[str, Json], service: str) -> list[Problem]:
    message = f"unknown setting of the {service} service"
    return [
        Problem(
            stage,
            f"{section}.{key}" if section else key,
            "",
            "status_exception",
            unknown=(key, value),
            message=message,
        )
        for key, value in left.items()
    ]
