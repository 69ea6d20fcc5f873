"""Shared CLI rendering: JSON output, tables and a Rich progress display for long waits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from pydantic import BaseModel
from rich.console import Console

from cloudserve.waiting import Progress, ProgressCallback


def _make_console() -> Console:
    # On a terminal Rich fits tables to its width. Piped into a file or another program there
    # is no width to fit: cells are printed whole instead of being cut to "tar…".
    probe = Console()
    if probe.is_terminal:
        return Console(highlight=False)
    return Console(highlight=False, width=100_000, soft_wrap=True)


console = _make_console()


def to_jsonable(value: Any) -> Any:
    """Pydantic results (and lists of them) as plain JSON-able data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout (machine-readable ``--json`` output)."""
    text = orjson.dumps(to_jsonable(value), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    print(text.decode())


@contextmanager
def progress_display(enabled: bool = True) -> Iterator[ProgressCallback | None]:
    """A progress callback that renders waits as a Rich status line (None when disabled)."""
    if not enabled or not console.is_terminal:
        yield None
        return
    with console.status("starting…") as status:

        def update(p: Progress) -> None:
            pct = f" {p.fraction:.0%}" if p.fraction is not None else ""
            status.update(
                f"{p.description}: {p.status}{pct} ({p.elapsed_s:.0f}s / {p.timeout_s:.0f}s)"
            )

        yield update
