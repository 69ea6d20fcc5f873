from __future__ import annotations

from pathlib import Path

from cloudserve.cli.core import capability_matrix_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "capabilities.md"


def test_capability_page_matches_the_code():
    assert DOC.read_text() == capability_matrix_markdown(), (
        "docs/capabilities.md is stale: regenerate it with "
        "`cloudserve capabilities --markdown > docs/capabilities.md`"
    )
