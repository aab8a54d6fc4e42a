"""Environments end to end: the example project (examples/environments) against three emulators of
different versions (8.19, 9.1, 9.5) over real sockets, and a fourth environment whose cluster is
stopped; plan, apply per environment, drift across all, the combined outputs; bad project files and
bad patches stop everything with located errors, and nothing is sent to any cluster."""

from __future__ import annotations

import json
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler import project
from tests.conftest import start_emulator, stop_emulator
from tests.e2e import REPO, MakeTool, Run, Tool

EXAMPLE = REPO / "examples" / "environments"
CANARY = "canary-0c1f"  # in every secret and key: none may reach an output (see conftest)
VERSIONS = {"dev": "8.19.0", "staging": "9.1.0", "prod": "9.5.0"}
EDGE = """\
  edge:
    connection:
      url_env: EDGE_ES_URL
      api_key_env: EDGE_ES_API_KEY
"""


@dataclass
class Fleet:
    """The example project copied to a folder, an emulator per environment, and the CLI."""

    root: Path
    tools: dict[str, Tool]
    env: dict[str, str]

    @property
    def project(self) -> Path:
        return self.root / "reconciler.yaml"

    def __call__(self, *args: str) -> Run:
        run = self.tools["dev"](*args, env=self.env)
        assert CANARY not in run.stdout + run.stderr, run
        return run

    def writes(self) -> dict[str, int]:
        """Requests that change something, per cluster (a search is a POST that reads)."""
        return {
            name: sum(
                r["count"]
                for r in tool.requests()["requests"]
                if r["method"] in ("PUT", "POST", "DELETE") and not r["path"].endswith("/_search")
            )
            for name, tool in self.tools.items()
        }

    def requests(self) -> dict[str, int]:
        return {name: int(tool.requests()["total"]) for name, tool in self.tools.items()}

    def reset_requests(self) -> None:
        for tool in self.tools.values():
            tool.reset_requests()


@pytest.fixture
def stopped_url() -> str:
    """The URL of an emulator that was started and stopped: nothing listens there any more."""
    served = start_emulator()
    stop_emulator(served)
    return served.url


@pytest.fixture
def fleet(make_tool: MakeTool, tmp_path: Path, stopped_url: str) -> Fleet:
    root = tmp_path / "project"
    shutil.copytree(EXAMPLE, root)
    (root / "reconciler.yaml").write_text((root / "reconciler.yaml").read_text() + EDGE)
    tools = {name: make_tool(version=version) for name, version in VERSIONS.items()}
    env = {f"{name.upper()}_ES_URL": tool.url for name, tool in tools.items()}
    env |= {f"{name.upper()}_ES_API_KEY": f"{CANARY}-{name}" for name in [*VERSIONS, "edge"]}
    env |= {"EDGE_ES_URL": stopped_url, "RECONCILER_PROJECT": str(root / "reconciler.yaml")}
    env |= {k: f"{CANARY}-{k.lower()}" for k in ("ANTHROPIC_API_KEY", "COHERE_API_KEY", "OPENAI_API_KEY")}
    return Fleet(root, tools, env)


def live(tool: Tool) -> set[str]:
    return tool.live_ids()


def test_plan_across_every_environment_reports_the_stopped_one_and_plans_the_others(fleet: Fleet) -> None:
    run = fleet("plan", "--all-envs", "--json")
    assert run.code == 1, run  # edge failed
    document = run.json()
    by_name = {e["environment"]: e for e in document["environments"]}
    assert list(by_name) == ["dev", "staging", "prod", "edge"]
    assert "cannot connect" in by_name["edge"]["error"]
    assert by_name["edge"]["exit_code"] == 1
    for name, version in VERSIONS.items():
        plan = by_name[name]["plan"]
        assert plan["environment"] == name
        assert plan["cluster"]["version"] == version
        assert by_name[name]["exit_code"] == 2
    creates = {n: {c["inference_id"] for c in by_name[n]["plan"]["changes"]} for n in VERSIONS}
    assert creates["dev"] == {"claude-completion", "e5-multilingual"}  # cohere excluded
    assert creates["staging"] == {"claude-completion", "cohere-rerank", "e5-multilingual"}
    assert creates["prod"] == creates["staging"] | {"openai-embeddings"}
    dev_claude = next(
        c for c in by_name["dev"]["plan"]["changes"] if c["inference_id"] == "claude-completion"
    )
    assert dev_claude["desired"]["service_settings"]["rate_limit"] == {"requests_per_minute": 10}
    assert document["exit_code"] == 1
    assert fleet.writes() == {"dev": 0, "staging": 0, "prod": 0}

    human = fleet("plan", "--all-envs")
    assert human.code == 1
    assert "=== edge: FAILED (" in human.stdout
    assert "=== prod: 4 create ===" in human.stdout
    assert human.stdout.index("Environments (4):\n  edge: FAILED") > 0


def test_apply_each_environment_then_drift_across_all(fleet: Fleet) -> None:
    for name in VERSIONS:
        run = fleet("apply", "--env", name, "--auto-approve")
        assert run.code == 0, run
    assert live(fleet.tools["dev"]) == {"claude-completion", "e5-multilingual"}
    assert live(fleet.tools["prod"]) == {
        "claude-completion",
        "cohere-rerank",
        "e5-multilingual",
        "openai-embeddings",
    }
    prod_e5 = fleet.tools["prod"].es("GET", "/_inference/e5-multilingual").json()["endpoints"][0]
    assert prod_e5["service_settings"]["adaptive_allocations"]["enabled"] is True
    # prod's state is in its workspace `production`; each environment has its own.
    state = fleet("state", "list", "--env", "prod")
    assert state.code == 0, state
    assert "openai-embeddings" in state.stdout

    quiet = fleet("plan", "--all-envs")
    assert quiet.code == 1  # edge still down
    assert quiet.stdout.count("no changes") == 6  # three headings, three summary lines

    fleet.tools["staging"].es(
        "PUT", "/_inference/rerank/cohere-rerank/_update", json={"task_settings": {"top_n": 2}}
    )
    drift = fleet("drift", "--all-envs", "--markdown")
    assert drift.code == 1, drift
    sections = [line for line in drift.stdout.splitlines() if line.startswith("## ")]
    assert sections == ["## edge", "## staging", "## dev", "## prod"]  # failures, then drift, then none
    assert "**staging: 1 drift finding(s)**" in drift.stdout

    (fleet.project).write_text(fleet.project.read_text().replace(EDGE, ""))
    assert fleet("drift", "--all-envs").code == 2
    fleet.tools["staging"].es(
        "PUT", "/_inference/rerank/cohere-rerank/_update", json={"task_settings": {"top_n": 5}}
    )
    assert fleet("drift", "--all-envs", "--json").json()["exit_code"] == 0


def test_the_combined_markdown_puts_destructive_changes_first(fleet: Fleet) -> None:
    fleet.project.write_text(fleet.project.read_text().replace(EDGE, ""))
    for name in VERSIONS:
        assert fleet("apply", "--env", name, "--auto-approve").code == 0
    (fleet.root / "overlays/staging/drop.yaml").write_text("exclude: [cohere-rerank]\n")
    (fleet.root / "overlays/prod/claude.yaml").write_text(
        "patch: claude-completion\ntask_settings: {max_tokens: 512}\n"
    )
    run = fleet("plan", "--all-envs", "--markdown")
    assert run.code == 2, run
    sections = [line for line in run.stdout.splitlines() if line.startswith("## ")]
    assert sections == ["## staging :warning: destroys or replaces", "## prod", "## dev"]
    assert "cohere-rerank" in run.stdout.split("## prod")[0]
    assert "**prod: 1 update**" in run.stdout


def test_a_plan_file_applies_only_in_the_environment_it_was_made_for(fleet: Fleet) -> None:
    saved = fleet.root / "prod.plan.json"
    assert fleet("plan", "--env", "prod", "--out", str(saved)).code == 0
    assert json.loads(saved.read_text())["environment"] == "prod"
    fleet.reset_requests()
    elsewhere = fleet("apply", str(saved), "--env", "dev")
    assert elsewhere.code == 1
    assert elsewhere.stderr.strip() == (
        f"Error: {saved}: the plan was made with --env prod, this apply has --env dev: refused before any change"
    )
    nowhere = fleet("apply", str(saved))
    assert "the plan was made with --env prod, this apply has no --env" in nowhere.stderr
    assert fleet.writes() == {"dev": 0, "staging": 0, "prod": 0}
    assert fleet.requests()["prod"] == 0
    assert fleet("apply", str(saved), "--env", "prod").code == 0
    assert "openai-embeddings" in live(fleet.tools["prod"])

    plain = fleet.tools["dev"]
    plain.write("e5.yaml", (EXAMPLE / "manifests/e5.yaml").read_text())
    unscoped = plain.root / "plain.plan.json"
    assert plain("plan", "--out", str(unscoped)).code == 0
    assert "environment" not in json.loads(unscoped.read_text())
    refused = fleet("apply", str(unscoped), "--env", "dev")
    assert "the plan was made with no --env, this apply has --env dev" in refused.stderr


def test_a_cluster_of_another_version_than_expected_is_refused_naming_the_environment(fleet: Fleet) -> None:
    fleet.project.write_text(fleet.project.read_text().replace('es_version: "8.19"', 'es_version: "9.5"'))
    fleet.reset_requests()
    run = fleet("apply", "--env", "dev", "--auto-approve")
    assert run.code == 1
    assert (
        f"environment dev expects Elasticsearch 9.5 ({fleet.project}:6) but the cluster reports 8.19.0"
        in run.stderr
    )
    assert fleet.requests()["dev"] == 1  # GET / only
    planned = fleet("plan", "--all-envs", "--json").json()
    errors = {e["environment"]: e.get("error") for e in planned["environments"]}
    assert "expects Elasticsearch 9.5" in str(errors["dev"])
    assert errors["staging"] is None


def test_a_bad_project_file_is_located_and_nothing_is_sent(fleet: Fleet) -> None:
    text = fleet.project.read_text()
    bad = text.replace("api_key_env: PROD_ES_API_KEY", f"api_key_env: {CANARY}-literal").replace(
        "    overlay: overlays/dev\n", "    overlay: overlays/nowhere\n    colour: blue\n"
    )
    fleet.project.write_text(bad)
    for args in (("plan", "--all-envs"), ("plan", "--env", "staging"), ("apply", "--env", "dev", "--auto-approve"),
                 ("drift", "--all-envs"), ("render", "--env", "prod"), ("validate", "--env", "dev")):  # fmt: skip
        run = fleet(*args)
        assert run.code == 1, (args, run)
        assert f"{fleet.project}:12: environments.dev.colour: unknown key" in run.stderr, run
        assert f"{fleet.project}:22: environments.prod.connection.api_key_env: must be the name" in run.stderr
        assert "2 error(s) in the project file" in run.stderr
    assert fleet.requests() == {"dev": 0, "staging": 0, "prod": 0}


def test_a_bad_patch_is_located_and_nothing_is_sent_to_any_cluster(fleet: Fleet) -> None:
    (fleet.root / "overlays/prod/bad.yaml").write_text(
        "patch: claude-completion\ntask_settings:\n  max_tokens: many\n---\npatch: e6-multilingual\n"
    )
    fleet.reset_requests()
    run = fleet("apply", "--env", "prod", "--auto-approve")
    assert run.code == 1
    assert (
        f"{fleet.root}/overlays/prod/bad.yaml:5: patch: no base manifest has the inference_id e6-multilingual"
        in run.stderr
    )
    rendered = fleet("render", "--env", "prod")
    assert rendered.code == 1
    assert "bad.yaml:5: patch:" in rendered.stderr
    assert rendered.stdout == ""
    (fleet.root / "overlays/prod/bad.yaml").write_text(
        "patch: claude-completion\ntask_settings:\n  max_tokens: many\n"
    )
    validated = fleet("validate", "--env", "prod")
    assert validated.code == 1
    assert (
        f"{fleet.root}/overlays/prod/bad.yaml:3: task_settings.max_tokens:"
        in validated.stdout + validated.stderr
    )
    planned = fleet("plan", "--all-envs", "--json").json()
    errors = {e["environment"]: e.get("errors") for e in planned["environments"]}
    assert any("overlays/prod/bad.yaml:3: task_settings.max_tokens" in e for e in errors["prod"])
    assert errors["dev"] is None
    assert fleet.writes() == {"dev": 0, "staging": 0, "prod": 0}


def test_a_slow_cluster_is_reported_without_holding_up_the_others(fleet: Fleet) -> None:
    fleet.project.write_text(fleet.project.read_text().replace(EDGE, ""))
    fleet.tools["prod"].es("PUT", "/_emulator/faults", json={"latency_ms": 5000})
    run = fleet("plan", "--all-envs", "--env-timeout", "1", "--json")
    by_name = {e["environment"]: e for e in run.json()["environments"]}
    assert by_name["prod"]["error"] == "no answer within 1s"
    assert by_name["dev"]["exit_code"] == by_name["staging"]["exit_code"] == 2
    assert run.code == 1


def test_render_and_diff_envs_show_what_an_environment_gets_with_secrets_as_references(fleet: Fleet) -> None:
    run = fleet("render", "--env", "prod")
    assert run.code == 0, run
    assert "# environment prod; from manifests/e5.yaml, overlays/prod/e5.yaml" in run.stdout.replace(
        f"{fleet.root}/", ""
    )
    assert "api_key: ${OPENAI_API_KEY}" in run.stdout
    assert "num_allocations" not in run.stdout
    diff = fleet("diff-envs", "staging", "prod")
    assert diff.code == 2
    assert diff.stdout.splitlines() == [
        "How prod differs from staging:",
        "  e5-multilingual service_settings.adaptive_allocations.enabled: (not set in staging) -> true",
        "  e5-multilingual service_settings.adaptive_allocations.max_number_of_allocations: (not set in staging) -> 4",
        "  e5-multilingual service_settings.adaptive_allocations.min_number_of_allocations: (not set in staging) -> 1",
        "  e5-multilingual service_settings.num_allocations: 1 -> (not set in prod)",
        "  openai-embeddings: only in prod",
    ]
    rows = fleet("diff-envs", "dev", "staging", "--json").json()["differences"]
    cohere = next(row for row in rows if row["inference_id"] == "cohere-rerank")
    assert cohere == {
        "inference_id": "cohere-rerank",
        "path": None,
        "left": None,
        "right": cohere["right"],
        "only_in": "staging",
    }
    assert cohere["right"]["service_settings"]["api_key"] == "${COHERE_API_KEY}"
    assert fleet("diff-envs", "staging", "staging").code == 0
    assert fleet.requests() == {"dev": 0, "staging": 0, "prod": 0}


def test_a_secret_in_a_plan_file_and_the_states_of_every_environment_stays_a_reference(fleet: Fleet) -> None:
    fleet.project.write_text(fleet.project.read_text().replace(EDGE, ""))
    saved = fleet.root / "dev.plan.json"
    assert fleet("plan", "--env", "dev", "--out", str(saved)).code == 0
    for name in VERSIONS:
        assert fleet("apply", "--env", name, "--auto-approve", "--log-format", "json").code == 0
    for args in (
        ("plan", "--all-envs", "--markdown"),
        ("drift", "--all-envs", "--json"),
        ("status", "--env", "prod"),
    ):
        assert fleet(*args).code == 0
    assert CANARY not in saved.read_text()
    for name, tool in fleet.tools.items():
        workspace = "production" if name == "prod" else name  # prod's workspace is named in the project
        document = tool.es("GET", f"/reconciler-state/_doc/state-{workspace}")
        assert document.status_code == 200
        assert "claude-completion" in document.text
        assert CANARY not in document.text


# -- the promotion workflow (examples/github/promotion.yml) -------------------------------------

PROMOTION = REPO / "examples" / "github" / "promotion.yml"


def commands(job: dict[str, Any]) -> list[list[str]]:
    """The `reconciler ...` command lines of a job's run steps, up to a shell redirection."""
    found = []
    for step in job["steps"]:
        for line in str(step.get("run", "")).splitlines():
            words = shlex.split(line.split(">")[0], comments=True)
            if words[:1] == ["reconciler"]:
                found.append(words[1:])
    return found


def test_the_promotion_workflow_applies_dev_then_staging_then_prod_each_with_its_own_key() -> None:
    jobs = yaml.load(PROMOTION.read_text(), Loader=yaml.BaseLoader)["jobs"]
    chain = [
        (name, job.get("environment"), job.get("needs"))
        for name, job in jobs.items()
        if name.startswith("apply")
    ]
    assert chain == [
        ("apply-dev", "dev", None),
        ("apply-staging", "staging", "apply-dev"),
        ("apply-prod", "prod", "apply-staging"),
    ]
    variables = {
        name: (env.url_env, env.api_key_env)
        for name, env in project.load(EXAMPLE / "reconciler.yaml").environments.items()
    }
    for name, environment, _ in chain:
        given = {k: v for step in jobs[name]["steps"] for k, v in step.get("env", {}).items()}
        url, key = variables[environment]
        assert given[key] == "${{ secrets.ES_API_KEY }}"  # the GitHub environment's own secret
        assert given[url] == f"${{{{ secrets.{url} }}}}"
        assert not {k for k in given if k.endswith("_ES_API_KEY")} - {key}, (
            f"{name} holds another cluster's key"
        )
    assert commands(jobs["plan"]) == [["plan", "--all-envs", "--markdown"]]
    assert jobs["plan"]["permissions"] == {"contents": "read", "pull-requests": "write"}


def test_the_promotion_workflows_commands_work_in_order(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.project.write_text(fleet.project.read_text().replace(EDGE, ""))
    monkeypatch.chdir(fleet.root)
    jobs = yaml.load(PROMOTION.read_text(), Loader=yaml.BaseLoader)["jobs"]
    assert fleet(*commands(jobs["plan"])[0]).code == 2
    for name in ("apply-dev", "apply-staging", "apply-prod"):
        for words in commands(jobs[name]):
            run = fleet(*words)
            assert run.code == 0, (words, run)
    assert fleet(*commands(jobs["plan"])[0]).code == 0
    for environment in VERSIONS:
        drift = [w for w in commands(jobs["drift"])[0] if w != "--markdown"]
        assert fleet(*drift, "--env", environment).code == 0


def test_a_project_file_naming_a_provider_key_as_the_url_never_shows_it(fleet: Fleet) -> None:
    """The attack: a pull request points an environment's URL (or key) at a secret's variable, so
    that the plan's error message prints the secret. Refused by the variable's name, nothing sent."""
    fleet.project.write_text(
        fleet.project.read_text().replace("url_env: DEV_ES_URL", "url_env: ANTHROPIC_API_KEY")
    )
    for args in (("plan", "--env", "dev"), ("plan", "--all-envs"), ("render", "--env", "dev")):
        run = fleet(*args)  # asserts no canary in the output
        assert run.code == 1
        assert "environments.dev.connection.url_env: must name a variable ending in _URL" in run.stderr
    fleet.env["DEV_ES_URL"] = fleet.env["ANTHROPIC_API_KEY"]  # a URL variable that holds something else
    fleet.project.write_text(
        fleet.project.read_text().replace("url_env: ANTHROPIC_API_KEY", "url_env: DEV_ES_URL")
    )
    run = fleet("plan", "--all-envs", "--json")
    errors = {e["environment"]: e.get("error") for e in run.json()["environments"]}
    assert (
        errors["dev"] == f"--env dev: the variable DEV_ES_URL ({fleet.project}:6) does not hold http(s) URLs"
    )
    assert fleet("plan", "--env", "dev").code == 1
    assert fleet.requests()["dev"] == 0
