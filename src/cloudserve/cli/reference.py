"""The command reference, ``docs/cli.md``, generated from the commands themselves.

``python -m cloudserve.cli.reference > docs/cli.md`` rewrites the page; a test fails when the
page and the commands differ.
"""

from __future__ import annotations

from typing import Any

import typer.main

__all__ = ["cli_reference_markdown"]

HEADER = """# Command reference

Generated from the commands by `python -m cloudserve.cli.reference > docs/cli.md`; a test keeps
this page in step with the code. `cloudserve COMMAND --help` (or `-h`) prints the same.

Every command exits 0 on success, 2 for a usage, configuration or validation mistake, and 1 when
an operation failed, printing one line on stderr (add `--debug` before the command for the
Python traceback). Commands that talk to a target take `--target NAME` (a target of
`cloudserve.yaml`, default: its default target, else `local`) and `--config PATH`; `--json`
prints machine-readable output.

Shell completion: `cloudserve --install-completion` installs it for the current shell,
`cloudserve --show-completion` prints the script.
"""


def _param_row(param: Any) -> str | None:
    if getattr(param, "hidden", False) or param.name in ("help",):
        return None
    if param.param_type_name == "argument":
        name = f"`{_arg_name(param)}`"
    else:
        names = [*param.opts, *param.secondary_opts]
        name = " / ".join(f"`{n}`" for n in names)
    help_text = (getattr(param, "help", None) or "").replace("|", "\\|").replace("\n", " ")
    default = param.default
    plain_flag = getattr(param, "is_flag", False) and not param.secondary_opts
    unset = default is None or default == () or callable(default)
    shown = "" if plain_flag or unset else f"`{default}`"
    required = "yes" if param.required else ""
    return f"| {name} | {help_text} | {shown} | {required} |"


def _arg_name(param: Any) -> str:
    name = str(param.name).upper()
    return f"{name}..." if getattr(param, "nargs", 1) == -1 else name


def _usage(path: str, command: Any) -> str:
    pieces = [path, "[OPTIONS]"]
    for param in command.params:
        if param.param_type_name == "argument":
            name = _arg_name(param)
            pieces.append(name if param.required else f"[{name}]")
    return " ".join(pieces)


def _command_section(path: str, command: Any) -> list[str]:
    lines = [f"## `{path}`", ""]
    text = (command.help or "").strip()
    if text:
        lines += [text, ""]
    lines += ["```", _usage(path, command), "```", ""]
    rows = [r for r in (_param_row(p) for p in command.params) if r]
    if rows:
        lines += ["| argument / option | what | default | required |", "|---|---|---|---|"]
        lines += rows
        lines.append("")
    return lines


def _walk(path: str, command: Any) -> list[str]:
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        return _command_section(path, command)
    lines = [f"## `{path}` …", "", (command.help or "").strip(), ""]
    for name in sorted(subcommands):
        sub = subcommands[name]
        if not getattr(sub, "hidden", False):
            lines += _walk(f"{path} {name}", sub)
    return lines


def cli_reference_markdown() -> str:
    """The Markdown of ``docs/cli.md``."""
    from cloudserve.cli import app

    root = typer.main.get_command(app)
    lines = [HEADER, "## Global options", "", "| option | what |", "|---|---|"]
    for param in root.params:
        if param.param_type_name == "option" and not getattr(param, "hidden", False):
            what = getattr(param, "help", None) or ""
            lines.append(f"| {' / '.join(f'`{o}`' for o in param.opts)} | {what} |")
    lines.append("")
    for name in sorted(root.commands):  # type: ignore[attr-defined]
        lines += _walk(f"cloudserve {name}", root.commands[name])  # type: ignore[attr-defined]
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip("\n") + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(cli_reference_markdown(), end="")
