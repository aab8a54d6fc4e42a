"""The emulated cluster's state and options, and its persistence under `--data-dir`.

One `Cluster` holds everything the emulated APIs read and write: inference endpoints (secrets
kept only as digests: the emulator has no use for a secret's value, and never holds one), trained
model deployments, ingest pipelines, indices and their documents. With a data directory the whole
state is written to one JSON file, atomically, after every change, and read back at start.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.catalog import (
    DEFAULT_VERSION,
    SERVICES,
    Version,
    default_elser_model,
    deployment_id,
    supported,
)
from reconciler.emulator.ml import ALWAYS_INSTALLED, Deployment, MlSettings

STATE_FILE = "cluster.json"


@dataclass(frozen=True)
class EmulatorConfig:
    """Every option of `reconciler emulator` (see DESIGN.md §8 for the command-line names)."""

    version: str = str(DEFAULT_VERSION)
    cluster_name: str = "reconciler-emulator"
    latency_ms: float = 0.0
    fault_rate: float = 0.0
    fault_seed: int = 0
    lost_response_rate: float = 0.0
    retry_after: float = 1.0
    deploy_seconds: float = 5.0
    ml_capacity: int | None = None
    ml_autoscaling: bool = True
    ml_scale_up_seconds: float | None = None
    max_put_wait: float = 30.0
    fail_models: tuple[str, ...] = ()
    api_key: str | None = None
    data_dir: Path | None = None
    eis: bool = False
    linux_x86: bool = True
    # Models uploaded with eland, as {model_id: task_type} (text_embedding, sparse_embedding, rerank).
    trained_models: tuple[tuple[str, str], ...] = ()

    def parsed_version(self) -> Version:
        version = Version.parse(self.version)
        if not supported(version):
            raise ValueError(
                f"the emulator speaks Elasticsearch 8.16.x to 8.19.x and 9.0.x to 9.5.x, not {self.version}"
            )
        return version


@dataclass
class Endpoint:
    """A stored inference endpoint, as GET prints it, plus the digests of its secrets."""

    inference_id: str
    task_type: str
    service: str
    service_settings: dict[str, Any]
    task_settings: dict[str, Any] = field(default_factory=dict)
    chunking_settings: dict[str, Any] | None = None
    secret_digests: dict[str, str] = field(default_factory=dict)
    preconfigured: bool = False

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Endpoint:
        return cls(**data)

    @property
    def deploys_model(self) -> bool:
        """Whether a trained-model deployment serves it (EIS services are not in the catalog)."""
        found = SERVICES.get(self.service)
        return found is not None and found.deploys_model

    @property
    def deployment_id(self) -> str:
        return deployment_id({"inference_id": self.inference_id, "service_settings": self.service_settings})


@dataclass
class Document:
    source: dict[str, Any]
    seq_no: int
    primary_term: int
    version: int


@dataclass
class Index:
    name: str
    uuid: str
    mappings: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    docs: dict[str, Document] = field(default_factory=dict)
    next_seq_no: int = 0

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["docs"] = {k: dict(v.__dict__) for k, v in self.docs.items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Index:
        docs = {k: Document(**v) for k, v in data.pop("docs").items()}
        return cls(**data, docs=docs)


def secret_digest(value: Any) -> str:
    """What the emulator keeps of a secret: enough to tell two values apart, nothing more."""
    text = json.dumps(value, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def new_uuid() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")[:22]


class Cluster:
    """All state of one emulated cluster."""

    def __init__(self, config: EmulatorConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.version = config.parsed_version()
        self._clock = clock
        self.offset = 0.0
        self.ml = MlSettings(
            deploy_seconds=config.deploy_seconds,
            capacity=config.ml_capacity,
            autoscaling=config.ml_autoscaling,
            fail_models=frozenset(config.fail_models),
            scale_up_seconds=config.ml_scale_up_seconds,
        )
        self.cluster_uuid = new_uuid()
        self.endpoints: dict[str, Endpoint] = {}
        self.deployments: dict[str, Deployment] = {}
        self.models: set[str] = set(ALWAYS_INSTALLED) | {model for model, _ in config.trained_models}
        self.eland_models: dict[str, str] = dict(config.trained_models)
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.indices: dict[str, Index] = {}
        if config.data_dir is not None:
            self._load(config.data_dir / STATE_FILE)

    def now(self) -> float:
        """Wall-clock seconds, moved forward by `advance` (tests skip waiting with it)."""
        return self._clock() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    @property
    def elser_model(self) -> str:
        return default_elser_model(self.config.linux_x86)

    # -- persistence -------------------------------------------------------------------------

    def save(self) -> None:
        if self.config.data_dir is None:
            return
        data = {
            "cluster_uuid": self.cluster_uuid,
            "offset": self.offset,
            "endpoints": {k: v.to_json() for k, v in self.endpoints.items()},
            "deployments": {k: v.to_json() for k, v in self.deployments.items()},
            "models": sorted(self.models),
            "pipelines": self.pipelines,
            "indices": {k: v.to_json() for k, v in self.indices.items()},
        }
        directory = self.config.data_dir
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".cluster-", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, directory / STATE_FILE)

    def _load(self, path: Path) -> None:
        if not path.exists():
            return
        data = json.loads(path.read_text())
        self.cluster_uuid = data["cluster_uuid"]
        self.offset = data["offset"]
        self.endpoints = {k: Endpoint.from_json(v) for k, v in data["endpoints"].items()}
        self.deployments = {k: Deployment.from_json(v) for k, v in data["deployments"].items()}
        self.models |= set(data["models"])  # and the --trained-model ones of this start
        self.pipelines = data["pipelines"]
        self.indices = {k: Index.from_json(v) for k, v in data["indices"].items()}
