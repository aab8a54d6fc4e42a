"""Loading manifests into `Desired` endpoints: YAML rules, references, secrets, normalisation, the schema."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from reconciler import catalog
from reconciler.catalog import Version
from reconciler.cli import app
from reconciler.manifests import Validation, load
from reconciler.model import json_schema, parse_duration
from reconciler.resolver import Resolver
from reconciler.sensitive import Secret, digest, is_single_reference
from tests import openapi

V95 = Version(9, 5)
REPO = Path(__file__).resolve().parents[1]


def load_texts(
    tmp_path: Path, files: dict[str, str], env: dict[str, str] | None = None, version: Version = V95
) -> Validation:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return load(tmp_path, version, env or {"KEY": "sk-placeholder"})


CLAUDE = """\
inference_id: claude
task_type: Completion
service: anthropic
service_settings:
  api_key: ${KEY}
  model_id: claude-3-5-sonnet-20240620
task_settings:
  max_tokens: 1024
  temperature: 1
"""


def test_a_valid_manifest_becomes_a_desired_endpoint(tmp_path: Path) -> None:
    result = load_texts(tmp_path, {"c.yaml": CLAUDE})
    assert result.ok, result.errors
    (claude,) = result.endpoints
    assert claude.task_type == "completion"  # task types are read case-insensitively
    assert claude.service_settings == {"model_id": "claude-3-5-sonnet-20240620"}
    assert claude.secrets == {"api_key": Secret("sk-placeholder")}
    assert claude.task_settings == {"max_tokens": 1024, "temperature": 1.0}
    assert type(claude.task_settings["temperature"]) is float  # written naturally, sent as a Double
    assert claude.source.line == 1


def test_several_documents_recursive_folders_in_sorted_order(tmp_path: Path) -> None:
    second = CLAUDE.replace("claude", "b-claude")
    files = {
        "z.yml": CLAUDE.replace("claude", "z-claude"),
        "a/b.yaml": second + "---\n" + CLAUDE + "---\n",
        "notes.txt": "x",
    }
    result = load_texts(tmp_path, files)
    assert result.ok, result.errors
    assert [e.inference_id for e in result.endpoints] == ["b-claude", "claude", "z-claude"]
    assert result.files == 2


def test_yaml_1_2_core_schema_and_merge_keys(tmp_path: Path) -> None:
    text = """\
defaults: &defaults
  api_key: ${KEY}
  model_id: 'yes'
inference_id: c
task_type: completion
service: anthropic
"""
    result = load_texts(tmp_path, {"c.yaml": text})
    assert any("unknown key" in e.message for e in result.errors)  # `defaults` is not a manifest key
    text = """\
inference_id: c
task_type: completion
service: anthropic
service_settings:
  <<: {api_key: "${KEY}", model_id: base}
  model_id: yes
task_settings: {max_tokens: 0x10}
"""
    result = load_texts(tmp_path, {"c.yaml": text})
    assert result.ok, result.errors
    (endpoint,) = result.endpoints
    assert endpoint.service_settings == {"model_id": "yes"}  # YAML 1.2: yes is a string
    assert endpoint.task_settings == {"max_tokens": 16}


def test_references_in_plain_values_and_the_escape(tmp_path: Path) -> None:
    text = """\
inference_id: custom
task_type: text_embedding
service: custom
service_settings:
  url: https://${HOST}/v1/embed
  request: '{"input": $${input}}'
  headers: {Authorization: "Bearer $${api_key}"}
  response: {json_parser: {text_embeddings: "$.data[*].embedding"}}
  secret_parameters:
    api_key: ${KEY}
"""
    result = load_texts(tmp_path, {"c.yaml": text}, env={"HOST": "api.example.com", "KEY": "s3cret"})
    assert result.ok, result.errors
    (endpoint,) = result.endpoints
    # A value that came from a reference is a secret, whatever the field (DESIGN.md §9).
    assert "url" not in endpoint.service_settings
    assert endpoint.secrets["url"] == Secret("https://api.example.com/v1/embed")
    assert endpoint.secret_references["url"] == "https://${HOST}/v1/embed"
    assert endpoint.service_settings["request"] == '{"input": ${input}}'
    assert endpoint.service_settings["headers"] == {"Authorization": "Bearer ${api_key}"}
    assert "secret_parameters" not in endpoint.service_settings
    assert endpoint.secrets["secret_parameters.api_key"] == Secret("s3cret")
    assert set(endpoint.secrets) == {"url", "secret_parameters.api_key"}


def test_file_references_strip_one_trailing_newline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "key").write_text("from-a-file\n\n")
    monkeypatch.chdir(tmp_path)  # relative paths are relative to the working directory
    result = load_texts(tmp_path / "m", {"c.yaml": CLAUDE.replace("${KEY}", "${file:key}")})
    assert result.ok, result.errors
    assert result.endpoints[0].secrets["api_key"].reveal() == "from-a-file\n"


def test_elser_is_understood_as_what_the_server_stores(tmp_path: Path) -> None:
    text = "inference_id: e\ntask_type: sparse_embedding\nservice: elser\nservice_settings:\n  num_threads: 1\n  num_allocations: 1\n"
    result = load_texts(tmp_path, {"e.yaml": text})
    assert result.ok
    (endpoint,) = result.endpoints
    assert (endpoint.service, endpoint.written_service) == ("elasticsearch", "elser")
    assert [w.path for w in result.warnings] == ["service"]


def test_lifecycle_and_wait(tmp_path: Path) -> None:
    text = CLAUDE + "lifecycle:\n  prevent_destroy: true\n  ignore_changes: [task_settings.temperature]\n"
    (endpoint,) = load_texts(tmp_path, {"c.yaml": text}).endpoints
    assert endpoint.lifecycle.prevent_destroy
    assert endpoint.lifecycle.ignore_changes == ("task_settings.temperature",)
    e5 = "inference_id: e5\ntask_type: text_embedding\nservice: elasticsearch\nservice_settings:\n  model_id: .multilingual-e5-small\n  num_threads: 1\n  num_allocations: 1\nwait:\n  timeout: 1h30m\n"
    (endpoint,) = load_texts(tmp_path, {"c.yaml": e5}).endpoints
    assert endpoint.wait_timeout == 5400.0


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("1h30m", 5400), ("500ms", 0.5), ("2d", 172800)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


# -- secrets -----------------------------------------------------------------------------------


def test_a_secret_never_shows_its_value() -> None:
    secret = Secret("canary-3f9a")
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", str([secret]), str({"k": secret})):
        assert "canary-3f9a" not in text
    with pytest.raises(TypeError) as caught:
        json.dumps({"k": secret})
    assert "canary-3f9a" not in str(caught.value)
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert secret.reveal() == "canary-3f9a"


def test_digests_are_salted_and_tell_rotations_apart() -> None:
    one, same, rotated = Secret("a"), Secret("a"), Secret("b")
    assert digest(one, "salt") == digest(same, "salt")
    assert digest(one, "salt") != digest(rotated, "salt")
    assert digest(one, "salt") != digest(one, "other salt")
    assert digest(one, "salt").startswith("hmac-sha256:")


def test_reference_parsing() -> None:
    assert is_single_reference("${A_B}")
    assert is_single_reference("${file:/run/secrets/key}")
    assert not is_single_reference("x${A}")
    assert not is_single_reference("$${A}")
    reads: list[str] = []

    def read(path: str) -> str:
        reads.append(path)
        return f"<{path}>"

    resolver = Resolver({"A": "1"}, read_file=read)
    assert resolver.resolve("${A}-${file:p}-$${A}") == "1-<p>-${A}"
    assert resolver.resolve("${file:p}") == "<p>"
    assert reads == ["p"]  # a mounted secret is read once per run
    assert "<p>" not in repr(resolver)
    assert "'A'" not in repr(resolver)  # nor the environment


CANARY = "canary-value-7e21"


def test_no_message_ever_holds_a_secret_value(tmp_path: Path) -> None:
    """Every way a canary could leak: a secret in the wrong place, a misspelt secret key, type errors."""
    texts = {
        "literal.yaml": CLAUDE.replace("${KEY}", CANARY),
        "misspelt.yaml": CLAUDE.replace("claude", "c2").replace("api_key: ${KEY}", "apikey: ${KEY}"),
        "number.yaml": CLAUDE.replace("claude", "c3").replace(
            "model_id: claude-3-5-sonnet-20240620", "model_id: ${KEY}\n  rate_limit: ${KEY}"
        ),
        "enum.yaml": "inference_id: o\ntask_type: text_embedding\nservice: openai\nservice_settings:\n  api_key: ${KEY}\n  model_id: m\n  similarity: ${KEY}\n",
        "task.yaml": CLAUDE.replace("claude", "c4").replace(
            "temperature: 1", "temperature: ${KEY}\n  top_k: ${KEY}"
        ),
        "chunk.yaml": "inference_id: o2\ntask_type: text_embedding\nservice: openai\nservice_settings:\n  api_key: ${KEY}\n  model_id: m\nchunking_settings:\n  strategy: ${KEY}\n  max_chunk_size: ${KEY}\n",
        "unknown-service.yaml": CLAUDE.replace("claude", "c5").replace("anthropic", "${KEY}"),
    }
    for name, text in texts.items():
        (tmp_path / name).write_text(text)
    result = CliRunner().invoke(app, ["validate", "--manifests", str(tmp_path)], env={"KEY": CANARY})
    assert result.exit_code == 1
    assert len(result.stdout.splitlines()) >= len(texts)
    assert CANARY not in result.output
    assert CANARY not in result.stderr


# -- the spec's own examples -------------------------------------------------------------------

SECRET_NAMES = catalog.SECRET_FIELD_NAMES


def _escaped(value: Any) -> Any:
    """Placeholders such as the custom service's ${input} are written $${input} in a manifest."""
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


def _as_manifest(body: dict[str, Any], task_type: str) -> tuple[dict[str, Any], dict[str, str]]:
    """An example request as a manifest: literal secrets become references."""
    env: dict[str, str] = {}
    settings = dict(body.get("service_settings", {}))
    for name in SECRET_NAMES & settings.keys():
        if isinstance(settings[name], dict):
            for inner, value in settings[name].items():
                env[f"S_{inner.upper()}"] = str(value)
                settings[name][inner] = f"${{S_{inner.upper()}}}"
        else:
            env[f"S_{name.upper()}"] = str(settings[name])
            settings[name] = f"${{S_{name.upper()}}}"
    settings = {k: v if k in SECRET_NAMES else _escaped(v) for k, v in settings.items()}
    manifest = {k: v for k, v in body.items() if k not in ("task_type",)}
    manifest.update(inference_id="example", task_type=task_type, service_settings=settings)
    return manifest, env


@pytest.mark.parametrize(
    ("line", "service", "example", "task_type", "body"),
    __import__("tests.test_catalog", fromlist=["_examples"])._examples(),
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_the_spec_examples_validate(
    tmp_path: Path, line: str, service: str, example: str, task_type: str, body: dict[str, Any]
) -> None:
    from tests.test_catalog import EXAMPLE_SLIPS

    manifest, env = _as_manifest(body, task_type)
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(manifest))
    result = load(tmp_path, Version.parse(line), env)
    if example in EXAMPLE_SLIPS:
        assert not result.ok, EXAMPLE_SLIPS[example]
    else:
        assert result.ok, [str(e) for e in result.errors]
    for value in env.values():
        assert all(value not in str(e) for e in result.errors)


# Services the specification has no put_<service> API for: EIS (`elastic`) is created through the
# generic PUT only (reference §3).
NO_SPEC_API = {"elastic"}


def test_spec_examples_exist_for_every_service() -> None:
    assert set(openapi.service_examples("9.5")) == {s.name for s in catalog.services(V95)} - NO_SPEC_API


# -- the JSON Schema ---------------------------------------------------------------------------


def test_the_committed_schema_is_the_generated_one() -> None:
    committed = json.loads((REPO / "manifest.schema.json").read_text())
    assert committed == json_schema(), "regenerate it: reconciler schema > manifest.schema.json"


def test_the_schema_command_prints_it() -> None:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == json_schema()


def test_the_schema_accepts_the_examples_and_catches_mistakes() -> None:
    validator = jsonschema.Draft202012Validator(json_schema())
    for path in sorted((REPO / "manifests").glob("*.yaml")):
        assert not list(validator.iter_errors(yaml.safe_load(path.read_text()))), path
    bad = yaml.safe_load(CLAUDE.replace("model_id", "modle_id"))
    assert any("modle_id" in e.message for e in validator.iter_errors(bad))
    bad = yaml.safe_load(CLAUDE.replace("anthropic", "antropic"))
    assert list(validator.iter_errors(bad))


# -- DESIGN.md §9: a value that came from ${...} is sensitive in every field ------------------

CUSTOM = """\
inference_id: custom
task_type: text_embedding
service: custom
service_settings:
  url: https://api.example.com/v1/embed
  request: '{"input": $${input}}'
  headers: {Authorization: "Bearer ${TOKEN}", X-Static: plain}
  response: {json_parser: {text_embeddings: "$.data[*].embedding"}}
  secret_parameters:
    api_key: ${KEY}
"""


def test_a_reference_in_any_field_is_a_secret(tmp_path: Path) -> None:
    text = CLAUDE.replace("claude-3-5-sonnet-20240620", "${MODEL}")
    result = load_texts(tmp_path, {"c.yaml": text}, env={"KEY": "sk-1", "MODEL": "sk-model-canary"})
    assert result.ok, result.errors
    (endpoint,) = result.endpoints
    assert "model_id" not in endpoint.service_settings
    assert endpoint.secrets == {"api_key": Secret("sk-1"), "model_id": Secret("sk-model-canary")}
    assert endpoint.secret_references == {"api_key": "${KEY}", "model_id": "${MODEL}"}
    assert "sk-model-canary" not in repr(endpoint)


def test_a_reference_one_level_down_is_a_secret_and_templates_stay_literal(tmp_path: Path) -> None:
    result = load_texts(tmp_path, {"c.yaml": CUSTOM}, env={"KEY": "sk-1", "TOKEN": "tok-canary"})
    assert result.ok, result.errors
    (endpoint,) = result.endpoints
    assert endpoint.service_settings["headers"] == {"X-Static": "plain"}
    assert endpoint.service_settings["request"] == '{"input": ${input}}'  # $${ stays a template
    assert endpoint.secrets["headers.Authorization"] == Secret("Bearer tok-canary")
    assert endpoint.secret_references["headers.Authorization"] == "Bearer ${TOKEN}"


def test_the_planner_redacts_a_referenced_model_id_and_sends_its_reference(tmp_path: Path) -> None:
    from reconciler.planner import Live, plan
    from reconciler.state import State

    text = CLAUDE.replace("claude-3-5-sonnet-20240620", "${MODEL}")
    result = load_texts(tmp_path, {"c.yaml": text}, env={"KEY": "sk-1", "MODEL": "sk-model-canary"})
    assert result.ok, result.errors
    planned = plan(list(result.endpoints), Live({}, V95), State("lineage", 1, "default", "salt"))
    assert "sk-model-canary" not in planned.dumps()
    (change,) = planned.changes
    assert change.after is not None
    assert change.after["service_settings"]["model_id"] == "(sensitive)"
    (put,) = change.requests
    assert put.body is not None
    assert put.body["service_settings"]["model_id"] == "${MODEL}"  # the applier substitutes it
    assert set(change.secrets) == {"api_key", "model_id"}


def test_what_the_server_echoes_of_a_referenced_value_is_masked() -> None:
    from reconciler.sensitive import masked

    digests = {"model_id": digest(Secret("sk-model"), "salt"), "headers.X": digest(Secret("t"), "salt")}
    echoed: dict[str, Any] = {
        "model_id": "sk-model",
        "headers": {"X": "other", "Y": "y"},
        "rate_limit": {"rpm": 5},
    }
    assert masked(echoed, digests, "salt") == {
        "model_id": "(sensitive)",
        "headers": {"X": "(sensitive, changed)", "Y": "y"},  # moved in the cluster: told, not shown
        "rate_limit": {"rpm": 5},
    }
    assert echoed["headers"]["X"] == "other"  # a copy
