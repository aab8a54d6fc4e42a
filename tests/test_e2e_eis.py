"""The `elastic` service (EIS, C10) end to end: the CLI against `reconciler emulator --eis`.

EIS endpoints are created like any external service's, but without an api_key (the cluster
authenticates to EIS); the server fills in what the planner must take as no change; the
preconfigured EIS endpoints (ids starting with `.`) are never planned for deletion.
"""

from __future__ import annotations

import pytest

from tests.e2e import MakeTool, actions, plan_json

SPARSE = """\
inference_id: my-elser
task_type: sparse_embedding
service: elastic
service_settings:
  model_id: elser_model_2
"""
CHAT = """\
inference_id: my-chat
task_type: chat_completion
service: elastic
service_settings:
  model_id: rainbow-sprinkles
"""
EMBED = """\
inference_id: my-embed
task_type: text_embedding
service: elastic
service_settings:
  model_id: jina-embeddings-v3
"""


@pytest.mark.parametrize("version", ["8.19.0", "9.1.0", "9.5.0"])
def test_eis_endpoints_apply_then_plan_nothing(make_tool: MakeTool, version: str) -> None:
    tool = make_tool("--eis", version=version)
    for name, text in (("sparse.yaml", SPARSE), ("chat.yaml", CHAT), ("embed.yaml", EMBED)):
        tool.write(name, text)
    assert tool("validate", "--es-version", version).code == 0
    planned = plan_json(tool)
    assert actions(planned) == {i: ("create", "new") for i in ("my-elser", "my-chat", "my-embed")}
    applied = tool("apply", "--auto-approve")
    assert applied.code == 0, applied
    assert {"my-elser", "my-chat", "my-embed"} <= tool.live_ids()
    live = {e["inference_id"]: e for e in tool.es("GET", "/_inference").json()["endpoints"]}
    # What the server filled in: chunking, measured dimensions, and (before 9.2) a rate limit.
    assert live["my-elser"]["chunking_settings"]["strategy"] == "sentence"
    assert live["my-embed"]["service_settings"]["dimensions"] > 0
    has_rate_limit = "rate_limit" in live["my-chat"]["service_settings"]
    assert has_rate_limit is (version != "9.5.0")
    again = plan_json(tool)
    assert not actions(again), again
    # The preconfigured EIS endpoints are listed as unmanaged, never as deletions.
    unmanaged = {u["inference_id"] for u in again.get("unmanaged", [])}
    assert ".elser-2-elastic" in unmanaged
    assert all(not c["inference_id"].startswith(".") for c in again["changes"])


def test_destroy_never_plans_the_preconfigured_eis_endpoints(make_tool: MakeTool) -> None:
    tool = make_tool("--eis")
    tool.write("sparse.yaml", SPARSE)
    assert tool("apply", "--auto-approve").code == 0
    destroy = plan_json(tool, "--destroy")
    assert actions(destroy) == {"my-elser": ("delete", "destroy")}, destroy
    assert tool("apply", "--auto-approve", "--destroy").code == 0
    ids = {e["inference_id"] for e in tool.es("GET", "/_inference").json()["endpoints"]}
    assert {".elser-2-elastic", ".jina-embeddings-v5-text-small"} <= ids
    assert "my-elser" not in ids


def test_an_eis_manifest_with_an_api_key_or_rate_limit_is_refused_where_the_server_would(
    make_tool: MakeTool,
) -> None:
    tool = make_tool("--eis")
    tool.write(
        "sparse.yaml", SPARSE + "  api_key: ${OPENAI_API_KEY}\n  rate_limit: {requests_per_minute: 10}\n"
    )
    result = tool("validate")
    assert result.code == 1, result
    assert "sparse.yaml:6: service_settings.api_key: unknown setting of the elastic service" in result.stdout
    assert "sparse.yaml:7: service_settings.rate_limit: unknown setting" in result.stdout
    assert tool("apply", "--auto-approve").code == 1
    assert tool.writes() == 0


def test_without_eis_the_cluster_refuses_elastic_endpoints(make_tool: MakeTool) -> None:
    tool = make_tool()
    tool.write("sparse.yaml", SPARSE)
    result = tool("apply", "--auto-approve")
    assert result.code == 1
    assert "The [elastic] service does not support task type [sparse_embedding]" in result.stderr


def test_an_eis_endpoint_made_elsewhere_is_imported_without_the_server_defaults(make_tool: MakeTool) -> None:
    tool = make_tool("--eis", version="8.19.0")
    body = {"service": "elastic", "service_settings": {"model_id": "rainbow-sprinkles"}}
    assert tool.es("PUT", "/_inference/chat_completion/chat", json=body).status_code == 200
    assert tool("import", "--all").code == 0
    written = (tool.manifests / "chat.yaml").read_text()
    assert "rate_limit" not in written  # the server's default, not the user's setting
    assert "api_key" not in written
    assert not list(tool.manifests.glob(".*.yaml"))  # no preconfigured endpoint imported
    assert actions(plan_json(tool)) == {"chat": ("adopt", "not-in-state")}
    assert tool("apply", "--auto-approve").code == 0
    assert not actions(plan_json(tool))
