"""The GitHub Action, the CI examples and the pre-commit hook: linted, checked for the safety rules
of docs/gitops.md, and run.

Every file in examples/github and examples/gitlab is linted: against the schemas check-jsonschema
ships (GitHub workflows and actions, GitLab CI), by zizmor (GitHub's security linter, offline) and
ShellCheck. The Action's steps (action/steps.sh) and the GitLab jobs run as the CI would run them,
against an emulator on a real socket, with a stand-in for `gh` (GitHub's API) and for GitLab's API
that keep comments, notes and artifacts in memory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e import REPO, SECRETS, Tool, anthropic

BIN = Path(sys.executable).parent
ACTION = REPO / "action.yml"
STEPS = REPO / "action" / "steps.sh"
HOOKS = REPO / ".pre-commit-hooks.yaml"
GITHUB = sorted(p for p in (REPO / "examples" / "github").iterdir() if p.suffix in (".yml", ".yaml"))
GITLAB = sorted(p for p in (REPO / "examples" / "gitlab").iterdir() if p.suffix in (".yml", ".yaml"))
PINNED = re.compile(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}")
# The examples name the Action by a placeholder for wherever a team takes this repository from.
PLACEHOLDER_ACTION = "example-org/es-inference-reconciler@"
MARKER = re.compile(r"<!-- reconciler-plan:workspace=(\S+) env=(\S+) -->")


def _run(args: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, check=False, **kwargs
    )


def _workflow(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(path.read_text(), Loader=yaml.BaseLoader)  # `on` stays a string
    return loaded


# -- linters ---------------------------------------------------------------------------------------


def test_there_are_examples_for_both() -> None:
    assert GITHUB, "examples/github holds no workflow"
    assert REPO / "examples" / "gitlab" / ".gitlab-ci.yml" in GITLAB


@pytest.mark.parametrize(
    ("schema", "files"),
    [("vendor.github-actions", [ACTION]), ("vendor.github-workflows", GITHUB), ("vendor.gitlab-ci", GITLAB)],
    ids=["action", "github", "gitlab"],
)
def test_the_schemas_of_github_and_gitlab_accept_them(schema: str, files: list[Path]) -> None:
    result = _run([BIN / "check-jsonschema", "--builtin-schema", schema, *files])
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_nothing(tmp_path: Path) -> None:
    """GitHub's security linter: template injection, excessive permissions, unpinned actions,
    credentials left in the checkout... Only the placeholder of the Action itself may be a tag."""
    config = tmp_path / "zizmor.yml"
    config.write_text(
        "rules:\n  unpinned-uses:\n    config:\n      policies:\n"
        '        "example-org/*": ref-pin\n        "*": hash-pin\n'
    )
    result = _run([BIN / "zizmor", "--offline", "--no-progress", "--config", config, ACTION, *GITHUB])
    assert result.returncode == 0, result.stdout + result.stderr


def _github_scripts() -> Iterator[tuple[str, str]]:
    for path in GITHUB:
        for name, job in _workflow(path)["jobs"].items():
            for number, step in enumerate(job.get("steps", [])):
                if "run" in step:
                    # GitHub's expressions are substituted before the shell runs.
                    yield f"{path.name}:{name}[{number}]", re.sub(r"\$\{\{.*?\}\}", "X", step["run"])


def _gitlab_scripts() -> Iterator[tuple[str, str]]:
    for path in GITLAB:
        for name, job in _gitlab_jobs(path).items():
            for part in ("before_script", "script"):
                if part in job:
                    yield f"{path.name}:{name}.{part}", "\n".join(job[part])


def test_shellcheck_finds_nothing(tmp_path: Path) -> None:
    scripts = [STEPS]
    for where, text in [*_github_scripts(), *_gitlab_scripts()]:
        script = tmp_path / f"{len(scripts)}.sh"
        script.write_text(f"#!/usr/bin/env bash\n# {where}\n{text}\n")
        scripts.append(script)
    # SC1091: `. ./reviewed.env` is written by the job itself.
    result = _run([BIN / "shellcheck", "--exclude", "SC1091", *scripts])
    assert result.returncode == 0, result.stdout


def test_the_gitlab_python_blocks_compile() -> None:
    blocks = [
        block for _, text in _gitlab_scripts() for block in re.findall(r"<<'PY'\n(.*?)\nPY", text, re.DOTALL)
    ]
    assert len(blocks) == 2
    for block in blocks:
        compile(block, ".gitlab-ci.yml", "exec")


# -- the safety rules of the GitHub workflows ------------------------------------------------------


def _jobs_running(workflow: dict[str, Any], command: str) -> dict[str, dict[str, Any]]:
    """The jobs that run `command` (plan, apply) through the Action or the command line."""

    def runs(step: dict[str, Any]) -> bool:
        if PLACEHOLDER_ACTION in step.get("uses", "") or step.get("uses", "") == "./":
            return bool(step.get("with", {}).get("command", "plan") == command)
        return bool(re.search(rf"\breconciler {command}\b", step.get("run", "")))

    return {name: job for name, job in workflow["jobs"].items() if any(runs(s) for s in job.get("steps", []))}


@pytest.mark.parametrize("path", GITHUB, ids=lambda p: p.name)
def test_github_permissions_are_per_job_and_least(path: Path) -> None:
    workflow = _workflow(path)
    assert workflow.get("permissions") == {}, "the workflow grants nothing: each job asks"
    for name, job in workflow["jobs"].items():
        assert "permissions" in job, f"{name}: no permissions of its own"
        writes = {scope for scope, level in job["permissions"].items() if level == "write"}
        assert writes <= {"pull-requests", "issues"}, f"{name} writes {writes}"


@pytest.mark.parametrize("path", GITHUB, ids=lambda p: p.name)
def test_github_an_apply_is_never_cancelled_or_dropped(path: Path) -> None:
    """GitHub keeps one pending run per concurrency group and cancels the pending one a newer run
    replaces, even with cancel-in-progress false: an apply's group must be its run's alone."""
    workflow = _workflow(path)
    assert "concurrency" not in workflow, "a workflow-level group would hold applies and the rest"
    applies = _jobs_running(workflow, "apply")
    assert applies, f"{path.name} applies nothing"
    groups = {name: job.get("concurrency", {}).get("group", "") for name, job in workflow["jobs"].items()}
    for name, job in applies.items():
        concurrency = job.get("concurrency")
        if concurrency is None:
            continue  # no group: nothing can cancel it; the state's lock orders applies
        assert concurrency["cancel-in-progress"] == "false", name
        assert re.search(r"github\.(sha|run_id)", concurrency["group"]), f"{name}: a group shared by runs"
        others = [other for other, group in groups.items() if other != name and group == concurrency["group"]]
        assert not others, f"{name} shares its group with {others}"


@pytest.mark.parametrize("path", GITHUB, ids=lambda p: p.name)
def test_github_pull_request_jobs_hold_no_key_that_writes(path: Path) -> None:
    workflow = _workflow(path)
    for name, job in workflow["jobs"].items():
        keys = [
            value
            for env in [job.get("env", {}), *(s.get("env", {}) for s in job.get("steps", []))]
            for variable, value in env.items()
            if re.fullmatch(r"(\w+_)?(ES|ELASTICSEARCH)_API_KEY", variable)  # DEV_ES_API_KEY: environments
        ]
        if "pull_request" in job.get("if", "") or "schedule" in job.get("if", ""):
            assert all("READ" in key for key in keys), f"{name}: {keys}"
        elif name in _jobs_running(workflow, "apply"):
            assert keys, f"{name}: no key"
            assert "environment" in job, f"{name}: its key must be an environment's secret"


@pytest.mark.parametrize("path", GITHUB, ids=lambda p: p.name)
def test_github_an_apply_is_followed_by_proof_that_the_cluster_matches(path: Path) -> None:
    """The Action's apply runs `plan --detailed-exitcode` itself; a job that runs `reconciler apply`
    must run it after, so that a job is green only when the cluster matches the manifests."""
    for name, job in _jobs_running(_workflow(path), "apply").items():
        script = "\n".join(step.get("run", "") for step in job["steps"])
        applied = [m.end() for m in re.finditer(r"\breconciler apply\b", script)]
        if applied:
            after = script[applied[-1] :]
            assert re.search(r"\breconciler plan\b[^\n]*--detailed-exitcode", after), f"{name}: no proof"


@pytest.mark.parametrize("path", GITHUB, ids=lambda p: p.name)
def test_github_actions_are_pinned_to_commits(path: Path) -> None:
    for name, job in _workflow(path)["jobs"].items():
        for step in job.get("steps", []):
            uses = step.get("uses")
            if uses and not uses.startswith((PLACEHOLDER_ACTION, "./")):
                assert PINNED.fullmatch(uses), f"{name}: {uses}"


# -- the Action's definition -----------------------------------------------------------------------


def _action() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(ACTION.read_text())
    return loaded


def _step_names() -> set[str]:
    """The steps action/steps.sh knows (its final `case`)."""
    (names,) = re.findall(r"^  ([\w |]+)\) \"\$1\" ;;$", STEPS.read_text(), re.MULTILINE)
    return {name.strip() for name in names.split("|")}


def test_the_action_uses_the_inputs_it_defines_and_only_those() -> None:
    action = _action()
    text = ACTION.read_text()
    referenced = set(re.findall(r"inputs\.([\w-]+)", text))
    assert referenced == set(action["inputs"]), referenced ^ set(action["inputs"])
    assert set(action["inputs"]) >= {
        "command", "manifests", "version", "workspace", "environment", "plan-file", "comment", "github-token"
    }  # fmt: skip


def test_the_action_steps_are_the_tested_script() -> None:
    steps = _action()["runs"]["steps"]
    ids = {step["id"] for step in steps if "id" in step}
    written = set(re.findall(r"output ([\w-]+) ", STEPS.read_text()))
    for step in steps:
        assert ("uses" in step) != ("run" in step), step
        if "uses" in step:
            assert PINNED.fullmatch(step["uses"]), step["uses"]
            continue
        assert step["shell"] == "bash", step["name"]
        assert "${{" not in step["run"], f"{step['name']}: inputs reach the shell through env only"
        called = re.fullmatch(r'"\$GITHUB_ACTION_PATH/action/steps.sh" (\w+)', step["run"])
        assert called is None or called[1] in _step_names(), step["run"]
        if called is None:
            assert step["run"].endswith("exit 1"), step["run"]
        for referenced, output in re.findall(r"steps\.([\w-]+)\.outputs\.([\w-]+)", json.dumps(step)):
            assert referenced in ids, f"{step['name']}: no step {referenced}"
            assert output in written, f"{step['name']}: steps.sh writes no output {output}"


def test_the_action_proves_the_cluster_matches_after_an_apply() -> None:
    runs = [step.get("run", "") for step in _action()["runs"]["steps"]]
    apply = runs.index('"$GITHUB_ACTION_PATH/action/steps.sh" apply')
    assert runs[-1] == '"$GITHUB_ACTION_PATH/action/steps.sh" verify'
    assert apply < len(runs) - 1
    assert "reconciler plan --detailed-exitcode" in STEPS.read_text()


# -- the Action, run: a stand-in for `gh` ----------------------------------------------------------

FAKE_GH = '''\
"""A stand-in for `gh api`: GitHub's REST API for comments, pull requests and artifacts, kept in
the JSON file $FAKE_GH_STATE; --jq runs the real jq."""
import json, os, subprocess, sys
from pathlib import Path

store = Path(os.environ["FAKE_GH_STATE"])
state = json.loads(store.read_text())
args = sys.argv[1:]
assert args.pop(0) == "api", args
method, jq, body, path = "GET", None, None, None
while args:
    word = args.pop(0)
    if word == "--method":
        method = args.pop(0)
    elif word == "--jq":
        jq = args.pop(0)
    elif word == "--input":
        body = json.loads(Path(args.pop(0)).read_text())
    elif word != "--paginate":
        path = word
state["calls"].append([method, path])
parts = path.split("?")[0].split("/")[3:]  # repos/OWNER/NAME/...
answer = None
if parts[0] == "issues" and parts[2:] == ["comments"] and method == "GET":
    answer = [c for c in state["comments"] if c["issue"] == int(parts[1])]
elif parts[0] == "issues" and parts[2:] == ["comments"] and method == "POST":
    comment = {"id": 1000 + len(state["comments"]), "issue": int(parts[1]), "body": body["body"]}
    state["comments"].append(comment)
    answer = {"html_url": f"https://github.example/comment/{comment['id']}"}
elif parts[:2] == ["issues", "comments"] and method == "PATCH":
    (comment,) = [c for c in state["comments"] if c["id"] == int(parts[2])]
    comment["body"] = body["body"]
    answer = {"html_url": f"https://github.example/comment/{comment['id']}"}
elif parts[0] == "commits" and parts[2:] == ["pulls"]:
    merged = state["merged"].get(parts[1], [])
    # An open pull request holding the commit comes first: only a merged one counts.
    answer = [{"number": 1, "merged_at": None}] + [{"number": n, "merged_at": "2026-12-01T10:00Z"} for n in merged]
elif parts[0] == "pulls":
    answer = {"number": int(parts[1]), "head": {"sha": state["heads"][parts[1]]}}
elif parts[:2] == ["actions", "artifacts"] and len(parts) == 2:
    name = path.split("name=")[1].split("&")[0]
    answer = {"artifacts": [a for a in state["artifacts"] if a["name"] == name]}
elif parts[:2] == ["actions", "artifacts"] and parts[3:] == ["zip"]:
    (artifact,) = [a for a in state["artifacts"] if a["id"] == int(parts[2])]
    store.write_text(json.dumps(state))
    sys.stdout.buffer.write(Path(artifact["zip"]).read_bytes())
    sys.exit(0)
else:
    sys.exit(f"the stand-in gh knows no {method} {path}")
store.write_text(json.dumps(state))
text = json.dumps(answer)
if jq is not None:
    text = subprocess.run(["jq", "-r", jq], input=text, capture_output=True, text=True, check=True).stdout
print(text.rstrip("\\n"))
'''


class GitHub:
    """A repository on the stand-in: pull requests, comments and artifacts; runs the Action's steps."""

    def __init__(self, tool: Tool, tmp_path: Path) -> None:
        self.tool = tool
        self.root = tmp_path
        tmp_path.mkdir()
        self.store = tmp_path / "gh.json"
        self.store.write_text(
            json.dumps({"calls": [], "comments": [], "merged": {}, "heads": {}, "artifacts": []})
        )
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "gh").write_text(f"#!{sys.executable}\n{FAKE_GH}")
        (bin_dir / "gh").chmod(0o755)
        self.path = f"{bin_dir}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}"
        self.temp = tmp_path / "runner-temp"
        self.temp.mkdir()

    @property
    def state(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.store.read_text())
        return loaded

    def change(self, **values: Any) -> None:
        self.store.write_text(json.dumps({**self.state, **values}))

    def step(self, name: str, **env: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
        """`steps.sh NAME` as the runner runs it; the outputs it wrote."""
        outputs = self.root / "github-output"
        outputs.write_text("")
        environment = {
            "PATH": self.path,
            "HOME": str(self.root),
            "NO_COLOR": "1",
            "FAKE_GH_STATE": str(self.store),
            "GITHUB_OUTPUT": str(outputs),
            "GITHUB_REPOSITORY": "team/endpoints",
            "GITHUB_WORKFLOW": "inference endpoints",
            "GITHUB_RUN_ID": "4242",
            "GITHUB_ACTION_PATH": str(REPO),
            "RUNNER_TEMP": str(self.temp),
            "ELASTICSEARCH_URL": self.tool.url,
            "RECONCILER_STATE": self.tool.state,
            "RECONCILER_POLL_INTERVAL": "0.05",
            "RECONCILER_LOG_FORMAT": "json",  # as the examples set it
            "INPUT_MANIFESTS": str(self.tool.manifests),
            **SECRETS,
            **env,
        }
        result = _run(["bash", STEPS, name], cwd=self.tool.root, env=environment)
        written = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
        return result, written

    def upload(self, name: str, plan: Path) -> None:
        """What actions/upload-artifact does with the plan file."""
        state = self.state
        archive = self.root / f"artifact-{len(state['artifacts'])}.zip"
        with zipfile.ZipFile(archive, "w") as out:
            out.write(plan, plan.name)
        artifact = {
            "id": 500 + len(state["artifacts"]),
            "name": name,
            "expired": False,
            "created_at": f"2026-12-01T10:00:{len(state['artifacts']):02d}Z",
            "workflow_run": {"id": 9000 + len(state["artifacts"])},
            "zip": str(archive),
        }
        self.change(artifacts=[*state["artifacts"], artifact])

    def plan_on_pull_request(self, number: int, head: str, **env: str) -> dict[str, str]:
        """The Action's plan job: plan, comment, upload."""
        pull = {"HEAD_SHA": head, "GITHUB_SHA": f"merge-ref-{head}", **env}
        result, outputs = self.step("plan", **pull)
        assert result.returncode == 0, result.stderr
        assert outputs["exitcode"] == "0", Path(outputs["markdown"]).read_text()
        commented, _ = self.step("comment", PR_NUMBER=str(number), MARKDOWN=outputs["markdown"], **pull)
        assert commented.returncode == 0, commented.stderr
        self.upload(outputs["artifact"], self.tool.root / "plan.json")
        self.change(heads={**self.state["heads"], str(number): head})
        return outputs

    def merge(self, number: int, commit: str) -> None:
        self.change(merged={**self.state["merged"], commit: [number]})

    def comments(self, number: int) -> list[str]:
        return [c["body"] for c in self.state["comments"] if c["issue"] == number]


@pytest.fixture
def github(make_tool: Callable[..., Tool], tmp_path: Path) -> GitHub:
    tool = make_tool()
    tool.use_examples()
    return GitHub(tool, tmp_path / "github")


def test_the_plan_comment_is_one_per_workspace_and_environment_edited_in_place(github: GitHub) -> None:
    github.change(
        comments=[{"id": 1, "issue": 7, "body": "> <!-- reconciler-plan:workspace=default env=none -->"}]
    )
    first = github.plan_on_pull_request(7, "aaa111")
    assert first["artifact"] == "reconciler-plan-default-none-aaa111"
    (human, comment) = github.comments(7)
    assert human.startswith("> ")  # a human quoting the marker: never edited
    assert comment.startswith("<!-- reconciler-plan:workspace=default env=none -->\n")
    assert "**Plan: 5 to create" in comment
    assert "aaa111" in comment

    github.tool.write("anthropic.yaml", anthropic("anthropic-completion", max_tokens=77))
    github.plan_on_pull_request(7, "bbb222")  # a later push: the same comment, edited
    (_, edited) = github.comments(7)
    assert "bbb222" in edited
    assert [call[0] for call in github.state["calls"]].count("POST") == 1
    assert [call[0] for call in github.state["calls"]].count("PATCH") == 1

    github.plan_on_pull_request(7, "bbb222", INPUT_WORKSPACE="staging")  # another workspace: its own
    markdown = str(github.temp / "reconciler-plan.md")
    for _ in range(2):  # another environment: its own, edited in place too
        github.step("comment", PR_NUMBER="7", HEAD_SHA="bbb222", MARKDOWN=markdown, INPUT_ENVIRONMENT="prod")
    markers = [MARKER.match(body) for body in github.comments(7)]
    assert [m.groups() if m else None for m in markers] == [
        None,
        ("default", "none"),
        ("staging", "none"),
        ("default", "prod"),
    ]


def test_the_action_applies_the_reviewed_plan_and_proves_it(github: GitHub) -> None:
    github.plan_on_pull_request(7, "aaa111")
    github.merge(7, "merge777")
    fetched, outputs = github.step("fetch", GITHUB_SHA="merge777")
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert "Applying the plan reviewed on pull request #7 (commit aaa111, run 9000)" in fetched.stdout
    assert outputs["pr"] == "7"
    applied, result = github.step("apply", PLAN_FILE=outputs["plan-file"], PR_NUMBER="7")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert result["stale"] == "false"
    assert len(github.tool.live_ids()) == 5
    for line in applied.stderr.splitlines():  # JSON logs, for a log pipeline
        assert json.loads(line)["event"], line
    verified, _ = github.step("verify")
    assert verified.returncode == 0, verified.stdout
    assert "The cluster matches the manifests." in verified.stdout


def test_a_stale_plan_changes_nothing_and_is_planned_again_for_review(github: GitHub) -> None:
    github.tool("apply", "--auto-approve")
    github.tool.write("anthropic.yaml", anthropic("anthropic-completion", max_tokens=77))
    github.plan_on_pull_request(8, "ccc333")
    github.merge(8, "merge888")
    # Before it is applied, another apply moves the state.
    github.tool.write("anthropic.yaml", anthropic("anthropic-completion", max_tokens=55))
    assert github.tool("apply", "--auto-approve").code == 0
    github.tool.write("anthropic.yaml", anthropic("anthropic-completion", max_tokens=77))  # as merged
    github.tool.reset_requests()

    _, outputs = github.step("fetch", GITHUB_SHA="merge888")
    refused, result = github.step("apply", PLAN_FILE=outputs["plan-file"], PR_NUMBER="8")
    assert refused.returncode == 0  # the next steps plan again, comment, then fail the job
    assert result["stale"] == "true"
    assert "::error::The plan reviewed on pull request #8 is stale" in refused.stdout
    assert "Nothing was changed." in refused.stdout
    assert github.tool.writes() == 0

    replanned, again = github.step("replan", HEAD_SHA="ccc333")
    assert replanned.returncode == 0, replanned.stderr
    assert again["artifact"] == "reconciler-plan-default-none-ccc333"  # where a re-run looks
    heading = "**The plan reviewed here was stale when it was merged: nothing was applied.**"
    github.step("comment", PR_NUMBER="8", HEAD_SHA="ccc333", MARKDOWN=again["markdown"], HEADING=heading)
    (comment,) = github.comments(8)  # the plan comment, edited
    assert heading in comment
    assert "1 to update" in comment

    # A re-run of the job applies exactly the plan made again.
    github.upload(again["artifact"], github.tool.root / "plan.json")
    fetched, outputs = github.step("fetch", GITHUB_SHA="merge888")
    assert "(commit ccc333, run 9001)" in fetched.stdout  # the newest: the plan made again
    rerun, result = github.step("apply", PLAN_FILE=outputs["plan-file"], PR_NUMBER="8")
    assert rerun.returncode == 0, rerun.stderr
    assert result["stale"] == "false"
    verified, _ = github.step("verify")
    assert verified.returncode == 0, verified.stdout


def test_the_action_refuses_what_it_cannot_apply(github: GitHub) -> None:
    no_pull, _ = github.step("fetch", GITHUB_SHA="pushed-directly")
    assert no_pull.returncode == 1
    assert "was not merged from a pull request: there is no reviewed plan to apply" in no_pull.stdout
    github.change(heads={"9": "ddd444"})
    github.merge(9, "merge999")
    no_plan, _ = github.step("fetch", GITHUB_SHA="merge999")
    assert no_plan.returncode == 1
    assert "no plan named reconciler-plan-default-none-ddd444" in no_plan.stdout
    bad, _ = github.step("install", INPUT_VERSION="--index-url=http://evil")
    assert bad.returncode == 1
    assert "is not a version number" in bad.stdout
    differs, _ = github.step("verify")  # nothing applied yet: the cluster differs
    assert differs.returncode == 1
    assert "the cluster still differs from the manifests" in differs.stdout


def test_the_action_validates_without_secrets(github: GitHub) -> None:
    no_secrets = {name: "" for name in SECRETS} | {"ELASTICSEARCH_URL": "http://127.0.0.1:9"}
    validated, _ = github.step("validate", **no_secrets)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    github.tool.write("broken.yaml", "inference_id: Broken\n")
    refused, _ = github.step("validate", **no_secrets)
    assert refused.returncode == 1
    assert "broken.yaml:1: inference_id: must be lowercase" in refused.stdout


def test_the_action_installs_the_version_asked_or_its_own_ref(github: GitHub) -> None:
    fake = github.root / "fake-python"
    fake.mkdir()
    (fake / "python").write_text(f'#!/usr/bin/env bash\necho "$@" >> {github.root / "pip.log"}\n')
    (fake / "python").chmod(0o755)
    path = f"{fake}{os.pathsep}{github.path}"
    for version in ("0.1.0", ""):
        installed, _ = github.step("install", INPUT_VERSION=version, PATH=path)
        assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (github.root / "pip.log").read_text().splitlines() == [
        "-m pip install --quiet es-inference-reconciler==0.1.0",
        f"-m pip install --quiet {REPO}",  # GITHUB_ACTION_PATH: the action's checkout
    ]


# -- GitLab: the jobs, run, against a stand-in of its API -----------------------------------------


def _gitlab_jobs(path: Path) -> dict[str, dict[str, Any]]:
    pipeline = yaml.safe_load(path.read_text())
    reserved = {"stages", "default", "variables", "workflow", "include"}
    return {name: job for name, job in pipeline.items() if name not in reserved and not name.startswith(".")}


class GitLabAPI(BaseHTTPRequestHandler):
    """Merge request notes, the merge request of a commit, its pipelines, jobs and artifacts."""

    state: dict[str, Any]

    def _answer(self, value: Any, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str) -> None:
        state = self.state
        assert self.headers["PRIVATE-TOKEN"] == "glpat-test"
        path = self.path.split("?")[0].removeprefix("/api/v4/projects/1")
        state["calls"].append([method, path])
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")
        notes = re.fullmatch(r"/merge_requests/(\d+)/notes(?:/(\d+))?", path)
        if notes and method == "GET":
            self._answer([n for n in state["notes"] if n["mr"] == int(notes[1])])
        elif notes and method == "POST":
            state["notes"].append(
                {"id": 300 + len(state["notes"]), "mr": int(notes[1]), "body": body["body"]}
            )
            self._answer(state["notes"][-1])
        elif notes and method == "PUT":
            (note,) = [n for n in state["notes"] if n["id"] == int(notes[2])]
            note["body"] = body["body"]
            self._answer(note)
        elif match := re.fullmatch(r"/repository/commits/(\w+)/merge_requests", path):
            self._answer(state["merged"].get(match[1], []))
        elif match := re.fullmatch(r"/merge_requests/(\d+)/pipelines", path):
            self._answer(state["pipelines"].get(match[1], []))
        elif match := re.fullmatch(r"/pipelines/(\d+)/jobs", path):
            self._answer([{"id": int(match[1]) + 1, "name": "plan"}])
        elif match := re.fullmatch(r"/jobs/(\d+)/artifacts/plan.json", path):
            self._answer(None, Path(state["artifacts"][match[1]]).read_bytes())
        else:
            self.send_error(404)

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def log_message(self, *args: Any) -> None:
        pass


class GitLab:
    """A project on the stand-in API; runs a job's script as the runner does, in its own checkout."""

    def __init__(self, tool: Tool, tmp_path: Path, url: str, state: dict[str, Any]) -> None:
        self.tool, self.root, self.url, self.state = tool, tmp_path, url, state
        self.pipeline = yaml.safe_load((REPO / "examples" / "gitlab" / ".gitlab-ci.yml").read_text())
        self.jobs = _gitlab_jobs(REPO / "examples" / "gitlab" / ".gitlab-ci.yml")

    def job(self, name: str, checkout: str, **env: str) -> subprocess.CompletedProcess[str]:
        folder = self.root / checkout
        if not folder.exists():
            shutil.copytree(self.tool.manifests, folder / "manifests")
        variables = {
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(self.root),
            "NO_COLOR": "1",
            "CI_API_V4_URL": f"{self.url}/api/v4",
            "CI_PROJECT_ID": "1",
            "CI_PIPELINE_ID": "77",
            "GITLAB_API_TOKEN": "glpat-test",
            "ELASTICSEARCH_URL": self.tool.url,
            "ELASTICSEARCH_READ_API_KEY": "read-key",
            "ELASTICSEARCH_APPLY_API_KEY": "apply-key",
            "RECONCILER_STATE": self.tool.state,
            "RECONCILER_POLL_INTERVAL": "0.05",
            **SECRETS,
            **env,
        }
        job = self.jobs[name]
        for key, value in [*self.pipeline["variables"].items(), *job.get("variables", {}).items()]:
            variables[key] = variables[value[1:]] if value.startswith("$") else value
        script = "\n".join(job["script"])
        return _run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=folder, env=variables)


@pytest.fixture
def gitlab(make_tool: Callable[..., Tool], tmp_path: Path) -> Iterator[GitLab]:
    tool = make_tool()
    tool.use_examples()
    state: dict[str, Any] = {"calls": [], "notes": [], "merged": {}, "pipelines": {}, "artifacts": {}}
    handler = type("Handler", (GitLabAPI,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield GitLab(tool, tmp_path, f"http://127.0.0.1:{server.server_address[1]}", state)
    finally:
        server.shutdown()
        server.server_close()


def _merge_request_pipeline(
    gitlab: GitLab, iid: int, head: str, checkout: str, jobs: tuple[str, ...] = ("validate", "plan")
) -> None:
    for name in jobs:
        result = gitlab.job(name, checkout, CI_MERGE_REQUEST_IID=str(iid), CI_COMMIT_SHA=head)
        assert result.returncode == 0, (name, result.stdout, result.stderr)
    pipeline = 600 + len(gitlab.state["pipelines"])
    gitlab.state["pipelines"][str(iid)] = [{"id": pipeline, "sha": head, "status": "success"}]
    gitlab.state["artifacts"][str(pipeline + 1)] = str(gitlab.root / checkout / "plan.json")


def test_gitlab_validate_needs_no_secret(gitlab: GitLab) -> None:
    result = gitlab.job("validate", "mr", **{name: "" for name in SECRETS})
    assert result.returncode == 0, result.stdout + result.stderr


def test_gitlab_plans_in_one_note_and_applies_the_plan_reviewed_on_the_merge_request(gitlab: GitLab) -> None:
    _merge_request_pipeline(gitlab, 5, "aaa111", "mr-5")
    gitlab.tool.write("anthropic.yaml", anthropic("anthropic-completion", max_tokens=77))
    shutil.copy(gitlab.tool.manifests / "anthropic.yaml", gitlab.root / "mr-5" / "manifests")
    _merge_request_pipeline(gitlab, 5, "bbb222", "mr-5", ("plan",))  # a later push: the note edited
    (note,) = gitlab.state["notes"]
    assert note["body"].startswith("<!-- reconciler-plan:workspace=default env=none -->\n")
    assert "**Plan: 5 to create" in note["body"]

    gitlab.state["merged"]["merge555"] = [{"iid": 5, "state": "merged", "sha": "bbb222"}]
    applied = gitlab.job("apply", "main", CI_COMMIT_SHA="merge555")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Applying the plan reviewed on merge request !5 (pipeline 601, commit bbb222)" in applied.stdout
    assert len(gitlab.tool.live_ids()) == 5
    assert ["GET", "/jobs/602/artifacts/plan.json"] in gitlab.state["calls"]  # that pipeline's plan
    for line in applied.stderr.splitlines():  # JSON logs, for a log pipeline
        assert json.loads(line)["event"], line

    drift = gitlab.job("drift", "main")
    assert drift.returncode == 0, drift.stdout + drift.stderr
    assert json.loads((gitlab.root / "main" / "drift.json").read_text())["findings"] == []


def test_gitlab_a_stale_plan_changes_nothing_and_says_what_to_run(gitlab: GitLab) -> None:
    assert gitlab.tool("apply", "--auto-approve").code == 0
    gitlab.tool.write("anthropic.yaml", anthropic("anthropic-completion", max_tokens=77))
    _merge_request_pipeline(gitlab, 6, "ccc333", "mr-6")
    gitlab.tool.write("anthropic.yaml", anthropic("anthropic-completion", max_tokens=55))
    assert gitlab.tool("apply", "--auto-approve").code == 0  # another apply first
    gitlab.tool.reset_requests()
    gitlab.state["merged"]["merge666"] = [{"iid": 6, "state": "merged", "sha": "ccc333"}]
    refused = gitlab.job("apply", "mr-6", CI_COMMIT_SHA="merge666")
    assert refused.returncode == 1
    assert "The plan reviewed on merge request !6 is stale" in refused.stdout
    assert (
        "reconciler plan --out plan.json && reconciler show plan.json && reconciler apply plan.json"
        in refused.stdout
    )
    assert gitlab.tool.writes() == 0


def test_gitlab_refuses_a_commit_without_a_reviewed_plan(gitlab: GitLab) -> None:
    pushed = gitlab.job("apply", "main", CI_COMMIT_SHA="pushed")
    assert pushed.returncode == 1
    assert "was not merged from a merge request: there is no reviewed plan" in pushed.stderr
    gitlab.state["merged"]["merge777"] = [{"iid": 7, "state": "merged", "sha": "eee555"}]
    gitlab.state["pipelines"]["7"] = [{"id": 700, "sha": "older", "status": "success"}]
    unplanned = gitlab.job("apply", "main", CI_COMMIT_SHA="merge777")
    assert unplanned.returncode == 1
    assert "has no successful pipeline on its last commit eee555" in unplanned.stderr
    assert gitlab.tool.live_ids() == set()


# -- pre-commit ------------------------------------------------------------------------------------


def test_the_pre_commit_hook_validates_offline(tmp_path: Path) -> None:
    (hook,) = yaml.safe_load(HOOKS.read_text())
    assert hook["id"] == "reconciler-validate"
    assert hook["language"] == "python"  # pre-commit installs this repository with pip
    assert hook["pass_filenames"] is False  # validate reads the folder
    assert re.search(hook["files"], "manifests/anthropic.yaml")
    assert not re.search(hook["files"], "docs/manifests.md")
    entry = hook["entry"].split()
    assert entry[:3] == ["reconciler", "validate", "--offline"]
    no_secrets = {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path), "NO_COLOR": "1"}
    shutil.copytree(REPO / "manifests", tmp_path / "manifests")
    passed = _run(entry, cwd=tmp_path, env=no_secrets)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    (tmp_path / "manifests" / "broken.yaml").write_text("inference_id: Broken\n")
    failed = _run(entry, cwd=tmp_path, env=no_secrets)
    assert failed.returncode == 1
    assert "manifests/broken.yaml:1: inference_id: must be lowercase" in failed.stdout
