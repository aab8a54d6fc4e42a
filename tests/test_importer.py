"""`import` adopts only what validates: a written manifest that does not is an error, never a silent skip."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.catalog import Version
from reconciler.importer import adopted_state
from reconciler.session import Cluster
from reconciler.state import StateError


def test_a_written_manifest_that_does_not_validate_is_an_error(tmp_path: Path) -> None:
    written = tmp_path / "odd.yaml"
    written.write_text("inference_id: odd\ntask_type: completion\nservice: anthropic\nservice_settings: {}\n")
    cluster = Cluster({}, Version(9, 5), {"odd": {}}, None, None)
    with pytest.raises(StateError, match="nothing was adopted") as raised:
        adopted_state([(written, [])], cluster, "default")
    assert f"\n{written}:4: service_settings.api_key: " in str(raised.value)  # where the user finds it
