"""The service catalog against the official spec, the spec's own examples, and its small helpers."""

from __future__ import annotations

import re
from typing import Any

import pytest

from reconciler import catalog
from reconciler.catalog import Kind, Since, Version
from reconciler.emulator.wording import java_str
from tests import openapi
from tests.conftest import Es

EMBED_EXTRAS = {"dimensions", "max_input_tokens", "similarity"}

# Where the catalog and the spec disagree, and why: the Java settings classes parse more than the
# spec lists (the catalog follows the Java code). Any other difference fails the test below.
ACCEPTED_BEYOND_SPEC: dict[tuple[str, str, str], set[str]] = {
    ("*", "alibabacloud-ai-search", "service_settings"): EMBED_EXTRAS | {"http_schema"},
    ("*", "alibabacloud-ai-search", "task_settings"): {"parameters"},
    ("8.19", "amazon_sagemaker", "service_settings"): {"element_type", "similarity"},
    ("*", "amazon_sagemaker", "task_settings"): {"user"},
    ("*", "amazonbedrock", "service_settings"): {"max_input_tokens", "similarity"},
    ("*", "amazonbedrock", "task_settings"): {"truncate"},
    ("*", "azureaistudio", "service_settings"): EMBED_EXTRAS,
    ("8.19", "azureaistudio", "task_settings"): {"return_documents", "top_n"},
    ("*", "azureopenai", "service_settings"): EMBED_EXTRAS,
    ("*", "cohere", "service_settings"): {"dimensions", "max_input_tokens", "url"},
    ("*", "cohere", "task_settings"): {"max_chunks_per_doc"},
    ("9.5", "contextualai", "task_settings"): {"top_n"},
    ("*", "custom", "service_settings"): EMBED_EXTRAS | {"rate_limit"},
    ("*", "elser", "service_settings"): {"deployment_id", "model_id"},
    ("9.5", "fireworksai", "service_settings"): {"max_input_tokens"},
    ("*", "googleaistudio", "service_settings"): EMBED_EXTRAS,
    ("8.19", "googlevertexai", "service_settings"): EMBED_EXTRAS,
    ("9.5", "googlevertexai", "service_settings"): {"max_input_tokens", "similarity"},
    ("8.19", "googlevertexai", "task_settings"): {"thinking_config"},
    ("9.5", "groq", "service_settings"): {"organization_id", "url"},
    ("9.5", "groq", "task_settings"): {"headers", "user"},
    ("*", "hugging_face", "service_settings"): EMBED_EXTRAS,
    ("8.19", "jinaai", "service_settings"): {"max_input_tokens", "multimodal_model"},
    ("9.5", "jinaai", "service_settings"): {"max_input_tokens"},
    ("8.19", "jinaai", "task_settings"): {"input_type", "late_chunking"},
    ("9.5", "llama", "service_settings"): {"api_key", "dimensions"},
    ("*", "mistral", "service_settings"): {"dimensions", "similarity"},
    ("*", "openai", "service_settings"): {"max_input_tokens"},
    ("9.5", "openshift_ai", "service_settings"): {"dimensions"},
    # The spec omits VoyageAI's api_key (a noted spec oddity); the Java code requires it.
    ("*", "voyageai", "service_settings"): {"api_key", "max_input_tokens", "similarity"},
    ("*", "watsonxai", "service_settings"): EMBED_EXTRAS,
    ("*", "watsonxai", "task_settings"): {"return_documents", "top_n", "truncate_input_tokens"},
}
# Spec names the Java parsers do not read.
IN_SPEC_ONLY: dict[tuple[str, str, str], set[str]] = {
    ("8.19", "jinaai", "task_settings"): {"task"},  # the Java code reads input_type
    ("9.5", "contextualai", "task_settings"): {"top_k"},  # the Java code reads top_n
}
TASK_TYPE_DIFFERENCES: dict[tuple[str, str], tuple[set[str], set[str]]] = {
    # (in the spec only, in the catalog only)
    ("8.19", "alibabacloud-ai-search"): ({"space_embedding"}, {"sparse_embedding"}),  # an upstream typo
    ("8.19", "hugging_face"): (
        set(),
        {"sparse_embedding"},
    ),  # parsed by the Java service, absent from the spec
    ("9.5", "hugging_face"): (set(), {"sparse_embedding"}),
}


def _schema(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    schemas = document["components"]["schemas"]
    while True:
        if "$ref" in node:
            node = schemas[node["$ref"].split("/")[-1]]
        elif "allOf" in node and len(node["allOf"]) == 1 and "properties" not in node:
            node = node["allOf"][0]
        else:
            return node


def _expected(table: dict[tuple[str, str, str], set[str]], line: str, service: str, section: str) -> set[str]:
    return table.get((line, service, section), table.get(("*", service, section), set()))


@pytest.mark.parametrize("line", ["8.19", "9.5"])
def test_catalog_agrees_with_the_spec_except_where_the_java_code_differs(line: str) -> None:
    document = openapi.spec(line)
    version = Version.parse(line)
    problems = []
    for name, entry in document["x-inference-services"].items():
        service = catalog.SERVICES[name]
        assert service.available(version), name
        spec_types = set(entry["task_types"])
        ours = set(service.supported_task_types(version))
        expected = TASK_TYPE_DIFFERENCES.get((line, name), (set(), set()))
        if (spec_types - ours, ours - spec_types) != expected:
            problems.append(f"{name} task types: spec {sorted(spec_types)}, catalog {sorted(ours)}")
        request = document["components"]["schemas"][entry["request_schema"].split("/")[-1]]
        for section, fields in (
            ("service_settings", service.service_settings),
            ("task_settings", service.task_settings),
        ):
            node = request["properties"].get(section)
            in_spec = set(_schema(document, node).get("properties", {})) if node else set()
            in_catalog = {f.name for f in fields if f.since.covers(version) and f.accepted}
            if in_catalog - in_spec != _expected(ACCEPTED_BEYOND_SPEC, line, name, section):
                problems.append(f"{name}.{section} beyond the spec: {sorted(in_catalog - in_spec)}")
            if in_spec - in_catalog != _expected(IN_SPEC_ONLY, line, name, section):
                problems.append(f"{name}.{section} missing from the catalog: {sorted(in_spec - in_catalog)}")
    assert not problems, "\n".join(problems)


def test_secrets_are_marked_and_listed() -> None:
    for service in catalog.SERVICES.values():
        for field in service.service_settings:
            if field.name in catalog.SECRET_FIELD_NAMES:
                assert field.secret, f"{service.name}.{field.name}"
            if field.secret:
                assert field.name in catalog.SECRET_FIELD_NAMES
                assert field.updatable


def test_every_service_with_a_rate_limit_setting_has_a_default_and_vice_versa() -> None:
    for service in catalog.SERVICES.values():
        has_setting = any(f.special is catalog.Special.RATE_LIMIT for f in service.service_settings)
        assert has_setting == (service.rate_limit is not None), service.name
        for task_type in service.task_types:
            if has_setting:
                assert isinstance(service.default_rate_limit(task_type), int), (service.name, task_type)


# -- the spec's own examples -------------------------------------------------------------------

# Where the spec's examples contradict the Java code (or themselves); everything else must pass.
EXAMPLE_SLIPS = {
    "PutVoyageAIRequestExample1": "no api_key: the spec omits it, the Java code requires it",
    "PutVoyageAIRequestExample2": "no api_key: the spec omits it, the Java code requires it",
    "PutContextualAiRequestExample1": "task_settings.top_k: the Java code reads top_n",
}
# The task type, where the example's description does not give a usable path.
EXAMPLE_TASK_TYPES = {
    "PutAi21RequestExample2": "chat_completion",  # its description says `chat-completion`
    "PutFireworksAiRequestExample2": "text_embedding",
}


def _examples() -> list[tuple[str, str, str, str, dict[str, Any]]]:
    cases = []
    for line in ("8.19", "9.5"):
        services = openapi.spec(line)["x-inference-services"]
        for name, examples in openapi.service_examples(line).items():
            for example, body in examples.items():
                description = services[name]["examples"][example].get("description", "")
                match = re.search(r"_inference/(\w+)/", description)
                task_type = (
                    body.get("task_type") or EXAMPLE_TASK_TYPES.get(example) or (match[1] if match else "")
                )
                cases.append((line, name, example, task_type, body))
    return cases


@pytest.mark.parametrize(
    ("line", "service", "example", "task_type", "body"),
    _examples(),
    ids=lambda v: v if isinstance(v, str) else "",
)
async def test_the_spec_examples_are_accepted(
    make_es: Any, line: str, service: str, example: str, task_type: str, body: dict[str, Any]
) -> None:
    es: Es = await make_es(
        version="8.19.3" if line == "8.19" else "9.5.0",
        trained_models=(("msmarco-MiniLM-L12-cos-v5", "text_embedding"),),
    )
    if body.get("service_settings", {}).get("deployment_id"):
        await es.put(
            "/_inference/sparse_embedding/seed",
            json={
                "service": "elasticsearch",
                "service_settings": {"model_id": ".elser_model_2", "num_threads": 1, "num_allocations": 1},
            },
        )
        es.cluster.deployments[body["service_settings"]["deployment_id"]] = es.cluster.deployments.pop("seed")
    response = await es.put(f"/_inference/{task_type}/example-endpoint", json=body)
    if example in EXAMPLE_SLIPS:
        assert response.status_code == 400, EXAMPLE_SLIPS[example]
    else:
        assert response.status_code == 200, response.text
        assert response.json()["service"] == catalog.SERVICES[service].stored_name(Version.parse(line))


# Where the spec's request schemas contradict the spec's own examples, by (version, example or service).
SCHEMA_SLIPS = {
    (
        "*",
        "custom",
    ): "request is a template string in the examples and the Java code, an object in the schema",
    (
        "*",
        "PutElasticsearchRequestExample6",
    ): "with deployment_id, model_id and num_threads come from the deployment",
    ("*", "PutElserRequestExample2"): "adaptive_allocations stands in for num_allocations",
    ("8.19", "PutGoogleVertexAiRequestExample2"): "rerank needs neither location nor model_id",
    ("9.5", "PutCohereRequestExample2"): "input_type is optional in the Java code",
    ("9.5", "PutNvidiaRequestExample2"): "truncate is parsed case-insensitively",
}


@pytest.mark.parametrize(
    ("line", "service", "example", "task_type", "body"),
    _examples(),
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_the_spec_examples_match_the_request_schemas(
    line: str, service: str, example: str, task_type: str, body: dict[str, Any]
) -> None:
    errors = openapi.request_errors(line, service, body)
    if {(line, service), (line, example), ("*", service), ("*", example)} & SCHEMA_SLIPS.keys():
        assert errors, "a listed slip no longer happens: remove it from SCHEMA_SLIPS"
    else:
        assert not errors


# -- helpers -----------------------------------------------------------------------------------


def test_since_covers_each_major_line() -> None:
    since = Since((8, 19), (9, 1))
    assert since.covers(Version(8, 19))
    assert not since.covers(Version(8, 18))
    assert since.covers(Version(9, 1))
    assert not since.covers(Version(9, 0))
    assert since.covers(Version(10, 0))
    only_nine = Since((9, 2))
    assert not only_nine.covers(Version(8, 19))
    assert only_nine.covers(Version(9, 5))


def test_versions() -> None:
    assert Version.parse("9.1.2") == Version(9, 1, 2)
    assert Version.parse("8.19") == Version(8, 19, 0)
    assert Version.parse("9.5.0-SNAPSHOT") == Version(9, 5, 0)
    with pytest.raises(ValueError, match="not an Elasticsearch version"):
        Version.parse("latest")
    checked = ("8.15.9", "8.16.0", "8.18.9", "8.19.0", "9.0.0", "9.5.9", "9.6.0")
    assert [catalog.supported(Version.parse(v)) for v in checked] == [
        False,
        True,
        True,
        True,
        True,
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("version", "update", "resets", "timeout"),
    [
        ("8.16.3", True, True, False),
        ("8.17.1", True, True, False),
        ("8.18.4", True, True, False),
        ("8.19.3", True, True, True),
        ("9.0.4", True, True, False),
        ("9.1.0", True, True, True),
        ("9.3.2", True, True, True),
        ("9.4.0", True, False, True),
        ("9.5.0", True, False, True),
    ],
)
def test_update_and_put_rules_by_version(version: str, update: bool, resets: bool, timeout: bool) -> None:
    """`_update` from 8.16 / 9.0; it resets chunking (C5) until 9.4; PUT takes timeout from 8.19 / 9.1."""
    parsed = Version.parse(version)
    assert catalog.UPDATE_ARRIVED.covers(parsed) is update
    assert catalog.update_resets_chunking(parsed) is resets
    assert catalog.PUT_TIMEOUT.covers(parsed) is timeout
    sentence = dict(catalog.DEFAULT_CHUNKING)
    assert catalog.update_changes_chunking(sentence, parsed) is resets
    assert not catalog.update_changes_chunking(dict(catalog.OLD_DEFAULT_CHUNKING), parsed)
    assert not catalog.update_changes_chunking(None, parsed)


@pytest.mark.parametrize(
    ("service", "task_type", "setting", "in_place"),
    [
        ("groq", "chat_completion", "organization_id", True),
        ("custom", "text_embedding", "url", True),
        ("custom", "text_embedding", "headers", True),
        ("custom", "text_embedding", "dimensions", False),
        ("hugging_face", "text_embedding", "max_input_tokens", True),
        ("hugging_face", "text_embedding", "url", False),
        ("watsonxai", "text_embedding", "max_input_tokens", True),
        ("watsonxai", "text_embedding", "model_id", False),
        ("nvidia", "text_embedding", "max_input_tokens", True),
        ("openshift_ai", "text_embedding", "max_input_tokens", True),
        ("fireworksai", "text_embedding", "max_input_tokens", True),
        ("openai", "text_embedding", "organization_id", True),
        ("openai", "text_embedding", "dimensions", False),
        ("amazon_sagemaker", "text_embedding", "batch_size", True),
        ("anthropic", "completion", "model_id", False),
    ],
)
def test_in_place_update_rules_of_9_5_per_service(
    service: str, task_type: str, setting: str, in_place: bool
) -> None:
    """C6: what each service's 9.5 update parser changes in place; before 9.5 none of these is."""
    found = catalog.SERVICES[service]
    path = f"service_settings.{setting}"
    assert catalog.updatable_in_place(found, task_type, path, Version(9, 5, 0)) is in_place
    assert not catalog.updatable_in_place(found, task_type, path, Version(9, 4, 0))


@pytest.mark.parametrize(
    ("service", "task_type", "absent_on", "present_on"),
    [
        ("amazonbedrock", "chat_completion", "9.3.0", "9.4.0"),  # C4: PR #139411
        ("azureopenai", "chat_completion", "9.2.0", "9.3.0"),  # C4: PR #138726
        ("openai", "chat_completion", "8.17.0", "8.18.0"),
        ("watsonxai", "rerank", "8.17.0", "8.18.0"),
    ],
)
def test_task_types_arrive_by_their_own_version(
    service: str, task_type: str, absent_on: str, present_on: str
) -> None:
    found = catalog.SERVICES[service]
    assert not found.supports(task_type, Version.parse(absent_on))
    assert found.supports(task_type, Version.parse(present_on))


def test_services_by_version() -> None:
    on = {v: {s.name for s in catalog.services(Version.parse(v))} for v in ("8.16.0", "8.18.0", "8.19.0")}
    assert {"alibabacloud-ai-search", "watsonxai", "anthropic", "elasticsearch"} <= on["8.16.0"]
    assert "jinaai" not in on["8.16.0"]
    assert "jinaai" in on["8.18.0"]
    assert not {"custom", "voyageai", "deepseek", "amazon_sagemaker"} & on["8.18.0"]
    assert {"custom", "voyageai", "deepseek", "amazon_sagemaker"} <= on["8.19.0"]


def test_cohere_default_similarity_by_version() -> None:
    """C2: cosine (l2_norm for bit) from 8.18, dot_product before."""
    cohere = catalog.SERVICES["cohere"]
    assert cohere.default_similarity({"embedding_type": "float"}, Version(8, 17)) == "dot_product"
    assert cohere.default_similarity({"embedding_type": "bit"}, Version(8, 17)) == "dot_product"
    assert cohere.default_similarity({"embedding_type": "float"}, Version(8, 18)) == "cosine"
    assert cohere.default_similarity({"embedding_type": "bit"}, Version(9, 0)) == "l2_norm"


@pytest.mark.parametrize(
    ("kind", "value", "accepted"),
    [
        (Kind.DOUBLE, 1.0, True),
        (Kind.DOUBLE, 1, False),
        (Kind.INTEGER, 1, True),
        (Kind.INTEGER, 1.0, False),
        (Kind.INTEGER, True, False),
        (Kind.INTEGER, 2**31, False),
        (Kind.LONG, 2**31, True),
        (Kind.BOOLEAN, 0, False),
        (Kind.STRING, "", True),
        (Kind.MAP, [], False),
    ],
)
def test_value_kinds_follow_jackson(kind: Kind, value: Any, accepted: bool) -> None:
    assert catalog.kind_accepts(kind, value) is accepted


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1.0"),
        (0.7, "0.7"),
        (250.0, "250.0"),
        (1e-5, "1.0E-5"),
        (1.5e7, "1.5E7"),
        (0.001, "0.001"),
        (1e7, "1.0E7"),
        (9.801382030564322e-30, "9.801382030564322E-30"),  # 17 digits, not rounded through 16
        (-12345678.9, "-1.23456789E7"),
    ],
)
def test_doubles_print_as_java_prints_them(value: float, text: str) -> None:
    assert catalog.java_double(value) == text


def test_maps_print_as_java_prints_them() -> None:
    assert java_str({"a": 1, "b": [True, None], "c": {"d": 0.5}}) == "{a=1, b=[true, null], c={d=0.5}}"


def test_problems_carry_paths_for_the_validator() -> None:
    service = catalog.SERVICES["anthropic"]
    checked = catalog.check_endpoint(
        service,
        "completion",
        {"service_settings": {"model_id": 3, "extra": 1}, "task_settings": {"temperature": 1}},
        Version(9, 5),
    )
    assert [(p.stage.name, p.path) for p in checked.problems] == [
        ("SERVICE_SETTINGS", "service_settings.model_id"),
        ("TASK_SETTINGS", "task_settings.max_tokens"),
        ("TASK_SETTINGS", "task_settings.temperature"),
        ("SECRETS", "service_settings.api_key"),
        ("UNKNOWN", "service_settings.extra"),
    ]


def test_problems_that_print_a_value_carry_it_for_the_emulator_and_hide_it_from_the_validator() -> None:
    checked = catalog.check_endpoint(
        catalog.SERVICES["anthropic"],
        "completion",
        {
            "service_settings": {
                "api_key": "k",
                "model_id": "m",
                "rate_limit": {"requests_per_minute": "s3"},
            },
            "task_settings": {"max_tokens": 5, "temperature": "hot"},
        },
        Version(9, 5),
    )
    by_path = {p.path: p for p in checked.problems}
    rpm = by_path["service_settings.rate_limit.requests_per_minute"]
    assert rpm.detail == catalog.WrongType("requests_per_minute", "s3", Kind.LONG, integer_or_long=True)
    assert (rpm.text, by_path["task_settings.temperature"].text) == ("must be an integer", "must be a number")
    assert all("s3" not in p.text and "hot" not in p.text for p in checked.problems)


# -- the deployment an in-cluster endpoint uses, and how healthy it is ---------------------------


def test_the_deployment_id_is_the_one_given_else_the_endpoints_own() -> None:
    assert catalog.deployment_id({"inference_id": "e5", "service_settings": {"num_threads": 1}}) == "e5"
    assert catalog.deployment_id({"inference_id": "e5"}) == "e5"
    assert catalog.deployment_id({"inference_id": "e5", "service_settings": None}) == "e5"
    given = {"inference_id": "e5", "service_settings": {"deployment_id": "shared"}}
    assert catalog.deployment_id(given) == "shared"
    assert catalog.deployment_id({"inference_id": "e5", "service_settings": {"deployment_id": ""}}) == "e5"


def _stats(count: int, target: int, allocation_state: str, **extra: Any) -> dict[str, Any]:
    status = {"allocation_count": count, "target_allocation_count": target, "state": allocation_state}
    return {"state": "started", "allocation_status": status, **extra}


@pytest.mark.parametrize(
    ("stats", "expected"),
    [
        (None, ("failed", 0, 0, "absent", catalog.ABSENT_DEPLOYMENT)),
        (_stats(2, 2, "fully_allocated"), ("done", 2, 2, "fully_allocated", None)),
        # Adaptive allocations scaled to zero count as fully allocated.
        (_stats(0, 0, "fully_allocated"), ("done", 0, 0, "fully_allocated", None)),
        (_stats(1, 2, "started", reason="insufficient"), ("waiting", 1, 2, "started", "insufficient")),
        # A target that moved since the state was computed is not done yet.
        (_stats(1, 2, "fully_allocated"), ("waiting", 1, 2, "fully_allocated", None)),
        ({"state": "starting"}, ("waiting", 0, 0, "starting", None)),
        ({}, ("waiting", 0, 0, "starting", None)),
        (
            _stats(0, 1, "starting", state="failed", reason="model load failed"),
            ("failed", 0, 1, "failed", "model load failed"),
        ),
        (
            _stats(0, 1, "starting", nodes=[{"routing_state": {"routing_state": "failed", "reason": "oom"}}]),
            ("failed", 0, 1, "failed", "oom"),
        ),
        (
            _stats(
                1,
                2,
                "started",
                nodes=[
                    {"routing_state": {"routing_state": "failed", "reason": "oom"}},
                    {"routing_state": {"routing_state": "started"}},
                ],
            ),
            ("waiting", 1, 2, "started", "oom"),
        ),
    ],
)
def test_deployment_health_reads_the_trained_model_stats(
    stats: dict[str, Any] | None, expected: tuple[str, int, int, str, str | None]
) -> None:
    assert catalog.deployment_health(stats) == expected


# What `_update` changes in place on each version is stated, with its source, in
# tests/es_facts/update-rules.yaml; tests/test_es_facts.py checks the emulator and the planner against it.


def test_the_elser_alias_routes_other_task_types_to_the_elasticsearch_service() -> None:
    elser = catalog.SERVICES["elser"]
    for version in (Version(8, 19), Version(9, 0), Version(9, 5)):
        assert catalog.route(elser, "sparse_embedding", version) is elser
        assert catalog.route(elser, "text_embedding", version) is catalog.SERVICES["elasticsearch"]
        assert catalog.route(elser, "rerank", version) is catalog.SERVICES["elasticsearch"]
        # A task type neither parses stays with the alias, which refuses it.
        assert catalog.route(elser, "completion", version) is elser
    openai = catalog.SERVICES["openai"]
    assert catalog.route(openai, "rerank", Version(9, 5)) is openai
