"""Fault injection and request accounting, for tests and benchmarks of the tool's resilience.

- latency added to every request;
- a seeded share of requests answered 429 (with `Retry-After`) or 503 without being applied;
- a seeded share of writes applied but whose response is lost (the connection drops);
- a count of the requests received, by method and path.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from reconciler.emulator.errors import EsError

WRITE_METHODS = frozenset({"PUT", "POST", "DELETE"})


class LostResponseError(ConnectionResetError):
    """Raised after a write was applied, to drop its response as a broken connection would."""


@dataclass
class Faults:
    latency_ms: float = 0.0
    fault_rate: float = 0.0
    lost_response_rate: float = 0.0
    retry_after: float = 1.0
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def configure(self, settings: dict[str, Any]) -> None:
        for name in ("latency_ms", "fault_rate", "lost_response_rate", "retry_after"):
            if name in settings:
                setattr(self, name, float(settings[name]))
        if "seed" in settings:
            self.seed = int(settings["seed"])
            self._rng = random.Random(self.seed)

    def rejection(self) -> EsError | None:
        """A transient failure to answer instead of applying the request, or None."""
        if self.fault_rate <= 0 or self._rng.random() >= self.fault_rate:
            return None
        if self._rng.random() < 0.5:
            return EsError(
                429,
                "es_rejected_execution_exception",
                "rejected execution of emulated request: queue capacity exceeded (fault injection)",
                headers={"Retry-After": _seconds(self.retry_after)},
            )
        return EsError(503, "master_not_discovered_exception", "emulated unavailability (fault injection)")

    def lose_response(self, method: str) -> bool:
        return (
            method in WRITE_METHODS
            and self.lost_response_rate > 0
            and self._rng.random() < self.lost_response_rate
        )


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass
class RequestLog:
    """Requests received (faulted ones included), by method and path; readable by tests."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def record(self, method: str, path: str) -> None:
        self.counts[(method, path)] += 1

    def total(self, method: str | None = None, prefix: str = "") -> int:
        return sum(
            n for (m, p), n in self.counts.items() if (method is None or m == method) and p.startswith(prefix)
        )

    def writes(self) -> int:
        return sum(n for (m, _), n in self.counts.items() if m in WRITE_METHODS)

    def reset(self) -> None:
        self.counts.clear()

    def to_json(self) -> dict[str, Any]:
        by_method: Counter[str] = Counter()
        for (method, _), n in self.counts.items():
            by_method[method] += n
        return {
            "total": self.total(),
            "by_method": dict(by_method),
            "requests": [{"method": m, "path": p, "count": n} for (m, p), n in sorted(self.counts.items())],
        }
