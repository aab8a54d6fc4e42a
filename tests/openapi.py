"""Validate emulator traffic against the official OpenAPI subset in ../shared/reference/spec.

Responses are checked against the operation's 200 schema, or `_types.ErrorResponseBase` for
errors; PUT bodies against the per-service request schema of the `.routable` form. The spec's
known flaw (ErrorCause.reason is a oneOf that a plain string matches twice) is read as anyOf,
as the subset's own notes say.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SPEC_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference" / "spec"
URI = "urn:spec"


@cache
def spec(major_minor: str) -> dict[str, Any]:
    name = (
        "openapi-inference-8.19.routable.json"
        if major_minor.startswith("8.")
        else "openapi-inference-9.5.routable.json"
    )
    if not SPEC_DIR.is_dir():
        raise FileNotFoundError(f"the OpenAPI subset is expected beside the repository, at {SPEC_DIR}")
    document: dict[str, Any] = json.loads((SPEC_DIR / name).read_text())
    document = copy.deepcopy(document)
    reason = document["components"]["schemas"]["_types.ErrorCause"]["properties"]["reason"]
    reason["anyOf"] = reason.pop("oneOf")
    return document


@cache
def _registry(major_minor: str) -> Registry[Any]:
    resource: Resource[Any] = Resource.from_contents(spec(major_minor), default_specification=DRAFT4)
    registry: Registry[Any] = Registry().with_resource(URI, resource)
    return registry


def _validator(major_minor: str, pointer: str) -> OAS30Validator:
    return OAS30Validator({"$ref": f"{URI}#{pointer}"}, registry=_registry(major_minor))


def _template(path: str, template: str) -> bool:
    pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
    return re.fullmatch(pattern, path) is not None


def operation(major_minor: str, method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The spec operation for a concrete path: literal segments win over templated ones."""
    paths = spec(major_minor)["paths"]
    candidates = [t for t in paths if _template(path, t) and method.lower() in paths[t]]
    if not candidates:
        raise LookupError(f"no operation in the {major_minor} spec for {method} {path}")
    best = max(candidates, key=lambda t: sum(1 for seg in t.split("/") if seg and not seg.startswith("{")))
    return best, paths[best][method.lower()]


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def response_errors(major_minor: str, method: str, path: str, status: int, body: Any) -> list[str]:
    """Every way the response body departs from the spec (empty when it conforms)."""
    document = spec(major_minor)
    if status >= 400:
        pointer = "/components/schemas/_types.ErrorResponseBase"
    else:
        template, op = operation(major_minor, method, path)
        response = _resolve(document, op["responses"]["200"])
        schema = response["content"]["application/json"]["schema"]
        pointer = _pointer_of(document, schema, template, method)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _validator(major_minor, pointer).iter_errors(body)
    ]


def _pointer_of(document: dict[str, Any], schema: dict[str, Any], template: str, method: str) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).removeprefix("#")
    # Inline schema: validate against its place in the document.
    op = document["paths"][template][method.lower()]["responses"]["200"]
    if "$ref" in op:
        name = op["$ref"].split("/")[-1]
        return f"/components/responses/{name}/content/application~1json/schema"
    escaped = template.replace("~", "~0").replace("/", "~1")
    return f"/paths/{escaped}/{method.lower()}/responses/200/content/application~1json/schema"


def request_errors(major_minor: str, service: str, body: Any) -> list[str]:
    """Check a PUT body against the service's request schema (x-inference-services)."""
    services = spec(major_minor)["x-inference-services"]
    pointer = services[service]["request_schema"].removeprefix("#")
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _validator(major_minor, pointer).iter_errors(body)
    ]


def service_examples(major_minor: str) -> dict[str, dict[str, dict[str, Any]]]:
    """The spec's own PUT examples, per service: {service: {example name: body}}."""
    services = spec(major_minor)["x-inference-services"]
    return {
        name: {ex: json.loads(value["value"]) for ex, value in entry.get("examples", {}).items()}
        for name, entry in services.items()
    }
