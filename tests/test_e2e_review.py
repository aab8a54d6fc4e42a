"""A plan as a reviewer reads it, over a real socket: destructive changes first, defaults marked."""

from __future__ import annotations

from tests.e2e import MakeTool, anthropic


def test_the_markdown_plan_puts_deletes_first_and_marks_what_the_server_fills(make_tool: MakeTool) -> None:
    tool = make_tool()
    tool.write("old.yaml", anthropic("old"))
    assert tool("apply", "--auto-approve").code == 0
    tool.remove("old.yaml")
    for i in range(30):
        tool.write(f"new{i:02}.yaml", anthropic(f"new{i:02}"))
    shown = tool("plan", "--markdown")
    assert shown.code == 0, shown
    text = shown.stdout
    assert text.startswith(
        "### reconciler plan\n\n**Plan: 30 to create, 0 to update, 0 to replace, 1 to delete.**"
    )
    assert "Plan for workspace default, cluster 127.0.0.1:" in text
    assert "(reconciler-emulator / " in text  # the cluster's name and uuid, from GET /
    assert "| `-` delete | 1 |\n| `+` create | 30 |\n" in text
    assert text.index("<b>old</b> will be deleted") < text.index("<b>new00</b>")
    # Asked for: the model and max_tokens; filled by the server: the default rate limit.
    assert '+ service_settings.model_id = "claude-3-5-sonnet-20240620"\n' in text
    assert "+ task_settings.max_tokens = 64\n" in text
    assert "+ service_settings.rate_limit.requests_per_minute = 50  (default)\n" in text
    human = tool("plan").stdout
    assert human.index("# old will be deleted") < human.index("# new00 will be created")
    assert "+ service_settings.rate_limit.requests_per_minute = 50  (default)" in human
