"""Settling the intents a killed run left (`session.settle`): each case, from the state and the
endpoints the cluster lists, without I/O."""

from __future__ import annotations

import dataclasses
from typing import Any

from reconciler.session import settle
from reconciler.state import DONE, DROPPED, FORGOTTEN, INTENT, EndpointRecord, Entry, State, replay

REQUESTED = {
    "task_type": "completion",
    "service": "anthropic",
    "service_settings": {"model_id": "m"},
    "task_settings": {"max_tokens": 8},
}
INTENDED = EndpointRecord(
    "completion", "anthropic", REQUESTED, {}, {"api_key": "hmac-sha256:aa"}, {"prevent_destroy": False}
)


def live(max_tokens: int = 8) -> dict[str, Any]:
    return {
        "inference_id": "x",
        "task_type": "completion",
        "service": "anthropic",
        "service_settings": {"model_id": "m", "rate_limit": {"requests_per_minute": 50}},
        "task_settings": {"max_tokens": max_tokens},
    }


def pending(op: str, prior: EndpointRecord | None = None) -> State:
    state = State.new("default")
    if prior is not None:
        state = state.with_endpoint("x", prior)
    return replay(state, [Entry(INTENT, "x", op, INTENDED if op == "put" else None)])


def test_an_intended_create_that_reads_back_as_asked_is_recorded() -> None:
    state, entries, notes = settle(pending("put"), {"x": live()})
    assert [e.kind for e in entries] == [DONE]
    record = state.endpoints["x"]
    assert record.secret_digests == INTENDED.secret_digests  # the secret went with the create
    assert record.applied["service_settings"]["rate_limit"] == {"requests_per_minute": 50}  # as echoed
    assert not state.intents
    assert not notes


def test_an_intended_create_that_never_arrived_is_dropped() -> None:
    state, entries, notes = settle(pending("put"), {})
    assert [e.kind for e in entries] == [DROPPED]
    assert "x" not in state.endpoints
    assert not state.intents
    assert not notes


def test_an_endpoint_that_reads_back_otherwise_is_recorded_with_its_secrets_unknown() -> None:
    state, entries, notes = settle(pending("put"), {"x": live(max_tokens=3)})
    assert [e.kind for e in entries] == [DONE]
    assert state.endpoints["x"].secret_digests == {}  # not known to be ours: sent again next apply
    assert state.endpoints["x"].applied["task_settings"] == {"max_tokens": 3}
    (note,) = notes
    assert note.startswith("x: ")


def test_an_update_is_recorded_only_when_it_shows() -> None:
    before = dataclasses.replace(
        INTENDED,
        requested={**REQUESTED, "task_settings": {"max_tokens": 5}},
        secret_digests={"api_key": "old"},
    )
    arrived, _, _ = settle(pending("put", before), {"x": live()})
    assert arrived.endpoints["x"].requested == REQUESTED
    # Only the secret changed: the cluster reads back the same either way, so the record before
    # stays (its old digest) and the next plan sends the secret again.
    rotation = dataclasses.replace(before, requested=REQUESTED)
    unknown, entries, _ = settle(pending("put", rotation), {"x": live()})
    assert [e.kind for e in entries] == [DROPPED]
    assert unknown.endpoints["x"] == rotation


def test_a_delete_is_forgotten_once_the_endpoint_is_gone() -> None:
    gone, entries, _ = settle(pending("delete", INTENDED), {})
    assert [e.kind for e in entries] == [FORGOTTEN]
    assert "x" not in gone.endpoints
    kept, entries, _ = settle(pending("delete", INTENDED), {"x": live()})
    assert [e.kind for e in entries] == [DROPPED]
    assert kept.endpoints["x"] == INTENDED
    assert not kept.intents


def test_settling_is_stored_as_the_entries_it_returns() -> None:
    state = pending("put")
    settled, entries, _ = settle(state, {"x": live()})
    assert replay(state, entries) == settled
