"""Overlays: base manifests patched, excluded and extended per environment, every value still located."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler import overlays
from reconciler.catalog import Version
from reconciler.manifests import load
from reconciler.manifests_yaml import Document, ManifestError
from reconciler.overlays import Layers
from tests.e2e import CLAUDE

V95 = Version.parse("9.5")
ENV = {"ANTHROPIC_API_KEY": "sk-ant", "OPENAI_API_KEY": "sk-openai"}

E5 = """\
inference_id: e5
task_type: text_embedding
service: elasticsearch
service_settings:
  model_id: .multilingual-e5-small
  num_threads: 1
  num_allocations: 1
chunking_settings:
  strategy: sentence
  max_chunk_size: 200
  sentence_overlap: 1
"""


def project(tmp_path: Path, overlay: dict[str, str], base: dict[str, str] | None = None) -> Layers:
    for folder, files in (("base", base or {"e5.yaml": E5, "claude.yaml": CLAUDE}), ("prod", overlay)):
        (tmp_path / folder).mkdir(exist_ok=True)
        for name, text in files.items():
            (tmp_path / folder / name).write_text(text)
    return Layers(tmp_path / "base", tmp_path / "prod", "prod")


def documents(layers: Layers) -> dict[str, Document]:
    items, _ = overlays.compose(layers)
    assert not [i for i in items if isinstance(i, ManifestError)], items
    return {i.data["inference_id"]: i for i in items if isinstance(i, Document)}


def problems(layers: Layers) -> list[str]:
    items, _ = overlays.compose(layers)
    return [str(i) for i in items if isinstance(i, ManifestError)]


def test_a_patch_merges_mappings_replaces_values_and_null_removes(tmp_path: Path) -> None:
    patch = """\
patch: e5
service_settings:
  num_allocations: null
  adaptive_allocations: {enabled: true, min_number_of_allocations: 1, max_number_of_allocations: 4}
chunking_settings:
  max_chunk_size: 100
"""
    doc = documents(project(tmp_path, {"e5.yaml": patch}))["e5"]
    assert doc.data["service_settings"] == {
        "model_id": ".multilingual-e5-small",
        "num_threads": 1,
        "adaptive_allocations": {
            "enabled": True,
            "min_number_of_allocations": 1,
            "max_number_of_allocations": 4,
        },
    }
    assert doc.data["chunking_settings"] == {
        "strategy": "sentence",
        "max_chunk_size": 100,
        "sentence_overlap": 1,
    }


def test_patched_values_point_at_the_patch_and_the_rest_at_the_base(tmp_path: Path) -> None:
    patch = "# prod\npatch: e5\nchunking_settings:\n  max_chunk_size: 100\n"
    doc = documents(project(tmp_path, {"e5.yaml": patch}))["e5"]
    base, overlay = str(tmp_path / "base/e5.yaml"), str(tmp_path / "prod/e5.yaml")
    assert doc.locate("chunking_settings.max_chunk_size") == (overlay, 4)
    assert doc.locate("chunking_settings.strategy") == (base, 9)
    assert doc.locate("chunking_settings") == (base, 8)  # merged into, not replaced
    assert doc.locate("service_settings.num_threads") == (base, 6)
    assert doc.locate("inference_id") == (base, 1)


def test_validation_errors_after_patching_name_the_file_to_fix(tmp_path: Path) -> None:
    patch = "patch: claude\ntask_settings:\n  max_tokens: many\n  colour: blue\n"
    layers = project(
        tmp_path,
        {"claude.yaml": patch},
        {"claude.yaml": CLAUDE, "e5.yaml": E5.replace("num_threads: 1", "num_threads: x")},
    )
    validation = load(layers, V95, ENV)
    found = {(e.file, e.line, e.path) for e in validation.errors}
    overlay, base = str(tmp_path / "prod/claude.yaml"), str(tmp_path / "base/e5.yaml")
    assert (overlay, 3, "task_settings.max_tokens") in found
    assert (overlay, 4, "task_settings.colour") in found
    assert (base, 6, "service_settings.num_threads") in found
    assert validation.files == 3


def test_an_overlay_excludes_base_endpoints_and_adds_its_own(tmp_path: Path) -> None:
    openai = "inference_id: only-prod\ntask_type: text_embedding\nservice: openai\nservice_settings:\n  api_key: ${OPENAI_API_KEY}\n  model_id: text-embedding-3-small\n"
    layers = project(tmp_path, {"a.yaml": "exclude: [claude]\n", "b.yaml": openai})
    validation = load(layers, V95, ENV)
    assert validation.ok, validation.errors
    assert sorted(d.inference_id for d in validation.endpoints) == ["e5", "only-prod"]
    prod_only = next(d for d in validation.endpoints if d.inference_id == "only-prod")
    assert prod_only.source.file == str(tmp_path / "prod/b.yaml")
    assert prod_only.secret_references == {"api_key": "${OPENAI_API_KEY}"}


def test_without_an_overlay_the_base_is_read_as_it_is(tmp_path: Path) -> None:
    layers = project(tmp_path, {})
    plain = load(tmp_path / "base", V95, ENV)
    layered = load(Layers(layers.base, None, "dev"), V95, ENV)
    assert layered == plain
    assert load(layers, V95, ENV) == plain


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"p.yaml": "patch: e6\nservice_settings: {num_threads: 2}\n"},
            ["p.yaml:1: patch: no base manifest has the inference_id e6 (base ids: claude, e5)"],
        ),
        (
            {"p.yaml": "exclude: [claude, nope]\n"},
            ["p.yaml:1: exclude[1]: no base manifest has the inference_id nope (base ids: claude, e5)"],
        ),
        (
            {"p.yaml": "patch: e5\ntask_settings: {}\n---\npatch: e5\nchunking_settings: {}\n"},
            ["p.yaml:4: patch: e5 is also patched at {prod}/p.yaml:1"],
        ),
        (
            {"p.yaml": "exclude: [e5]\n---\npatch: e5\nchunking_settings: {}\n"},
            ["p.yaml:3: patch: e5 is excluded at {prod}/p.yaml:1: patch it or exclude it"],
        ),
        (
            {"p.yaml": "inference_id: e5\ntask_type: text_embedding\nservice: openai\n"},
            [
                "p.yaml:1: inference_id: e5 is in the base manifests ({base}/e5.yaml:1): change it with patch: e5"
            ],
        ),
        (
            {"p.yaml": "patch: e5\ninference_id: e5\n"},
            [
                "p.yaml:1: an overlay document holds one of patch:, exclude: or inference_id: (patch and inference_id)"
            ],
        ),
        (
            {"p.yaml": "service_settings: {}\n"},
            ["p.yaml:1: an overlay document holds one of patch:, exclude: or inference_id: (none of them)"],
        ),
        (
            {"p.yaml": "exclude: e5\n"},
            ["p.yaml:1: exclude: must be a list of inference_ids of base manifests"],
        ),
        ({"p.yaml": "patch: [e5]\n"}, ["p.yaml:1: patch: must be the inference_id of a base manifest"]),
        (
            {"p.yaml": "patch: e5\nservice_settings: {num_threads: 1, num_threads: 2}\n"},
            ["p.yaml:2: service_settings.num_threads: duplicate key (first at line 2)"],
        ),
    ],
)
def test_every_bad_overlay_document_is_located_in_the_overlay(
    tmp_path: Path, files: dict[str, str], expected: list[str]
) -> None:
    layers = project(tmp_path, files)
    shown = [p.removeprefix(str(tmp_path / "prod") + "/") for p in problems(layers)]
    assert shown == [e.format(prod=tmp_path / "prod", base=tmp_path / "base") for e in expected]


def test_all_the_overlays_errors_are_reported_together(tmp_path: Path) -> None:
    layers = project(
        tmp_path, {"a.yaml": "patch: x\n", "b.yaml": "exclude: [y]\n", "c.yaml": "nothing: here\n"}
    )
    assert len(problems(layers)) == 3


def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    assert problems(Layers(tmp_path / "nope", None, "dev")) == [
        f"{tmp_path / 'nope'}:1: the manifests folder does not exist"
    ]
    project(tmp_path, {})
    missing = Layers(tmp_path / "base", tmp_path / "missing", "dev")
    assert problems(missing) == [f"{tmp_path / 'missing'}:1: the overlay folder does not exist"]


# -- the merge is RFC 7386's --------------------------------------------------------------------

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.dictionaries(st.sampled_from("abc"), inner, max_size=3) | st.lists(inner, max_size=2),
    max_leaves=8,
)
mappings = st.dictionaries(st.sampled_from("abcd"), values, max_size=4)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, section 2, as written there."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@given(base=mappings, patch=mappings)
def test_the_merge_is_a_json_merge_patch_and_keeps_a_location_for_every_value(
    base: dict[str, Any], patch: dict[str, Any]
) -> None:
    base_doc = Document("base.yaml", 1, {"inference_id": "x", **base}, {"inference_id": 1})
    patch_doc = Document("patch.yaml", 1, {"patch": "x", **patch}, {"patch": 1})
    for key in base:
        base_doc.lines[key] = 2
    for key in patch:
        patch_doc.lines[key] = 3
    merged = overlays.patched(base_doc, patch_doc)
    assert merged.data == merge_patch({"inference_id": "x", **base}, patch)
    for key in merged.data:
        merged_into = isinstance(base.get(key), dict) and isinstance(patch.get(key), dict)
        file, _ = merged.locate(key)
        assert file == ("patch.yaml" if key in patch and not merged_into else "base.yaml")


def test_environments_read_together_share_the_base_yet_each_gets_what_it_would_alone(tmp_path: Path) -> None:
    patch = "patch: claude\ntask_settings:\n  max_tokens: 7\n"
    prod = project(tmp_path, {"claude.yaml": patch, "x.yaml": "exclude: [e5]\n"})
    dev = Layers(prod.base, None, "dev")
    alone = [
        load(layers, version, ENV) for layers in (prod, dev, prod) for version in (V95, Version.parse("8.19"))
    ]
    shared = overlays.Shared()
    together = [
        load(Layers(layers.base, layers.overlay, layers.environment, shared), version, ENV)
        for layers in (prod, dev, prod)
        for version in (V95, Version.parse("8.19"))
    ]
    assert together == alone
    assert list(shared.bases) == [prod.base]  # read once
    claude = {
        (v.endpoints[0].task_settings or {})["max_tokens"]
        for v in together
        if v.endpoints[0].inference_id == "claude"
    }
    assert claude == {7, 1024}
