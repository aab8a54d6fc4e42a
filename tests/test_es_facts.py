"""An independent oracle: Elasticsearch facts (tests/es_facts/*.yaml) checked against the emulator
and the planner.

Each fact is a request and what Elasticsearch answers or stores for it, on the minor versions
listed, with its source in the Elasticsearch repository. The facts were written from the
Elasticsearch source, tests and pull requests, never from the catalog or the emulator, so they catch
a wrong default that every other test (the code checked against itself) would pass. The schema is
in tests/es_facts/README.md. A fact the code does not meet today carries `known_gap` and runs as a
strict xfail: fixing the gap turns the test red until the mark is removed.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from reconciler.catalog import Version
from reconciler.emulator import Emulator, EmulatorConfig
from reconciler.manifests import load
from reconciler.model import Desired
from reconciler.plan import Action
from reconciler.planner import Live, plan
from reconciler.state import State
from tests.test_planner import record_applied

FACTS_DIR = Path(__file__).parent / "es_facts"
SUPPORTED_MINORS = ("8.16", "8.17", "8.18", "8.19", "9.0", "9.1", "9.2", "9.3", "9.4", "9.5")
FACT_KEYS = {"id", "versions", "source", "setup", "request", "expect", "plan", "known_gap", "note", "cluster"}
# What a fact may say of the cluster it runs on (the emulator's options of the same names): ML
# capacity, whether ML can scale, models whose deployments fail, whether EIS is authorised.
CLUSTER_KEYS = {"ml_capacity", "ml_autoscaling", "fail_models", "eis"}
EXPECT_KEYS = {"status", "body", "error", "stored", "absent", "get_error"}
# Write-only settings as Elasticsearch names them (DefaultSecretSettings, AwsSecretSettings,
# GoogleVertexAiSecretSettings, AzureOpenAiSecretSettings): a manifest must give them as references.
SECRET_KEYS = {"api_key", "access_key", "secret_key", "service_account_json", "client_secret", "entra_id"}
GAP_KINDS = ("emulator", "planner", "versions")


@dataclass(frozen=True)
class Case:
    fact: Mapping[str, Any]
    version: str
    file: str

    @property
    def id(self) -> str:
        return f"{self.fact['id']}@{self.version}"


def patch_version(version: str) -> str:
    """A fact's minor version as the emulator takes it (a full x.y.z is kept as given)."""
    return version if version.count(".") == 2 else f"{version}.0"


def minor_of(version: str) -> str:
    return ".".join(version.split(".")[:2])


def load_facts() -> list[tuple[str, Mapping[str, Any]]]:
    facts: list[tuple[str, Mapping[str, Any]]] = []
    for path in sorted(FACTS_DIR.glob("*.yaml")):
        for fact in yaml.safe_load(path.read_text()) or []:
            facts.append((path.name, fact))
    return facts


FACTS = load_facts()


def cases(kind: str) -> list[Any]:
    params = []
    for file, fact in FACTS:
        if kind == "planner" and "plan" not in fact:
            continue
        for version in fact["versions"]:
            marks = []
            gap = gap_for(fact, kind, str(version))
            if gap:
                marks.append(pytest.mark.xfail(reason=gap, strict=True))
            case = Case(fact, str(version), file)
            params.append(pytest.param(case, id=case.id, marks=marks))
    return params


def gap_for(fact: Mapping[str, Any], kind: str, version: str) -> str | None:
    """`known_gap: why` marks both checks on every version; `known_gap: {emulator: why, planner: why,
    versions: [...]}` marks each check apart, on the versions listed (all if none are)."""
    gap = fact.get("known_gap")
    if isinstance(gap, str):
        return gap
    if isinstance(gap, Mapping):
        if "versions" in gap and version not in [str(v) for v in gap["versions"]]:
            return None
        found = gap.get(kind)
        return str(found) if found else None
    return None


# -- the corpus itself -------------------------------------------------------------------------


def test_the_corpus_is_well_formed() -> None:
    seen: set[str] = set()
    for file, fact in FACTS:
        where = f"{file}: {fact.get('id')}"
        assert set(fact) <= FACT_KEYS, (where, set(fact) - FACT_KEYS)
        assert fact["id"] not in seen, f"{where}: duplicate id"
        seen.add(fact["id"])
        assert isinstance(fact.get("source"), str), where
        assert "elastic/" in fact["source"], where
        assert fact["versions"], where
        for version in fact["versions"]:
            assert minor_of(str(version)) in SUPPORTED_MINORS, (where, version)
        expect = fact["expect"]
        assert set(expect) <= EXPECT_KEYS, (where, set(expect) - EXPECT_KEYS)
        assert ("error" in expect) != ("status" in expect), f"{where}: give status or error"
        for request in [*fact.get("setup", []), fact["request"]]:
            assert request["method"] in ("GET", "PUT", "POST", "DELETE"), where
            assert request["path"].startswith("/"), where
        assert set(fact.get("cluster", {})) <= CLUSTER_KEYS, where
        gap = fact.get("known_gap")
        if isinstance(gap, Mapping):
            assert set(gap) <= set(GAP_KINDS), where
        if "plan" in fact:
            assert fact["plan"] == "no-op" or set(fact["plan"]) == {"desired", "action"}, where


def test_the_corpus_covers_every_supported_version() -> None:
    covered = {minor_of(str(v)) for _, fact in FACTS for v in fact["versions"]}
    assert covered == set(SUPPORTED_MINORS)


def corpus_services() -> set[str]:
    """The services the facts exercise: those named in a request or setup body that the catalog
    knows, deprecated aliases (`elser`) counted as the service they are."""
    from reconciler.catalog import SERVICES

    named = {
        str(r["body"]["service"])
        for _, fact in FACTS
        for r in [*fact.get("setup", []), fact["request"]]
        if isinstance(r.get("body"), Mapping) and "service" in r["body"]
    }
    found = set()
    for name in named & set(SERVICES):
        alias = SERVICES[name].stored_as
        found.add(alias[0] if alias is not None else name)
    return found


def test_the_corpus_is_big_and_broad_enough() -> None:
    """Issue 12: at least 80 facts over at least 14 services, and each correction C1-C14 of the
    reference's §0 backed by a fact that cites it (in its source or note)."""
    assert len(FACTS) >= 80, len(FACTS)
    services = corpus_services()
    assert len(services) >= 14, sorted(services)
    cited = {
        int(n)
        for _, fact in FACTS
        for n in re.findall(r"\bC(\d+)\b", f"{fact['source']} {fact.get('note', '')}")
    }
    assert set(range(1, 15)) <= cited, sorted(set(range(1, 15)) - cited)


# -- matching ----------------------------------------------------------------------------------


def subset_problems(want: Any, have: Any, path: str = "") -> list[str]:
    """Where `have` does not contain `want`: mappings by key (extra keys allowed), the rest by equality
    (an int and a float differ: Elasticsearch keeps a number's JSON type)."""
    if isinstance(want, Mapping):
        if not isinstance(have, Mapping):
            return [f"{path or '.'}: wanted an object, got {have!r}"]
        problems = []
        for key, value in want.items():
            inner = f"{path}.{key}" if path else str(key)
            if key not in have:
                problems.append(f"{inner}: missing (wanted {value!r})")
            else:
                problems += subset_problems(value, have[key], inner)
        return problems
    if isinstance(want, list) and isinstance(have, list) and len(want) == len(have):
        return [
            p
            for i, (w, h) in enumerate(zip(want, have, strict=True))
            for p in subset_problems(w, h, f"{path}[{i}]")
        ]
    if want != have or type(want) is not type(have):
        return [f"{path}: wanted {want!r}, got {have!r}"]
    return []


def lookup(data: Any, dotted: str) -> tuple[bool, Any]:
    for part in dotted.split("."):
        if not isinstance(data, Mapping) or part not in data:
            return False, None
        data = data[part]
    return True, data


def error_problems(want: Mapping[str, Any], response: httpx.Response) -> list[str]:
    problems = []
    if response.status_code != want["status"]:
        problems.append(f"status: wanted {want['status']}, got {response.status_code}: {response.text}")
    try:
        error = response.json().get("error")
    except ValueError:
        return [*problems, f"not JSON: {response.text!r}"]
    if not isinstance(error, Mapping):
        return [*problems, f"no error object: {response.text}"]
    if "type" in want and error.get("type") != want["type"]:
        problems.append(f"type: wanted {want['type']}, got {error.get('type')}")
    reason = str(error.get("reason", ""))
    if "reason" in want and reason != want["reason"]:
        problems.append(f"reason: wanted {want['reason']!r}, got {reason!r}")
    for part in want.get("reason_contains", []):
        if part not in reason:
            problems.append(f"reason: wanted it to contain {part!r}, got {reason!r}")
    return problems


# -- requests ----------------------------------------------------------------------------------


def endpoint_of(path: str, body: Mapping[str, Any] | None) -> tuple[str, str | None]:
    """(inference_id, task_type) of an /_inference path; the body's task_type if the path has none."""
    parts = [p for p in path.split("?", maxsplit=1)[0].split("/") if p][1:]
    if parts and parts[-1] == "_update":
        parts = parts[:-1]
    if len(parts) >= 2:
        return parts[1], parts[0]
    task_type = (body or {}).get("task_type")
    return parts[0], str(task_type).strip().lower() if task_type else None


async def send(client: httpx.AsyncClient, request: Mapping[str, Any]) -> httpx.Response:
    return await client.request(
        request["method"], request["path"], json=request.get("body"), params=request.get("query")
    )


@dataclass
class Outcome:
    response: httpx.Response
    before: Mapping[str, Any] | None  # GET of the endpoint after setup, before the request
    after: httpx.Response | None  # GET of the endpoint after the request


async def run_fact(fact: Mapping[str, Any], version: str) -> Outcome:
    cluster = dict(fact.get("cluster", {}))
    if "fail_models" in cluster:
        cluster["fail_models"] = tuple(cluster["fail_models"])
    config = EmulatorConfig(version=patch_version(version), deploy_seconds=0, **cluster)
    transport = httpx.ASGITransport(app=Emulator(config))
    async with httpx.AsyncClient(transport=transport, base_url="http://es") as client:
        for step in fact.get("setup", []):
            response = await send(client, step)
            assert response.status_code == step.get("status", 200), (
                f"setup {step['method']} {step['path']} -> {response.status_code}: {response.text}"
            )
        request = fact["request"]
        before = None
        inference_id = None
        if request["path"].startswith("/_inference/"):
            inference_id, _ = endpoint_of(request["path"], request.get("body"))
            got = await client.get(f"/_inference/{inference_id}")
            if got.status_code == 200:
                before = got.json()["endpoints"][0]
        response = await send(client, request)
        after = await client.get(f"/_inference/{inference_id}") if inference_id else None
        return Outcome(response, before, after)


# -- the emulator against each fact ------------------------------------------------------------


@pytest.mark.parametrize("case", cases("emulator"))
async def test_emulator_meets_fact(case: Case) -> None:
    fact, expect = case.fact, case.fact["expect"]
    outcome = await run_fact(fact, case.version)
    response = outcome.response
    problems: list[str] = []
    if "error" in expect:
        problems += error_problems(expect["error"], response)
    elif response.status_code != expect["status"]:
        problems.append(f"status: wanted {expect['status']}, got {response.status_code}: {response.text}")
    elif "body" in expect:
        problems += subset_problems(expect["body"], response.json())
    if "stored" in expect or "absent" in expect or "get_error" in expect:
        assert outcome.after is not None, "stored/absent/get_error need an /_inference request"
        if "get_error" in expect:
            problems += [f"GET: {p}" for p in error_problems(expect["get_error"], outcome.after)]
        elif outcome.after.status_code != 200:
            problems.append(f"GET: {outcome.after.status_code}: {outcome.after.text}")
        else:
            stored = outcome.after.json()["endpoints"][0]
            problems += [f"GET: {p}" for p in subset_problems(expect.get("stored", {}), stored)]
            for dotted in expect.get("absent", []):
                if lookup(stored, dotted)[0]:
                    problems.append(f"GET: {dotted} should be absent, got {lookup(stored, dotted)[1]!r}")
    assert not problems, f"{case.id} ({fact['source']}):\n" + "\n".join(problems)


# -- the planner against each fact -------------------------------------------------------------


def manifest_of(path: str, body: Mapping[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """The manifest that asks for what a PUT body asks, secrets as ${...} references into `env`."""
    inference_id, task_type = endpoint_of(path, body)
    manifest: dict[str, Any] = {
        "inference_id": inference_id,
        "task_type": task_type,
        "service": body["service"],
    }
    for section in ("service_settings", "task_settings", "chunking_settings"):
        if section not in body:
            continue
        value = copy.deepcopy(dict(body[section]))
        if section == "service_settings":
            for key in sorted(SECRET_KEYS & set(value)):
                name = f"SECRET_{len(env)}"
                env[name] = str(value[key])
                value[key] = "${" + name + "}"
        manifest[section] = value
    return manifest


def desired_of(manifest: Mapping[str, Any], env: dict[str, str], version: Version, folder: Path) -> Desired:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "m.yaml").write_text(yaml.safe_dump(dict(manifest), sort_keys=False))
    result = load(folder, version, env)
    assert result.ok, [str(e) for e in result.errors]
    (desired,) = result.endpoints
    return desired


def overlaid(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = overlaid(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def without(data: Mapping[str, Any], dotted: str) -> dict[str, Any]:
    out = copy.deepcopy(dict(data))
    head, _, rest = dotted.partition(".")
    if not rest:
        out.pop(head, None)
    elif isinstance(out.get(head), Mapping):
        out[head] = without(out[head], rest)
    return out


def fact_live(fact: Mapping[str, Any], emulated: Mapping[str, Any] | None) -> dict[str, Any]:
    """The endpoint as Elasticsearch stores it per the fact: the emulator's GET where it has one (for
    what the fact does not state, e.g. measured dimensions), overridden by the fact's `stored` and
    stripped of its `absent` paths."""
    request = fact["request"]
    inference_id, task_type = endpoint_of(request["path"], request.get("body"))
    body = request.get("body") or {}
    base = (
        dict(emulated)
        if emulated
        else {"inference_id": inference_id, "task_type": task_type, "service": body.get("service")}
    )
    live = overlaid(base, fact["expect"].get("stored", {}))
    for dotted in fact["expect"].get("absent", []):
        live = without(live, dotted)
    return live


@pytest.mark.parametrize("case", cases("planner"))
async def test_planner_meets_fact(case: Case, tmp_path: Path) -> None:
    """A manifest asking for what the fact's request asked plans as the fact says against what
    Elasticsearch stores: a no-op after a create (the server's defaults are no change), or the given
    action (an in-place update rather than a replace)."""
    fact = case.fact
    version = Version.parse(patch_version(case.version))
    outcome = await run_fact(fact, case.version)
    env: dict[str, str] = {}
    state = State("lineage-1", 1, "default", "salt")
    if fact["plan"] == "no-op":
        request = fact["request"]
        emulated = (
            outcome.after.json()["endpoints"][0]
            if outcome.after is not None and outcome.after.status_code == 200
            else None
        )
        live = fact_live(fact, emulated)
        desired = desired_of(
            manifest_of(request["path"], request["body"], env), env, version, tmp_path / "now"
        )
        want = Action.NO_OP
    else:
        first = fact["setup"][0]
        assert outcome.before is not None, "the setup must create the endpoint"
        live = dict(outcome.before)
        applied = desired_of(manifest_of(first["path"], first["body"], env), env, version, tmp_path / "then")
        state = state.with_endpoint(applied.inference_id, record_applied(applied, live, state, version))
        desired = desired_of(
            manifest_of(first["path"], fact["plan"]["desired"], env), env, version, tmp_path / "now"
        )
        want = Action(fact["plan"]["action"])
    if fact["plan"] == "no-op":
        state = state.with_endpoint(desired.inference_id, record_applied(desired, live, state, version))
    planned = plan([desired], Live({desired.inference_id: live}, version), state)
    assert not planned.errors, planned.errors
    (change,) = planned.changes
    assert change.action is want, (
        f"{case.id} ({fact['source']}): wanted {want.value}, got {change.action.value} "
        f"{change.reasons} {[(d.path, d.before, d.after) for d in change.diff]}"
    )
