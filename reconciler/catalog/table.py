"""The service table: what each inference service accepts, fills in and lets change, as data.

This module holds the data of the service catalog and the small value types it is written in:
versions and version ranges (`Version`, `Since`), the task types, the setting descriptions
(`Field`, `OneOf`, `Service`), the `SERVICES` table itself, the chunking tables and the built-in
trained models. The rules that read it are the rest of `reconciler.catalog`, which re-exports the
names used outside; the table imports nothing but the standard library.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

# JSON values as Python's json module reads them.
Json = Any

# ---------------------------------------------------------------------------------------------
# Versions and the versions a feature exists in


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
# Task types, in Elasticsearch's order

TASK_TYPES: dict[str, Since] = {
    "text_embedding": ALWAYS,
    "sparse_embedding": ALWAYS,
    "rerank": ALWAYS,
    "completion": ALWAYS,
    "chat_completion": Since((8, 18), (9, 0)),
    "embedding": Since((9, 4)),
}
EMBEDDING_TASK_TYPES = frozenset({"text_embedding", "sparse_embedding", "embedding"})

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
    `updatable` marks what `_update` changes on every version that has it (secrets, in-cluster
    allocations); the other service settings the 9.5 `_update` takes are `Service.updatable`.
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
    # From these versions on the setting is gone again (None: it stays).
    until: Since | None = None
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
    # Elasticsearch accepts the setting but then cannot read the endpoint back: the validator
    # refuses it with this reason (the emulator, like the server, takes it).
    unreadable: str | None = None

    def applies(self, task_type: str, version: Version) -> bool:
        gone = self.until is not None and self.until.covers(version)
        return (
            (not self.task_types or task_type in self.task_types) and self.since.covers(version) and not gone
        )

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
    # The service settings (besides secrets) the 9.5 `_update` changes in place: the ones the
    # service's own updateServiceSettings reads (C6); before 9.5 none is. rate_limit became
    # updatable service by service (issue #144522; e.g. cohere PR #145360): the default assumes it
    # for every service that has one, which not every service's PR confirms.
    updatable: frozenset[str] = frozenset({"rate_limit"})
    # Before these versions the stored similarity was this one whatever the settings (C2).
    legacy_similarity: tuple[Since, str] | None = None
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

    def default_similarity(self, settings: Mapping[str, Json], version: Version | None = None) -> str | None:
        if self.legacy_similarity is not None and version is not None:
            since, legacy = self.legacy_similarity
            if not since.covers(version):
                return legacy
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
# Chunking strategies and their settings (chunking package of the inference plugin)

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
    # none (PR #129150, backport #129324) and recursive (PR #126866, backports #131227, #131228)
    # exist on 8.19.x and 9.1+, not on 9.0; the 8.19 spec lists only sentence and word.
    "none": Since((8, 19), (9, 1)),
    "recursive": Since((8, 19), (9, 1)),
}
CHUNK_KEYS: dict[str, tuple[str, ...]] = {
    "sentence": ("strategy", "max_chunk_size", "sentence_overlap"),
    "word": ("strategy", "max_chunk_size", "overlap"),
    "none": ("strategy",),
    "recursive": ("strategy", "max_chunk_size", "separator_group", "separators"),
}
CHUNK_MIN: dict[str, int] = {"sentence": 20, "word": 10, "recursive": 10}


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
    return Field("rate_limit", Kind.MAP, special=Special.RATE_LIMIT)


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
        updatable=frozenset({"batch_size"}),  # PR #147597
        dimensions_filled=True,
    ),
    Service(
        "amazonbedrock",
        # chat_completion from 9.4 (PR #139411; the 9.4 spec), C4.
        task_types={"completion": ALWAYS, "text_embedding": ALWAYS, "chat_completion": Since((9, 4))},
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
            # Elasticsearch writes top_k back under the key top_p (src commit 01195333) and then
            # parses that integer as a Double: the endpoint can no longer be read (C11).
            Field(
                "top_k",
                Kind.INTEGER,
                echo_as="top_p",
                unreadable="Elasticsearch stores top_k under the key top_p and can then no longer read the "
                "endpoint back (GET of it and GET /_inference/_all answer 400): leave top_k out",
            ),
        ),
        rate_limit={"*": 50},
        task_settings_update="replace",
        updatable=frozenset({"rate_limit"}),  # PR #144774
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
        # chat_completion from 9.3 (PR #138726), C4.
        task_types={"completion": ALWAYS, "text_embedding": ALWAYS, "chat_completion": Since((9, 3))},
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
        # task_settings.headers from 9.4 (the 9.4 spec), C4.
        task_settings=(Field("user"), Field("headers", Kind.MAP, since=Since((9, 4)))),
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
        # 8.18+ (PR #125370, backports #125428 to 8.18, #125429 to 9.0): cosine for float / byte /
        # int8, l2_norm for bit / binary; dot_product before (C2).
        similarity="cosine",
        similarity_rules=(("embedding_type", frozenset({"bit", "binary"}), "l2_norm"),),
        legacy_similarity=(Since((8, 18), (9, 0)), "dot_product"),
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
        # PR #146242: everything but similarity and dimensions.
        updatable=frozenset(
            {
                "url",
                "headers",
                "query_parameters",
                "request",
                "response",
                "rate_limit",
                "batch_size",
                "input_type",
                "max_input_tokens",
            }
        ),
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
    # The Elastic Inference Service (EIS): the cluster authenticates to it, so there is no api_key.
    # Source: x-pack/plugin/inference/.../services/elastic/ (ElasticInferenceService and the
    # *ServiceSettings classes). Registered only behind a feature flag in 8.16 and 8.17 (InferencePlugin),
    # so from 8.18 and 9.0 on release builds; rerank (transport ml_inference_elastic_rerank, 9094000 /
    # 8841048) and text_embedding (ml_inference_elastic_dense_text_embeddings_added, 9109000 / 8841059)
    # from 8.19 and 9.1; the `embedding` task type from 9.4. Rate limiting was switched off in 9.2
    # (inference_api_disable_eis_rate_limiting, 9152000): GET stops printing rate_limit and a request
    # may not set it. When `completion` arrived is not confirmed: taken as 9.3.
    Service(
        "elastic",
        since=Since((8, 18), (9, 0)),
        task_types={
            "sparse_embedding": ALWAYS,
            "chat_completion": ALWAYS,
            "text_embedding": SINCE_8_19_9_1,
            "rerank": SINCE_8_19_9_1,
            "completion": Since((9, 3)),
            "embedding": Since((9, 4)),
        },
        service_settings=(
            Field("model_id", required=True),
            Field(
                "max_input_tokens", Kind.INTEGER, positive=True, task_types=frozenset({"sparse_embedding"})
            ),
            Field("similarity", Kind.ENUM, choices=SIMILARITIES, task_types=EMBEDDINGS),
            Field("dimensions", Kind.INTEGER, positive=True, task_types=EMBEDDINGS),
            Field("max_input_tokens", Kind.INTEGER, positive=True, task_types=EMBEDDINGS),
            replace(_rate_limit(), until=SINCE_9_2),
        ),
        rate_limit={"sparse_embedding": 1000, "text_embedding": 10000, "chat_completion": 720, "*": 500},
        dimensions_filled=True,
        similarity="cosine",
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
        updatable=frozenset({"rate_limit", "max_input_tokens"}),  # PR #146493
        dimensions_filled=True,
        similarity="cosine",
    ),
    Service(
        "googleaistudio",
        task_types={"completion": ALWAYS, "text_embedding": ALWAYS},
        service_settings=(_secret(), Field("model_id", required=True), _rate_limit(), *_embedding_fields()),
        rate_limit={"*": 360},
        updatable=frozenset({"rate_limit", "max_input_tokens"}),  # PR #146671
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
        updatable=frozenset({"rate_limit", "organization_id"}),  # PR #146981
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
        updatable=frozenset({"rate_limit", "max_input_tokens"}),  # PR #147143
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
        updatable=frozenset({"rate_limit", "max_input_tokens"}),  # PR #147295
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
        updatable=frozenset({"rate_limit", "max_input_tokens"}),  # PR #147429
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
        updatable=frozenset({"organization_id", "max_input_tokens", "rate_limit"}),  # PR #147465
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
        updatable=frozenset({"rate_limit", "max_input_tokens"}),  # PR #147480
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
            # Rerank arrived with PR #117176 (November 2024, after 8.17 was cut).
            "rerank": Since((8, 18), (9, 0)),
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
        updatable=frozenset({"rate_limit", "max_input_tokens"}),  # PR #147250
        dimensions_filled=True,
        similarity="dot_product",
    ),
)


SERVICES: dict[str, Service] = {service.name: service for service in _SERVICES}


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
