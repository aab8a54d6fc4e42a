"""The takeover guard's pure part, the plan flag it travels in, and the search it reads with."""

from __future__ import annotations

import pytest

from reconciler import takeover
from reconciler.plan import Action, Change, Plan, PlanFormatError
from tests.e2e import MakeTool


def plan_of(*actions: tuple[str, Action]) -> Plan:
    changes = tuple(Change(i, "completion", "anthropic", a) for i, a in actions)
    return Plan(cluster={"url": "http://es:9200"}, state={"lineage": "l", "serial": 1}, changes=changes)


def test_every_acting_change_on_another_workspaces_endpoint_is_a_takeover() -> None:
    plan = plan_of(
        *((f"{a.value}-id", a) for a in Action),
    )
    managed = {f"{a.value}-id": ("blue", "green") for a in Action}
    found = takeover.conflicts(plan, managed)
    assert found == [
        f"{a}-id ({a}) is managed by workspace blue, green on this cluster"
        for a in ("create", "update", "replace", "delete", "adopt")
    ]  # no-op, read and forget change nothing another workspace relies on
    guarded = takeover.guarded(plan, managed, "default", allowed=False)
    assert guarded.state["workspace"] == "default"
    assert len(guarded.warnings) == 5
    assert guarded.allow_takeover is False
    assert takeover.refused(guarded, managed) is not None
    allowed = takeover.guarded(plan, managed, "default", allowed=True)
    assert takeover.refused(allowed, managed) is None
    assert takeover.refused(guarded, {}) is None


def test_the_flag_round_trips_in_format_2_and_is_absent_when_not_given() -> None:
    plan = takeover.guarded(plan_of(("a", Action.CREATE)), {}, "blue", allowed=True)
    again = Plan.loads(plan.dumps())
    assert again.allow_takeover is True
    assert again.state["workspace"] == "blue"
    assert '"allow_takeover"' not in plan_of(("a", Action.CREATE)).dumps()
    assert Plan.loads(plan_of(("a", Action.CREATE)).dumps()).allow_takeover is False
    with pytest.raises(PlanFormatError, match="allow_takeover must be true or false"):
        Plan.loads(plan.dumps().replace('"allow_takeover": true', '"allow_takeover": "yes"'))


def test_the_emulator_searches_state_documents_by_kind(make_tool: MakeTool) -> None:
    tool = make_tool()
    assert tool.es("POST", "/nowhere/_search", json={}).status_code == 404
    tool.es("PUT", "/idx/_doc/state-a", json={"kind": "state", "body": {}})
    tool.es("PUT", "/idx/_doc/lock-a", json={"kind": "lock", "body": {}})
    found = tool.es(
        "POST", "/idx/_search", json={"query": {"term": {"kind": "state"}}, "_source": False}
    ).json()
    assert [h["_id"] for h in found["hits"]["hits"]] == ["state-a"]
    assert "_source" not in found["hits"]["hits"][0]
    assert tool.es("POST", "/idx/_search", json={"query": {"fuzzy": {}}}).status_code == 400
    uri = tool.es("GET", "/idx/_search", params={"q": "kind:lock", "_source": "false"}).json()
    assert [h["_id"] for h in uri["hits"]["hits"]] == ["lock-a"]
