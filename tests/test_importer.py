"""`import` writes manifests only: never over a file, never an unsafe name, and what it wrote must validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.catalog import Version
from reconciler.importer import UnsafeImportError, validated, write_manifests
from reconciler.session import Cluster


def test_a_written_manifest_that_does_not_validate_is_an_error(tmp_path: Path) -> None:
    written = tmp_path / "odd.yaml"
    written.write_text("inference_id: odd\ntask_type: completion\nservice: anthropic\nservice_settings: {}\n")
    cluster = Cluster({}, Version(9, 5), {"odd": {}}, None, None)
    with pytest.raises(
        UnsafeImportError, match="written but do not validate: fix them before plan"
    ) as raised:
        validated([(written, [])], cluster.version)
    assert f"\n{written}:4: service_settings.api_key: " in str(raised.value)  # where the user finds it


HOSTILE = {
    "inference_id": "x/../../evil",
    "task_type": "completion",
    "service": "anthropic",
    "service_settings": {"model_id": "claude-3-5-sonnet-20240620"},
}
GOOD = {**HOSTILE, "inference_id": "good"}


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("hostile_id", ["x/../../evil", "../evil", "ABSOLUTE", "Evil", ".hidden", "a\\b"])
def test_an_id_unfit_for_a_file_name_writes_nothing(tmp_path: Path, hostile_id: str) -> None:
    if hostile_id == "ABSOLUTE":  # `folder / "/abs.yaml"` is /abs.yaml
        hostile_id = f"{tmp_path}/evil"
    out = tmp_path / "deep" / "out"
    cluster = Cluster({}, Version(9, 5), {}, None, None)
    endpoints = [GOOD, {**HOSTILE, "inference_id": hostile_id}]
    with pytest.raises(UnsafeImportError, match="not a valid inference id") as raised:
        write_manifests(endpoints, out, cluster)
    assert repr(hostile_id) in str(raised.value)
    assert _files(tmp_path) == set()  # not the hostile one, nor the good one beside it


def test_an_existing_manifest_is_never_overwritten(tmp_path: Path) -> None:
    cluster = Cluster({}, Version(9, 5), {}, None, None)
    existing = tmp_path / "good.yaml"
    existing.write_text("mine\n")
    (tmp_path / "dangling.yaml").symlink_to(tmp_path / "nowhere.yaml")
    for endpoint in (GOOD, {**GOOD, "inference_id": "dangling"}):
        with pytest.raises(UnsafeImportError, match="already exists") as raised:
            write_manifests([{**GOOD, "inference_id": "fresh"}, endpoint], tmp_path, cluster)
        assert f"{tmp_path / (str(endpoint['inference_id']) + '.yaml')}" in str(raised.value)
    assert existing.read_text() == "mine\n"
    assert not (tmp_path / "fresh.yaml").exists()
    assert not (tmp_path / "nowhere.yaml").exists()


def test_a_value_known_only_by_digest_is_written_as_a_reference_to_fill_in() -> None:
    """A manifest referenced model_id (any field is sensitive then): the cluster read masks it, and
    import writes a reference, never the mask as a literal model id."""
    from reconciler import catalog
    from reconciler.importer import manifest_for

    endpoint = {
        "inference_id": "claude",
        "task_type": "completion",
        "service": "anthropic",
        "service_settings": {"model_id": "(sensitive)", "rate_limit": {"requests_per_minute": 50}},
        "task_settings": {"max_tokens": 10},
    }
    manifest, references = manifest_for(endpoint, catalog.SERVICES["anthropic"])
    assert manifest["service_settings"]["model_id"] == "${CLAUDE_MODEL_ID}"
    assert references == ["CLAUDE_API_KEY", "CLAUDE_MODEL_ID"]
