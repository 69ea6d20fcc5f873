"""The ``cloudserve`` command line (Typer + Rich).

Each command group lives in its own module with a ``register(app)`` function. Errors from
cloudserve print as one clear line (no traceback) and set the exit code: 2 for configuration
and usage errors, 1 for everything else.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import typer

from cloudserve.errors import CloudServeError, ConfigError

__all__ = ["app", "main"]

app = typer.Typer(
    name="cloudserve",
    help="Deploy, serve, batch-predict, tune and monitor models on any cloud, or locally.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_COMMAND_MODULES = ("core", "serve", "cost", "demo", "rollout")

for _name in _COMMAND_MODULES:
    _module = f"cloudserve.cli.{_name}"
    if importlib.util.find_spec(_module) is not None:
        importlib.import_module(_module).register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (also used by the console script)."""
    import click
    from rich.console import Console
    from rich.markup import escape

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        result = app(args=argv, standalone_mode=False)
    except ConfigError as exc:
        err.print(f"[bold red]config error:[/] {escape(str(exc))}")
        return 2
    except CloudServeError as exc:
        err.print(f"[bold red]error:[/] {type(exc).__name__}: {escape(str(exc))}")
        return 1
    except click.exceptions.Abort:
        err.print("aborted")
        return 130
    except click.exceptions.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
