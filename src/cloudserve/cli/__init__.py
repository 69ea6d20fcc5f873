"""The ``cloudserve`` command line (Typer + Rich).

Each command group lives in its own module with a ``register(app)`` function. Every error goes
through one boundary (:mod:`cloudserve.cli._errors`): one line on stderr, exit code 2 for usage,
configuration and validation mistakes, 1 for a failed operation, and no traceback unless
``--debug``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Annotated

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="cloudserve",
    help="Deploy, serve, batch-predict, tune and monitor models on any cloud, or locally.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"cloudserve {version('cloudserve')}")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            print("cloudserve (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the Python traceback of an error.")
    ] = False,
) -> None:
    """Deploy, serve, batch-predict, tune and monitor models on any cloud, or locally."""


_COMMAND_MODULES = ("core", "jobs", "init", "serve", "cost", "demo", "rollout")

for _name in _COMMAND_MODULES:
    _module = f"cloudserve.cli.{_name}"
    if importlib.util.find_spec(_module) is not None:
        importlib.import_module(_module).register(app)


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("CLOUDSERVE_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (also used by the console script)."""
    from rich.console import Console
    from rich.markup import escape

    from cloudserve.cli._errors import classify

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = app(args=args, prog_name="cloudserve", standalone_mode=False)
    except BaseException as exc:  # the one boundary: everything becomes one line + exit code
        if isinstance(exc, SystemExit):
            raise
        code, line = classify(exc)
        if _debug_requested(args) and line is not None:
            raise
        if line is not None:
            err = Console(stderr=True, highlight=False, soft_wrap=True)
            head, _, rest = line.partition(":")
            err.print(f"[bold red]{escape(head)}:[/]{escape(rest)}")
        return code
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
