"""`reconciler validate`: a table of invalid manifests, each with its exit code, file:line and field path.

Each case is one manifest; the line its error must point at carries the marker `# <-`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from reconciler.cli import app

ENV = {"KEY": "sk-placeholder", "OTHER": "x"}
CLAUDE = """\
inference_id: claude
task_type: completion
service: anthropic
service_settings:
  api_key: ${KEY}
  model_id: claude-3-5-sonnet-20240620
task_settings:
  max_tokens: 1024
"""


def claude(**replace: str) -> str:
    """The valid Anthropic manifest with some lines replaced (key: new text, '' drops the line)."""
    lines = []
    for line in CLAUDE.splitlines():
        key = line.strip().split(":")[0]
        lines.append(replace.pop(key) if key in replace else line)
    lines += replace.values()
    return "\n".join(x for x in lines if x) + "\n"


E5 = """\
inference_id: e5
task_type: text_embedding
service: elasticsearch
service_settings:
  model_id: .multilingual-e5-small
  num_threads: 1
  num_allocations: 1
"""
OPENAI = """\
inference_id: oai
task_type: text_embedding
service: openai
service_settings:
  api_key: ${KEY}
  model_id: text-embedding-3-small
"""


def chunking(body: str, marked: str | None = "strategy") -> str:
    """OPENAI with chunking_settings; marks the line of `marked`, or the section's own line when None."""
    lines = [
        f"  {line}" + (" # <-" if marked and line.startswith(marked) else "") for line in body.splitlines()
    ]
    header = "chunking_settings:" + ("" if marked else " # <-")
    return OPENAI + header + "\n" + "\n".join(lines) + "\n"


CASES: list[tuple[str, str, str, str]] = [
    # --- YAML itself
    ("bad-yaml-indent", "inference_id: x\n  task_type: completion # <-\n", "", "YAML syntax error"),
    (
        "bad-yaml-unclosed",
        "inference_id: [x, y\ntask_type: completion # <-\nservice: x\n",
        "",
        "YAML syntax error",
    ),
    ("duplicate-key", CLAUDE + "task_type: rerank # <-\n", "task_type", "duplicate key (first at line 2)"),
    ("duplicate-nested-key", CLAUDE + "  max_tokens: 5 # <-\n", "task_settings.max_tokens", "duplicate key"),
    ("not-a-mapping", "- just # <-\n- a list\n", "", "a manifest is a mapping"),
    ("unsupported-tag", claude(model_id="  model_id: !!binary aGVsbG8= # <-"), "", "is not supported"),
    # --- the manifest format
    (
        "unknown-top-level-key",
        claude() + "description: nope # <-\n",
        "description",
        "unknown key (known: inference_id",
    ),
    ("typo-in-top-level-key", claude(task_settings="task_setting: # <-"), "task_setting", "unknown key"),
    (
        "missing-inference-id",
        claude(inference_id="", task_type="task_type: completion # <-"),
        "inference_id",
        "required key is missing",
    ),
    (
        "missing-service",
        claude(service="", inference_id="inference_id: claude # <-"),
        "service",
        "required key is missing",
    ),
    (
        "missing-task-type",
        claude(task_type="", inference_id="inference_id: claude # <-"),
        "task_type",
        "required key is missing",
    ),
    (
        "missing-service-settings",
        "inference_id: x # <-\ntask_type: completion\nservice: anthropic\n",
        "service_settings",
        "required key is missing",
    ),
    (
        "service-settings-not-a-map",
        claude(service_settings="service_settings: [a] # <-", api_key="", model_id=""),
        "service_settings",
        "must be a mapping",
    ),
    (
        "task-settings-not-a-map",
        claude(task_settings="task_settings: 5 # <-", max_tokens=""),
        "task_settings",
        "must be a mapping",
    ),
    (
        "inference-id-not-a-string",
        claude(inference_id="inference_id: 42 # <-"),
        "inference_id",
        "must be a string",
    ),
    ("service-not-a-string", claude(service="service: [anthropic] # <-"), "service", "must be a string"),
    (
        "unknown-lifecycle-key",
        claude() + "lifecycle:\n  prevent_delete: true # <-\n",
        "lifecycle.prevent_delete",
        "unknown key (known: prevent_destroy, ignore_changes)",
    ),
    (
        "prevent-destroy-not-bool",
        claude() + "lifecycle:\n  prevent_destroy: yes # <-\n",
        "lifecycle.prevent_destroy",
        "must be true or false",
    ),
    (
        "ignore-changes-not-a-list",
        claude() + "lifecycle:\n  ignore_changes: task_settings.temperature # <-\n",
        "lifecycle.ignore_changes",
        "must be a list",
    ),
    (
        "ignore-changes-bad-section",
        claude() + "lifecycle:\n  ignore_changes:\n    - temperature # <-\n",
        "lifecycle.ignore_changes[0]",
        "must be a dotted path",
    ),
    (
        "ignore-changes-unknown-field",
        claude() + "lifecycle:\n  ignore_changes:\n    - task_settings.temprature # <-\n",
        "lifecycle.ignore_changes[0]",
        "temprature is not a task_settings key",
    ),
    ("bad-duration", E5 + "wait:\n  timeout: 15 minutes # <-\n", "wait.timeout", "is not a duration"),
    ("bad-duration-unit", E5 + "wait:\n  timeout: 2w # <-\n", "wait.timeout", "is not a duration"),
    ("duration-not-a-string", E5 + "wait:\n  timeout: 900 # <-\n", "wait.timeout", "must be a string"),
    (
        "unknown-wait-key",
        E5 + "wait:\n  deadline: 5m # <-\n",
        "wait.deadline",
        "unknown key (known: timeout)",
    ),
    # --- ids
    ("id-uppercase", claude(inference_id="inference_id: Claude # <-"), "inference_id", "must be lowercase"),
    (
        "id-leading-dot",
        claude(inference_id="inference_id: .claude # <-"),
        "inference_id",
        "reserved for the preconfigured endpoints",
    ),
    ("id-all", claude(inference_id="inference_id: _all # <-"), "inference_id", "_all is reserved"),
    (
        "id-trailing-dash",
        claude(inference_id="inference_id: claude- # <-"),
        "inference_id",
        "must start and end with a letter or digit",
    ),
    ("id-space", claude(inference_id="inference_id: my claude # <-"), "inference_id", "may hold only"),
    # --- task types and services
    ("unknown-task-type", claude(task_type="task_type: chat # <-"), "task_type", "unknown task type 'chat'"),
    (
        "task-type-unsupported-by-service",
        claude(task_type="task_type: text_embedding # <-"),
        "task_type",
        "does not support task type [text_embedding]",
    ),
    (
        "unknown-service",
        claude(service="service: antropic # <-"),
        "service",
        "unknown service 'antropic' (did you mean anthropic?)",
    ),
    ("service-case", claude(service="service: Anthropic # <-"), "service", "unknown service 'Anthropic'"),
    # --- settings
    (
        "missing-required-setting",
        claude(model_id="", service_settings="service_settings: # <-"),
        "service_settings.model_id",
        "does not contain the required setting [model_id]",
    ),
    (
        "missing-required-task-setting",
        claude(max_tokens="", task_settings="task_settings: {} # <-"),
        "task_settings.max_tokens",
        "required setting [max_tokens]",
    ),
    (
        "unknown-setting",
        claude(model_id="  model_id: m\n  modle: m # <-"),
        "service_settings.modle",
        "unknown setting of the anthropic service for task type completion (known: api_key, model_id, rate_limit)",
    ),
    (
        # C11 (AnthropicChatCompletionTaskSettings: top_k is written under top_p, then read back as a
        # Double): Elasticsearch stores the endpoint but can no longer read it, nor list all endpoints.
        "anthropic-top-k-poisons-the-endpoint",
        claude(max_tokens="  max_tokens: 1\n  top_k: 5 # <-"),
        "task_settings.top_k",
        "can then no longer read the endpoint back",
    ),
    (
        "unknown-task-setting",
        claude(max_tokens="  max_tokens: 1\n  top_a: 1 # <-"),
        "task_settings.top_a",
        "known: max_tokens, temperature, top_p, top_k",
    ),
    (
        "setting-of-another-task-type",
        OPENAI.replace("text_embedding", "completion").replace("text-embedding-3-small", "gpt-4o")
        + "  dimensions: 256 # <-\n",
        "service_settings.dimensions",
        "unknown setting",
    ),
    (
        "wrong-type-string",
        claude(model_id="  model_id: 5 # <-"),
        "service_settings.model_id",
        "must be a string",
    ),
    (
        "wrong-type-integer",
        claude(max_tokens="  max_tokens: many # <-"),
        "task_settings.max_tokens",
        "must be an integer",
    ),
    (
        "wrong-type-float-for-integer",
        claude(max_tokens="  max_tokens: 10.5 # <-"),
        "task_settings.max_tokens",
        "must be an integer",
    ),
    (
        "wrong-type-double",
        claude(max_tokens="  max_tokens: 1\n  temperature: hot # <-"),
        "task_settings.temperature",
        "must be a number",
    ),
    (
        "wrong-type-boolean",
        OPENAI.replace("text_embedding", "rerank").replace("openai", "cohere")
        + "task_settings:\n  return_documents: 'yes' # <-\n",
        "task_settings.return_documents",
        "must be true or false",
    ),
    (
        "empty-string",
        claude(model_id="  model_id: '' # <-"),
        "service_settings.model_id",
        "must be a non-empty string",
    ),
    (
        "not-positive",
        claude(max_tokens="  max_tokens: 0 # <-"),
        "task_settings.max_tokens",
        "must be a positive integer",
    ),
    (
        "bad-enum",
        OPENAI + "  similarity: manhattan # <-\n",
        "service_settings.similarity",
        "must be one of [cosine, dot_product, l2_norm]",
    ),
    (
        "rate-limit-unknown-key",
        claude(model_id="  model_id: m\n  rate_limit:\n    rpm: 5 # <-"),
        "service_settings.rate_limit.rpm",
        "unknown setting",
    ),
    (
        "rate-limit-not-positive",
        claude(model_id="  model_id: m\n  rate_limit:\n    requests_per_minute: -1 # <-"),
        "service_settings.rate_limit.requests_per_minute",
        "must be a positive long",
    ),
    (
        "rate-limit-not-a-map",
        claude(model_id="  model_id: m\n  rate_limit: 50 # <-"),
        "service_settings.rate_limit",
        "must be a mapping",
    ),
    (
        "bedrock-temperature-range",
        "inference_id: b\ntask_type: completion\nservice: amazonbedrock\nservice_settings:\n  access_key: ${KEY}\n  secret_key: ${OTHER}\n  region: us-east-1\n  model: m\n  provider: anthropic\ntask_settings:\n  temperature: 1.5 # <-\n",
        "task_settings.temperature",
        "must be a less than or equal to [1.0]",
    ),
    (
        "azure-two-credentials",
        "inference_id: a\ntask_type: completion\nservice: azureopenai\nservice_settings:\n  resource_name: r\n  deployment_id: d\n  api_version: v\n  api_key: ${KEY} # <-\n  entra_id: ${OTHER}\n",
        "service_settings.api_key",
        "must have only one of",
    ),
    (
        "in-cluster-missing-allocations",
        "inference_id: e\ntask_type: text_embedding\nservice: elasticsearch\nservice_settings: # <-\n  model_id: .multilingual-e5-small\n  num_threads: 1\n",
        "service_settings.num_allocations",
        "one of the required settings [num_allocations, adaptive_allocations]",
    ),
    (
        "in-cluster-threads-power-of-two",
        E5.replace("num_threads: 1", "num_threads: 3 # <-"),
        "service_settings.num_threads",
        "must be a power of 2",
    ),
    (
        "in-cluster-adaptive-bounds",
        E5.replace(
            "  num_allocations: 1\n",
            "  adaptive_allocations:\n    enabled: true\n    min_number_of_allocations: 5 # <-\n    max_number_of_allocations: 2\n",
        ),
        "service_settings.adaptive_allocations.min_number_of_allocations",
        "must not be larger than",
    ),
    (
        "in-cluster-adaptive-unknown",
        E5 + "  adaptive_allocations:\n    maximum: 2 # <-\n",
        "service_settings.adaptive_allocations.maximum",
        "does not allow the setting [maximum]",
    ),
    (
        "in-cluster-adaptive-and-fixed",
        E5.replace("num_allocations: 1", "num_allocations: 1 # <-")
        + "  adaptive_allocations:\n    enabled: true\n",
        "service_settings.num_allocations",
        "cannot be set if adaptive allocations is enabled",
    ),
    (
        "in-cluster-model-missing",
        E5.replace("  model_id: .multilingual-e5-small\n", "").replace(
            "service_settings:", "service_settings: # <-"
        ),
        "service_settings.model_id",
        "model_id must be provided",
    ),
    # --- chunking
    (
        "chunking-on-completion",
        claude() + "chunking_settings: # <-\n  strategy: sentence\n  max_chunk_size: 100\n",
        "chunking_settings",
        "chunking_settings applies to embedding task types only",
    ),
    (
        "chunking-no-strategy",
        chunking("max_chunk_size: 100", marked=None),
        "chunking_settings.strategy",
        "without ChunkingStrategy",
    ),
    (
        "chunking-bad-strategy",
        chunking("strategy: Sentence\nmax_chunk_size: 100"),
        "chunking_settings.strategy",
        "must be one of [sentence, word, none, recursive]",
    ),
    (
        "chunking-sentence-too-small",
        chunking("strategy: sentence\nmax_chunk_size: 5", marked="max_chunk_size"),
        "chunking_settings.max_chunk_size",
        "greater than or equal to [20.0]",
    ),
    (
        "chunking-sentence-overlap",
        chunking("strategy: sentence\nmax_chunk_size: 100\nsentence_overlap: 2", marked="sentence_overlap"),
        "chunking_settings.sentence_overlap",
        "must be either 0 or 1",
    ),
    (
        "chunking-sentence-foreign-key",
        chunking("strategy: sentence\nmax_chunk_size: 100\noverlap: 3", marked="overlap"),
        "chunking_settings.overlap",
        "can not have the following settings: [overlap]",
    ),
    (
        "chunking-word-missing-overlap",
        chunking("strategy: word\nmax_chunk_size: 100", marked=None),
        "chunking_settings.overlap",
        "required setting [overlap]",
    ),
    (
        "chunking-word-overlap-too-big",
        chunking("strategy: word\nmax_chunk_size: 100\noverlap: 60", marked="overlap"),
        "chunking_settings.overlap",
        "less than or equal to [50.0]",
    ),
    (
        "chunking-word-overlap-zero",
        chunking("strategy: word\nmax_chunk_size: 100\noverlap: 0", marked="overlap"),
        "chunking_settings.overlap",
        "must be a positive integer",
    ),
    (
        "chunking-recursive-empty",
        chunking("strategy: recursive\nmax_chunk_size: 100\nseparators: []", marked="separators"),
        "chunking_settings.separators",
        "empty list of separators",
    ),
    (
        "chunking-recursive-both",
        chunking(
            "strategy: recursive\nmax_chunk_size: 100\nseparator_group: markdown\nseparators: [x]",
            marked="separators",
        ),
        "chunking_settings.separators",
        "both separators and separator_set",
    ),
    (
        "chunking-recursive-bad-group",
        chunking("strategy: recursive\nmax_chunk_size: 100\nseparator_group: html", marked="separator_group"),
        "chunking_settings.separator_group",
        "must be one of [markdown, plaintext]",
    ),
    (
        "chunking-size-not-int",
        chunking("strategy: sentence\nmax_chunk_size: big", marked="max_chunk_size"),
        "chunking_settings.max_chunk_size",
        "must be an integer",
    ),
    # --- secrets and references
    (
        "literal-secret",
        claude(api_key="  api_key: sk-ant-1234 # <-"),
        "service_settings.api_key",
        "a secret must be a reference such as ${CLAUDE_API_KEY}",
    ),
    (
        "literal-secret-number",
        claude(api_key="  api_key: 12345 # <-"),
        "service_settings.api_key",
        "not a literal value",
    ),
    (
        "secret-partly-literal",
        claude(api_key="  api_key: Bearer ${KEY} # <-"),
        "service_settings.api_key",
        "not a literal value",
    ),
    (
        "missing-secret",
        claude(api_key="  api_key: ${NOT_SET_ANYWHERE} # <-"),
        "service_settings.api_key",
        "environment variable NOT_SET_ANYWHERE is not set",
    ),
    (
        "missing-secret-file",
        claude(api_key="  api_key: ${file:/nonexistent/key} # <-"),
        "service_settings.api_key",
        "cannot read /nonexistent/key",
    ),
    (
        "malformed-reference",
        claude(model_id="  model_id: ${not a name} # <-"),
        "service_settings.model_id",
        "is not a reference",
    ),
    (
        "missing-plain-reference",
        claude(model_id="  model_id: claude-${NOT_SET_MODEL} # <-"),
        "service_settings.model_id",
        "environment variable NOT_SET_MODEL is not set",
    ),
    (
        "missing-secret-setting",
        claude(api_key="", service_settings="service_settings: # <-"),
        "service_settings.api_key",
        "[secret_settings] does not contain the required setting [api_key]",
    ),
    (
        "literal-secret-under-unknown-service",
        claude(service="service: antropic", api_key="  api_key: sk-lit # <-"),
        "service_settings.api_key",
        "not a literal value",
    ),
    # DESIGN.md §9: NaN and infinities are refused (Elasticsearch, the state and JSON take none).
    *[
        (
            f"not-finite-{name}",
            claude(max_tokens=f"  max_tokens: 1024\n  temperature: {value} # <-"),
            "task_settings.temperature",
            "NaN and infinities are not numbers",
        )
        for name, value in (("nan", ".nan"), ("inf", ".inf"), ("minus-inf", "-.Inf"), ("overflow", "1e999"))
    ],
    (
        "integer-beyond-64-bits",
        claude(max_tokens="  max_tokens: 99999999999999999999 # <-"),
        "task_settings.max_tokens",
        "must fit in 64 bits",
    ),
    # A reference is kept secret where the planner can keep it: a field of service_settings, or
    # one level down; anywhere else it is refused (it would be shown).
    (
        "reference-in-task-settings",
        claude(max_tokens="  max_tokens: ${KEY} # <-"),
        "task_settings.max_tokens",
        "a reference must be the whole value of a service_settings field at most two levels deep",
    ),
    (
        "reference-three-levels-deep",
        claude(model_id="  model_id: m\n  rate_limit:\n    requests_per_minute: {x: '${KEY}'} # <-"),
        "service_settings.rate_limit.requests_per_minute.x",
        "a reference must be the whole value of a service_settings field at most two levels deep",
    ),
    (
        "reference-in-a-list",
        claude(model_id="  model_id: m\n  stop:\n    - ${KEY} # <-"),
        "service_settings.stop[0]",
        "a reference must be the whole value of a service_settings field at most two levels deep",
    ),
    (
        "reference-as-the-service",
        claude(service="service: ${OTHER} # <-"),
        "service",
        "a reference must be the whole value of a service_settings field at most two levels deep",
    ),
    (
        "value-too-long",
        claude(model_id="  model_id: " + "m" * (64 * 1024 + 1) + " # <-"),
        "service_settings.model_id",
        "a value may be at most 65536 characters long",
    ),
    (
        "nested-too-deep",
        claude(max_tokens="  max_tokens: " + "[" * 40 + "]" * 40 + " # <-"),
        "task_settings.max_tokens" + "[0]" * 30,
        "nested more than 32 levels deep",
    ),
]


def marked_line(text: str) -> int:
    lines = [i for i, line in enumerate(text.splitlines(), start=1) if "# <-" in line]
    assert len(lines) == 1, f"mark exactly one line with '# <-': {text}"
    return lines[0]


def run(tmp_path: Path, files: dict[str, str], *args: str, env: dict[str, str] | None = None) -> Any:
    folder = tmp_path / "manifests"
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    runner = CliRunner()
    return runner.invoke(
        app, ["validate", "--manifests", str(folder), *args], env=ENV if env is None else env
    )


@pytest.mark.parametrize(("text", "path", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_manifest(tmp_path: Path, text: str, path: str, message: str) -> None:
    result = run(tmp_path, {"m.yaml": text})
    assert result.exit_code == 1, result.output
    expected = f"{tmp_path}/manifests/m.yaml:{marked_line(text)}: {path + ': ' if path else ''}"
    found = [line for line in result.stdout.splitlines() if line.startswith(expected) and message in line]
    assert found, f"expected {expected}...{message}\ngot:\n{result.stdout}"


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 60


def test_every_error_at_once_sorted_by_file_and_line(tmp_path: Path) -> None:
    files = {
        "b.yaml": claude(inference_id="inference_id: B", max_tokens="  max_tokens: 0"),
        "a/z.yaml": claude(inference_id="inference_id: z", api_key="  api_key: literal")
        + "---\n"
        + "inference_id: y\nextra: 1\n",
    }
    result = run(tmp_path, files)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    root = f"{tmp_path}/manifests"
    assert lines == [
        f"{root}/a/z.yaml:5: service_settings.api_key: a secret must be a reference such as ${{Z_API_KEY}} or ${{file:PATH}}, not a literal value",
        f"{root}/a/z.yaml:10: service: required key is missing",
        f"{root}/a/z.yaml:10: service_settings: required key is missing",
        f"{root}/a/z.yaml:10: task_type: required key is missing",
        f"{root}/a/z.yaml:11: extra: unknown key (known: inference_id, task_type, service, service_settings, task_settings, chunking_settings, lifecycle, wait)",
        f"{root}/b.yaml:1: inference_id: must be lowercase",
        f"{root}/b.yaml:8: task_settings.max_tokens: [task_settings] Invalid value [0]. [max_tokens] must be a positive integer",
    ]
    assert "7 error(s) in 2 file(s)" in result.stderr


def test_duplicate_ids_name_both_places(tmp_path: Path) -> None:
    result = run(tmp_path, {"one.yaml": claude(), "two/again.yaml": "# a comment\n" + claude()})
    assert result.exit_code == 1
    root = f"{tmp_path}/manifests"
    assert (
        f"{root}/one.yaml:1: inference_id: claude is also defined at {root}/two/again.yaml:2" in result.stdout
    )
    assert (
        f"{root}/two/again.yaml:2: inference_id: claude is also defined at {root}/one.yaml:1" in result.stdout
    )


def test_task_types_follow_the_version(tmp_path: Path) -> None:
    text = claude(task_type="task_type: chat_completion # <-")
    assert run(tmp_path, {"m.yaml": text}).exit_code == 0
    result = run(tmp_path, {"m.yaml": text}, "--es-version", "9.4")
    assert result.exit_code == 1
    assert (
        f"m.yaml:{marked_line(text)}: task_type: The [anthropic] service does not support task type [chat_completion]"
        in result.stdout
    )


def test_services_follow_the_version(tmp_path: Path) -> None:
    text = "inference_id: a\ntask_type: completion\nservice: ai21 # <-\nservice_settings:\n  api_key: ${KEY}\n  model_id: jamba\n"
    assert run(tmp_path, {"m.yaml": text}).exit_code == 0
    result = run(tmp_path, {"m.yaml": text}, "--es-version", "8.19")
    assert "m.yaml:3: service: the ai21 service is not available on Elasticsearch 8.19" in result.stdout


def test_an_unknown_version_is_a_usage_error(tmp_path: Path) -> None:
    assert (
        run(tmp_path, {"m.yaml": claude()}, "--es-version", "7.17").exit_code == 1
    )  # a usage error, not "changes"


def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", "--manifests", str(tmp_path / "nope")], env=ENV)
    assert result.exit_code == 1
    assert "the manifests folder does not exist" in result.stdout


def test_the_manifests_folder_comes_from_the_environment(tmp_path: Path) -> None:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "m.yaml").write_text(claude())
    result = CliRunner().invoke(app, ["validate"], env={**ENV, "RECONCILER_MANIFESTS": str(folder)})
    assert result.exit_code == 0, result.output
    assert "1 endpoint(s) in 1 file(s) are valid for Elasticsearch 9.5." in result.stdout


def test_warnings_do_not_fail(tmp_path: Path) -> None:
    elser = "inference_id: e\ntask_type: sparse_embedding\nservice: elser # <-\nservice_settings:\n  num_threads: 1\n  num_allocations: 1\n"
    result = run(tmp_path, {"e.yaml": elser, "c.yaml": claude() + "wait:\n  timeout: 5m\n"})
    assert result.exit_code == 0, result.output
    assert "e.yaml:3: service: warning: the elser service is deprecated" in result.stderr
    assert "c.yaml:9: wait: warning: the anthropic service deploys no trained model" in result.stderr


def test_the_elser_alias_with_text_embedding_is_the_elasticsearch_service(tmp_path: Path) -> None:
    e5 = (
        "inference_id: e5\ntask_type: text_embedding\nservice: elser\nservice_settings:\n"
        "  model_id: .multilingual-e5-small\n  num_threads: 1\n  num_allocations: 1\n"
    )
    result = run(tmp_path, {"e.yaml": e5})
    assert result.exit_code == 0, result.output
    assert "e.yaml:3: service: warning: the elser service is deprecated" in result.stderr


def test_the_examples_in_the_repository_are_valid() -> None:
    env = {"ANTHROPIC_API_KEY": "a", "OPENAI_API_KEY": "b", "COHERE_API_KEY": "c"}
    root = Path(__file__).resolve().parents[1] / "manifests"
    for version in ("8.16", "8.19", "9.0", "9.5"):
        result = CliRunner().invoke(
            app, ["validate", "--manifests", str(root), "--es-version", version], env=env
        )
        assert result.exit_code == 0, result.output
        assert "5 endpoint(s) in 5 file(s)" in result.stdout


# -- validate --offline: everything but resolving references (pre-commit, pull requests from forks)

UNRESOLVED = ("is not set", "cannot read")  # the only errors that need a reference's value
# References that cannot be resolved here: unset variables, unreadable files, in secret fields, in a
# non-secret field and one level down (an enum a stand-in value would fail), and escaped text.
UNRESOLVABLE = """\
inference_id: unresolvable
task_type: text_embedding
service: openai
service_settings:
  api_key: ${OFFLINE_TEST_UNSET_KEY}
  model_id: ${OFFLINE_TEST_UNSET_MODEL}
  dimensions: ${file:/nonexistent/dimensions}
  similarity: ${OFFLINE_TEST_UNSET_SIMILARITY}
  rate_limit:
    requests_per_minute: ${file:/nonexistent/rpm}
  url: https://example.com/$${literal}
"""


def test_validate_names_each_unresolvable_reference_and_offline_passes(tmp_path: Path) -> None:
    unset = {name: None for name in ("OFFLINE_TEST_UNSET_KEY", "OFFLINE_TEST_UNSET_MODEL")}
    online = run(tmp_path, {"m.yaml": UNRESOLVABLE}, env=unset)  # type: ignore[arg-type]
    assert online.exit_code == 1, online.output
    for reference in (
        "${OFFLINE_TEST_UNSET_KEY}",
        "${OFFLINE_TEST_UNSET_MODEL}",
        "${file:/nonexistent/dimensions}",
        "${OFFLINE_TEST_UNSET_SIMILARITY}",
        "${file:/nonexistent/rpm}",
    ):
        assert f"(from {reference})" in online.stdout, online.stdout

    offline = run(tmp_path, {"m.yaml": UNRESOLVABLE}, "--offline", env=unset)  # type: ignore[arg-type]
    assert offline.exit_code == 0, offline.output
    assert "1 endpoint(s) in 1 file(s) are valid" in offline.stdout


def test_offline_reads_no_variable_and_no_file(tmp_path: Path) -> None:
    """A FIFO without a writer would block any open; a variable that is set is not read either."""
    os.mkfifo(tmp_path / "fifo")
    text = claude(api_key=f"  api_key: ${{file:{tmp_path / 'fifo'}}}")
    result = run(tmp_path, {"m.yaml": text}, "--offline", env={})
    assert result.exit_code == 0, result.output

    from reconciler.resolver import OFFLINE_VALUE, Resolver
    from reconciler.sensitive import Reference

    reader = Resolver.offline()
    assert reader.resolve("${KEY}-$${x}") == f"{OFFLINE_VALUE}-${{x}}"
    assert reader.value(Reference("${file:/etc/passwd}", "file", "/etc/passwd")) == OFFLINE_VALUE


@pytest.mark.parametrize(("text", "path", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_offline_reports_every_error_but_an_unresolved_reference(
    tmp_path: Path, text: str, path: str, message: str
) -> None:
    result = run(tmp_path, {"m.yaml": text}, "--offline", env={})
    expected = f"{tmp_path}/manifests/m.yaml:{marked_line(text)}: {path + ': ' if path else ''}"
    found = [line for line in result.stdout.splitlines() if line.startswith(expected) and message in line]
    if any(words in message for words in UNRESOLVED):
        assert not found, result.stdout
        return
    assert result.exit_code == 1, result.output
    assert found, f"expected {expected}...{message}\ngot:\n{result.stdout}"


def test_offline_output_holds_no_secret(tmp_path: Path) -> None:
    """The canary of tests/test_e2e_canary.py, for --offline: a value from a reference, in a field
    the catalog refuses, is never shown (offline it is not even read)."""
    canary = "sk-canary-offline-7f3a"
    text = claude(model_id="  model_id: ${KEY}", max_tokens="  max_tokens: -1")
    result = run(tmp_path, {"m.yaml": text}, "--offline", env={"KEY": canary})
    assert result.exit_code == 1, result.output
    assert canary not in result.output


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("model_id", "${not a name}", "${not a name} is not a reference"),
        ("model_id", "${file:}", "${file:} is not a reference"),
        ("model_id", "claude-${bad-name}", "${bad-name} is not a reference"),
        ("api_key", "${KEY", "a secret must be a reference"),
        ("api_key", "${not a name}", "a secret must be a reference"),
    ],
)
def test_a_malformed_reference_is_an_error_offline(
    tmp_path: Path, field: str, value: str, message: str
) -> None:
    text = claude(**{field: f"  {field}: {value} # <-"})
    result = run(tmp_path, {"m.yaml": text}, "--offline", env={})
    assert result.exit_code == 1, result.output
    expected = f"{tmp_path}/manifests/m.yaml:{marked_line(text)}: service_settings.{field}: "
    assert any(x.startswith(expected) and message in x for x in result.stdout.splitlines()), result.stdout


def test_syntax_errors_point_at_the_parsers_line(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        inference_id: x
        task_type: completion
        service_settings:
          api_key: "unclosed
        """
    )
    result = run(tmp_path, {"m.yaml": text})
    assert result.exit_code == 1
    assert "m.yaml:5: YAML syntax error" in result.stdout


# What Elasticsearch itself answers for these refusals is stated, with its source, in
# tests/es_facts/errors.yaml (run by tests/test_es_facts.py); these tests check only the tool's words.


# -- DESIGN.md §9: parsing and `${file:PATH}` are bounded ---------------------------------------
# What would hang or exhaust memory without the defence runs in a child process, its address space
# limited; the timeout only guards against a hang (the assertions are about the error, not time).

CHILD = """\
import resource, runpy, sys
limit = 2 * 1024**3
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.argv = ["reconciler", *sys.argv[1:]]
runpy.run_module("reconciler", run_name="__main__")
"""


def run_child(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    folder = tmp_path / "manifests"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "m.yaml").write_text(text)
    return subprocess.run(
        [sys.executable, "-c", CHILD, "validate", "--manifests", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **ENV},
        check=False,
    )


def test_a_billion_laughs_fails_fast_with_a_located_error(tmp_path: Path) -> None:
    anchors = ['x-a0: &a0 "lol"']
    for level in range(1, 10):
        anchors.append(f"x-a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]")
    text = "\n".join(anchors) + "\n" + claude(max_tokens="  stop: *a9 # <-")
    result = run_child(tmp_path, text)
    assert result.returncode == 1, result
    errors = [line for line in result.stdout.splitlines() if "values once aliases are expanded" in line]
    assert errors, result.stdout
    assert errors[0].startswith(f"{tmp_path}/manifests/m.yaml:"), errors


def test_aliases_within_the_budget_still_work(tmp_path: Path) -> None:
    text = claude(max_tokens="  max_tokens: &n 16\n  temperature: *n")
    result = run(tmp_path, {"m.yaml": text})
    assert result.exit_code == 0, result.output


def test_an_oversized_manifest_file_is_refused_before_parsing(tmp_path: Path) -> None:
    text = claude() + ("# padding\n" * (1024 * 1024 // 10 + 1))
    result = run(tmp_path, {"m.yaml": text})
    assert result.exit_code == 1, result.output
    assert f"{tmp_path}/manifests/m.yaml:1: the file is larger than 1024 KiB" in result.stdout


@pytest.mark.parametrize(
    ("target", "message"),
    [("/dev/zero", "not a regular file"), ("fifo", "not a regular file"), ("big", "larger than 64 KiB")],
)
def test_file_references_read_regular_files_only_and_at_most_64_kib(
    tmp_path: Path, target: str, message: str
) -> None:
    if target == "fifo":
        os.mkfifo(tmp_path / "fifo")  # no writer: opening it for reading would wait forever
        target = str(tmp_path / "fifo")
    elif target == "big":
        (tmp_path / "big").write_text("k" * (64 * 1024 + 1))
        target = str(tmp_path / "big")
    text = claude(api_key=f"  api_key: ${{file:{target}}} # <-")
    result = run_child(tmp_path, text)
    assert result.returncode == 1, result
    expected = (
        f"{tmp_path}/manifests/m.yaml:{marked_line(text)}: service_settings.api_key: cannot read {target}"
    )
    found = [line for line in result.stdout.splitlines() if line.startswith(expected)]
    assert found, result.stdout
    assert message in found[0], result.stdout


def test_a_refused_manifest_stops_apply_before_any_change(make_tool: Any) -> None:
    """Over a real socket: an alias bomb next to a valid manifest; apply changes nothing."""
    tool = make_tool()
    anchors = ['x-a0: &a0 "lol"']
    for level in range(1, 10):
        anchors.append(f"x-a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]")
    tool.write("bomb.yaml", "\n".join(anchors) + "\n")
    tool.write("fine.yaml", claude().replace("${KEY}", "${ANTHROPIC_API_KEY}"))
    before = tool.live_ids()
    result = tool("apply", "--auto-approve")
    assert result.code == 1, result
    assert f"{tool.manifests}/bomb.yaml:1: " in result.stdout + result.stderr, result
    assert tool.live_ids() == before  # nothing created
