"""Code blocks of README.md and docs/: parsing, markers, and running them.

A block is a fenced block whose language is Python (``python``) or shell (``bash``, ``sh``,
``shell``, ``console``). Blocks of a page run in order in one workspace and, for Python, one
namespace, the way a reader follows the page. HTML comments right above a block adjust it, and
are visible to anyone reading the Markdown source:

- ``<!-- doc-test: skip: REASON -->`` — the block cannot run here (it installs from a package
  index cloudserve is not on, refreshes live prices, …); the test lists it with the reason.
- ``<!-- doc-test: replace: OLD => NEW -->`` — run the block with ``OLD`` replaced by ``NEW``
  (a 60-second load test shortened to one second); the test lists these too.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = {"python", "py"}
SHELL = {"bash", "sh", "shell", "console"}
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
_MARKER = re.compile(r"<!--\s*doc-test:\s*(skip|replace):\s*(.*?)\s*-->", re.S)


@dataclass
class Block:
    page: str
    line: int
    lang: str
    code: str
    skip: str | None = None
    replacements: list[tuple[str, str]] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.lang in PYTHON | SHELL

    def source(self) -> str:
        code = self.code
        for old, new in self.replacements:
            if old not in code:
                raise AssertionError(f"{self.where}: replace marker text {old!r} not in block")
            code = code.replace(old, new)
        return code


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks_of(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    page = str(path.relative_to(ROOT))
    out = []
    for m in _FENCE.finditer(text):
        block = Block(page, text[: m.start()].count("\n") + 1, m.group(1).lower(), m.group(2))
        # the comments directly above the fence (blank lines between them allowed)
        above = text[: m.start()].rstrip().split("\n")
        while above and (above[-1].strip().startswith("<!--") or not above[-1].strip()):
            marker = _MARKER.search(above.pop())
            if marker is None:
                continue
            kind, arg = marker.groups()
            if kind == "skip":
                block.skip = arg
            else:
                old, sep, new = arg.partition(" => ")
                if not sep:
                    raise AssertionError(f"{block.where}: replace marker needs 'OLD => NEW'")
                block.replacements.append((old, new))
        out.append(block)
    return out


def shell_commands(code: str) -> list[str]:
    """The commands of a shell block: continuations joined, ``$`` prompts and output dropped."""
    lines = code.replace("\\\n", " ").splitlines()
    prompted = any(ln.startswith("$ ") for ln in lines)
    commands = []
    for line in lines:
        if prompted:
            if not line.startswith("$ "):
                continue  # the output a console block shows
            line = line[2:]
        if line.strip() and not line.strip().startswith("#"):
            commands.append(line.strip())
    return commands


def run_shell(block: Block, cli: Callable[[list[str]], tuple[int, str]]) -> None:
    """Run each command: ``export K=V`` sets the environment, ``cloudserve …`` runs the CLI."""
    for command in shell_commands(block.source()):
        words = shlex.split(command, comments=True)
        if not words:
            continue
        if words[0] == "export":
            for assignment in words[1:]:
                key, _, value = assignment.partition("=")
                os.environ[key] = value
            continue
        if words[0] != "cloudserve":
            raise AssertionError(
                f"{block.where}: cannot run {command!r} here; mark the block "
                "<!-- doc-test: skip: REASON --> if it cannot run in the doc test"
            )
        code, output = cli(words[1:])
        assert code == 0, f"{block.where}: `{command}` exited {code}:\n{output}"
