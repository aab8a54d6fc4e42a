"""The workflow that needs no cluster: `validate`, the manifests checked for an Elasticsearch
version, their references resolved (or, offline, only parsed). Apart from `workflows` so that the
command (the pre-commit hook's) loads neither the HTTP client nor the applier.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from reconciler import catalog
from reconciler.catalog import Version
from reconciler.manifests import load
from reconciler.overlays import Layers
from reconciler.reports import ValidateReport
from reconciler.resolver import Resolver


def validate(
    manifests: Path | Layers, es_version: str, env: Mapping[str, str], *, offline: bool = False
) -> ValidateReport:
    """Check the manifests without a cluster for an Elasticsearch version; ValueError for one the
    tool does not know. Offline, references are checked for syntax only: no secret is needed."""
    version = Version.parse(es_version)
    if not catalog.supported(version):
        raise ValueError(f"the tool knows Elasticsearch {catalog.SUPPORTED_RANGE}")
    return ValidateReport(load(manifests, version, env, Resolver.offline() if offline else None), version)
