"""docs/cli.md is generated from the commands; this keeps the page in step with the code."""

from __future__ import annotations

from pathlib import Path

from cloudserve.cli.reference import cli_reference_markdown

PAGE = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_cli_page_matches_the_commands():
    assert PAGE.read_text(encoding="utf-8") == cli_reference_markdown(), (
        "docs/cli.md is out of date: python -m cloudserve.cli.reference > docs/cli.md"
    )


def test_every_command_is_on_the_page():
    import typer.main

    from cloudserve.cli import app

    root = typer.main.get_command(app)
    text = PAGE.read_text(encoding="utf-8")
    for name in root.commands:  # type: ignore[attr-defined]
        assert f"## `cloudserve {name}" in text, name
