"""The manifest format (pydantic models, the source of `reconciler schema`) and the desired endpoint.

`Manifest` is one YAML document as users write it: the keys Elasticsearch takes, plus the tool's
own `lifecycle` and `wait`. The settings sections are free-form here: what they may hold is the
service catalog's business (`reconciler.manifests` checks them against it). `Desired` is what a
valid manifest means: the endpoint the planner compares with the cluster, secrets held apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from reconciler import catalog
from reconciler.sensitive import Secret

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """`90s`, `15m`, `1h30m`, `500ms` in seconds; ValueError otherwise."""
    value = text.strip()
    if not value or _DURATION.sub("", value) != "":
        raise ValueError(f"'{text}' is not a duration: write a number and a unit, e.g. 90s, 15m, 1h30m")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION.findall(value))


class Lifecycle(BaseModel):
    """The tool's own safety switches; never sent to Elasticsearch."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    prevent_destroy: bool = Field(
        False, description="Refuse any plan that deletes or replaces this endpoint."
    )
    ignore_changes: tuple[str, ...] = Field(
        (),
        strict=False,  # a YAML list
        description="Dotted paths (e.g. task_settings.temperature) whose differences plan and drift ignore.",
    )


class Wait(BaseModel):
    """How long apply waits for the trained-model deployment of an in-cluster endpoint."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    timeout: str | None = Field(
        None, description="A duration such as 15m or 1h; default: --wait-timeout (20m)."
    )

    @field_validator("timeout")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class Manifest(BaseModel):
    """One inference endpoint, as a YAML document."""

    model_config = ConfigDict(extra="forbid", strict=True, title="reconciler inference endpoint manifest")

    inference_id: str = Field(description="The endpoint id: lowercase letters, digits, '-', '_' and '.'.")
    task_type: str = Field(
        description="text_embedding, sparse_embedding, rerank, completion, chat_completion, embedding."
    )
    service: str = Field(
        description="The inference service, exactly as Elasticsearch names it (e.g. anthropic)."
    )
    service_settings: dict[str, Any] = Field(
        description="Settings of the service; secrets must be ${...} references."
    )
    task_settings: dict[str, Any] | None = Field(None, description="Settings of the task.")
    chunking_settings: dict[str, Any] | None = Field(None, description="For embedding task types only.")
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)
    wait: Wait | None = None


@dataclass(frozen=True)
class Source:
    """Where a manifest was written."""

    file: str
    line: int


@dataclass(frozen=True)
class Desired:
    """A valid manifest: the endpoint it asks for, in the form the server stores.

    `service` is the name the server stores (`elser` becomes `elasticsearch`); `service_settings`
    holds no secret: `secrets` maps each secret's path inside service_settings (`api_key`,
    `secret_parameters.token`) to its value, `secret_references` to its reference as written.
    References are resolved and values normalised
    (`temperature: 1` is 1.0 where Elasticsearch wants a Double).
    """

    inference_id: str
    task_type: str
    service: str
    written_service: str
    service_settings: Mapping[str, Any]
    secrets: Mapping[str, Secret]
    # Each secret's reference as written (`${ANTHROPIC_API_KEY}`), for plans, which hold no value.
    secret_references: Mapping[str, str]
    task_settings: Mapping[str, Any] | None
    chunking_settings: Mapping[str, Any] | None
    lifecycle: Lifecycle
    wait_timeout: float | None
    source: Source


_JSON_TYPES = {
    "STRING": "string",
    "ENUM": "string",
    "INTEGER": "integer",
    "LONG": "integer",
    "DOUBLE": "number",
    "BOOLEAN": "boolean",
    "MAP": "object",
    "LIST": "array",
}


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a manifest, for editors: the format, plus each service's settings."""
    schema = Manifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    properties = schema["properties"]
    properties["service"]["enum"] = sorted(catalog.SERVICES)
    properties["task_type"]["enum"] = list(catalog.TASK_TYPES)
    rules = []
    for service in catalog.SERVICES.values():
        then: dict[str, Any] = {"properties": {"task_type": {"enum": list(service.task_types)}}}
        for section, fields in (
            ("service_settings", service.service_settings),
            ("task_settings", service.task_settings),
        ):
            props = {f.name: _field_schema(f) for f in fields if f.accepted}
            required = sorted({f.name for f in fields if f.required and f.optional_since is None})
            if section == "task_settings" and not props:
                continue
            then["properties"][section] = {"properties": props, "additionalProperties": False}
            if required:
                then["properties"][section]["required"] = required
        rules.append({"if": {"properties": {"service": {"const": service.name}}}, "then": then})
    schema["allOf"] = rules
    return schema


def _field_schema(spec: catalog.Field) -> dict[str, Any]:
    if spec.secret:
        return {
            "type": "object" if spec.kind is catalog.Kind.MAP else "string",
            "description": "A secret: a ${ENV_VAR} or ${file:PATH} reference, never a literal value.",
        }
    result: dict[str, Any] = {"type": _JSON_TYPES[spec.kind.name]}
    if spec.choices:
        result["enum"] = sorted({*spec.choices, *(c.lower() for c in spec.choices)})
    if spec.default is not None:
        result["default"] = spec.default
    return result
