"""End to end, over a real socket: the update path by version. 8.16 to 8.18 take no PUT `timeout`;
on 8.16 to 9.3 an `_update` resets chunking_settings (C5), so one apply must still converge;
`validate --es-version` knows which services each version has."""

from __future__ import annotations

from tests.e2e import E5, MakeTool, anthropic, plan_json

EMBEDDING = """\
inference_id: emb
task_type: text_embedding
service: openai
service_settings:
  api_key: ${{OPENAI_API_KEY}}
  model_id: text-embedding-3-small
task_settings:
  user: {user}
chunking_settings: {{strategy: word, max_chunk_size: 100, overlap: 20}}
"""
WORD_100_20 = {"strategy": "word", "max_chunk_size": 100, "overlap": 20}
OLD_DEFAULT = {"strategy": "word", "max_chunk_size": 250, "overlap": 100}


def test_an_update_that_would_reset_chunking_converges_in_one_apply(make_tool: MakeTool) -> None:
    tool = make_tool(version="8.19.3")
    tool.write("emb.yaml", EMBEDDING.format(user="alice"))
    assert tool("apply", "--auto-approve").code == 0
    tool.write("emb.yaml", EMBEDDING.format(user="bob"))
    planned = plan_json(tool)
    (change,) = [c for c in planned["changes"] if c["inference_id"] == "emb"]
    assert (change["action"], change["reasons"]) == (
        "replace",
        ["manifest-changed", "update-resets-chunking"],
    )
    assert [r["method"] for r in change["requests"]] == ["DELETE", "PUT"]
    applied = tool("apply", "--auto-approve")
    assert applied.code == 0, applied
    (live,) = tool.es("GET", "/_inference/emb").json()["endpoints"]
    assert (live["task_settings"], live["chunking_settings"]) == ({"user": "bob"}, WORD_100_20)
    again = tool("plan", "--detailed-exitcode")
    assert again.code == 0, again


def test_the_emulator_resets_chunking_on_update_as_8_19_does(make_tool: MakeTool) -> None:
    # What the planner avoids: an `_update` sent anyway leaves the old default behind, and the
    # next plan must put the manifest's chunking back (a replace, chunking being no `_update` field).
    tool = make_tool(version="8.19.3")
    tool.write("emb.yaml", EMBEDDING.format(user="alice"))
    assert tool("apply", "--auto-approve").code == 0
    updated = tool.es(
        "PUT", "/_inference/text_embedding/emb/_update", json={"task_settings": {"user": "eve"}}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["chunking_settings"] == OLD_DEFAULT
    (change,) = [c for c in plan_json(tool)["changes"] if c["inference_id"] == "emb"]
    assert (change["action"], change["reasons"]) == ("replace", ["drift"])
    assert {d["path"]: d["before"] for d in change["diff"]}["chunking_settings.max_chunk_size"] == 250


def test_8_16_updates_in_place_and_sends_no_put_timeout(make_tool: MakeTool) -> None:
    tool = make_tool(version="8.16.2")
    tool.write("claude.yaml", anthropic("claude", max_tokens=10))
    tool.write("e5.yaml", E5)
    created = tool("apply", "--auto-approve")
    assert created.code == 0, created  # the emulator, like 8.16, refuses a PUT `timeout`
    tool.write("claude.yaml", anthropic("claude", max_tokens=20))
    tool.write("e5.yaml", E5.replace("num_allocations: 2", "num_allocations: 1"))
    planned = {c["inference_id"]: c for c in plan_json(tool)["changes"]}
    assert planned["claude"]["action"] == "update"
    assert [r["path"] for r in planned["claude"]["requests"]] == ["/_inference/completion/claude/_update"]
    # e5 (sentence chunking) would lose its chunking to an `_update` (C5).
    assert (planned["e5"]["action"], planned["e5"]["reasons"]) == (
        "replace",
        ["manifest-changed", "update-resets-chunking"],
    )
    assert all(not r["query"] for c in planned.values() for r in c["requests"])
    assert tool("apply", "--auto-approve").code == 0
    (live,) = tool.es("GET", "/_inference/claude").json()["endpoints"]
    assert live["task_settings"] == {"max_tokens": 20}
    assert tool("plan", "--detailed-exitcode").code == 0


def test_validate_knows_the_services_of_each_version(make_tool: MakeTool) -> None:
    tool = make_tool(version="8.16.2")
    tool.write(
        "jina.yaml",
        "inference_id: jina\ntask_type: text_embedding\nservice: jinaai\n"
        "service_settings: {api_key: '${OPENAI_API_KEY}', model_id: jina-embeddings-v3}\n",
    )
    refused = tool("validate", "--es-version", "8.17")
    assert refused.code == 1
    assert "jina.yaml:3: service:" in refused.stdout + refused.stderr
    accepted = tool("validate", "--es-version", "8.18")
    assert accepted.code == 0, accepted
    assert "valid for Elasticsearch 8.18" in accepted.stdout
