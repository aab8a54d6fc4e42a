"""C11 end to end: an Anthropic endpoint created with `top_k` behind the tool's back.

Elasticsearch stores top_k under top_p and can then no longer read the endpoint: its GET and
`GET /_inference/_all` answer 400. The tool refuses such a manifest in `validate`; against a
cluster that holds one anyway, it stops with Elasticsearch's reason and writes nothing.
"""

from __future__ import annotations

from tests.e2e import MakeTool, anthropic

POISON = {
    "service": "anthropic",
    "service_settings": {"api_key": "sk-ant-poison", "model_id": "claude-3-5-sonnet-20240620"},
    "task_settings": {"max_tokens": 8, "top_k": 3},
}


def test_a_top_k_manifest_is_refused_before_the_cluster_is_asked(make_tool: MakeTool) -> None:
    tool = make_tool()
    tool.write("a.yaml", anthropic("a", top_k=3))
    result = tool("validate")
    assert result.code == 1, result
    assert "a.yaml:5: task_settings.top_k: Elasticsearch stores top_k under the key top_p" in result.stdout
    assert "can then no longer read the endpoint back" in result.stdout
    assert tool("apply", "--auto-approve").code == 1
    assert tool.writes() == 0


def test_a_cluster_holding_an_unreadable_endpoint_stops_the_plan_with_the_reason(make_tool: MakeTool) -> None:
    tool = make_tool()
    tool.write("a.yaml", anthropic("a"))
    assert tool("apply", "--auto-approve").code == 0
    assert tool.es("PUT", "/_inference/completion/poison", json=POISON).status_code == 200
    tool.reset_requests()
    planned = tool("plan")
    assert planned.code == 1, planned
    assert (
        "GET /_inference/_all: 400 status_exception: field [top_p] is not of the expected type."
        in planned.stderr
    )
    assert tool("apply", "--auto-approve").code == 1
    assert tool.writes() == 0
    # Deleting the endpoint (DELETE does not parse it) makes the cluster readable again.
    assert tool.es("DELETE", "/_inference/poison").status_code == 200
    assert tool("plan", "--detailed-exitcode").code == 0
