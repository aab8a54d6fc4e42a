"""The Elastic Inference Service (`elastic` service) as the emulator's `--eis` cluster sees it.

With `--eis` the cluster is authorised for EIS (as on Elastic Cloud): it lists EIS's preconfigured
endpoints and accepts PUTs of `elastic` endpoints. Without it, as on a self-managed cluster that
EIS has authorised nothing for, the service supports no task type and its PUTs are refused.

Which preconfigured endpoints exist depends on the version (and, on a real cluster, on what EIS
authorises; the list is EIS's to change). Sources, elastic/elasticsearch
`x-pack/plugin/inference/.../services/elastic/`:
- 8.18 / 9.0: `ElasticInferenceService` defaults `.rainbow-sprinkles-elastic` (chat_completion,
  model `rainbow-sprinkles`) and `.elser-v2-elastic` (sparse_embedding, model `elser-v2`);
- 8.19 / 9.1: `.elser-2-elastic` (model `elser_model_2`, default chunking), with
  `.multilingual-embed-v1-elastic` and `.rerank-v1-elastic` (the EIS authorization fixtures);
- 9.2: the five of `InferenceGetModelsWithElasticInferenceServiceIT.testGetDefaultEndpoints`
  (`.rainbow-sprinkles-elastic`, `.gp-llm-v2-chat_completion`, `.elser-2-elastic`,
  `.jina-embeddings-v3`, `.elastic-rerank-v1`); rate limits are no longer printed (9152000);
- 9.3+: `.elastic-rerank-v1` renamed `.jina-reranker-v2` (PR #138498), `.gp-llm-v2-completion`;
- 9.5: `InternalPreconfiguredEndpoints` adds `.jina-embeddings-v5-text-small`.
Which minor each of these first shipped in is inferred from transport versions and PR dates, not
confirmed release by release (see docs/emulator.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler import catalog
from reconciler.catalog import Since, Version
from reconciler.emulator.cluster import Endpoint

SERVICE = "elastic"
EMBED_DIMENSIONS = 1024


@dataclass(frozen=True)
class Preconfigured:
    """One EIS default endpoint and the versions that list it."""

    inference_id: str
    task_type: str
    model_id: str
    since: Since
    until: Since | None = None

    def listed(self, version: Version) -> bool:
        return self.since.covers(version) and not (self.until is not None and self.until.covers(version))


_8_18 = Since((8, 18), (9, 0))
_8_19 = Since((8, 19), (9, 1))
_9_2, _9_3, _9_5 = Since((9, 2)), Since((9, 3)), Since((9, 5))

PRECONFIGURED: tuple[Preconfigured, ...] = (
    Preconfigured(".elser-v2-elastic", "sparse_embedding", "elser-v2", _8_18, until=_8_19),
    Preconfigured(".elser-2-elastic", "sparse_embedding", "elser_model_2", _8_19),
    Preconfigured(".rainbow-sprinkles-elastic", "chat_completion", "rainbow-sprinkles", _8_18),
    Preconfigured(
        ".multilingual-embed-v1-elastic", "text_embedding", "multilingual-embed-v1", _8_19, until=_9_2
    ),
    Preconfigured(".rerank-v1-elastic", "rerank", "rerank-v1", _8_19, until=_9_2),
    Preconfigured(".gp-llm-v2-chat_completion", "chat_completion", "gp-llm-v2", _9_2),
    Preconfigured(".gp-llm-v2-completion", "completion", "gp-llm-v2", _9_3),
    Preconfigured(".jina-embeddings-v3", "text_embedding", "jina-embeddings-v3", _9_2),
    Preconfigured(".elastic-rerank-v1", "rerank", "elastic-rerank-v1", _9_2, until=_9_3),
    Preconfigured(".jina-reranker-v2", "rerank", "jina-reranker-v2", _9_3),
    Preconfigured(".jina-embeddings-v5-text-small", "text_embedding", "jina-embeddings-v5-text-small", _9_5),
)


def preconfigured_ids(version: Version) -> list[str]:
    return sorted(p.inference_id for p in PRECONFIGURED if p.listed(version))


def _settings(entry: Preconfigured, version: Version) -> dict[str, Any]:
    """service_settings as GET prints them (the settings classes' toXContent order)."""
    settings: dict[str, Any] = {}
    if entry.task_type == "text_embedding":
        settings.update({"similarity": "cosine", "dimensions": EMBED_DIMENSIONS})
    settings["model_id"] = entry.model_id
    service = catalog.SERVICES[SERVICE]
    if any(f.name == "rate_limit" for f in service.settings(entry.task_type, version)):
        settings["rate_limit"] = {"requests_per_minute": service.default_rate_limit(entry.task_type)}
    return settings


def default_endpoints(version: Version) -> list[Endpoint]:
    """The EIS preconfigured endpoints of this version, as the cluster stores them."""
    found = []
    for entry in PRECONFIGURED:
        if not entry.listed(version):
            continue
        # The 8.18-era sparse default carried no chunking settings; later ones the default.
        chunked = catalog.chunking_applies(entry.task_type) and entry.since is not _8_18
        found.append(
            Endpoint(
                entry.inference_id,
                entry.task_type,
                SERVICE,
                _settings(entry, version),
                chunking_settings=dict(catalog.DEFAULT_CHUNKING) if chunked else None,
                preconfigured=True,
            )
        )
    return found


def refuse_unauthorised(task_type: str) -> str:
    """Without EIS authorisation the service supports no task type (the generic message)."""
    return f"The [{SERVICE}] service does not support task type [{task_type}]"
