"""Every mistake a newcomer makes on the command line: one line, the right exit code, no traceback.

The boundary was checked with Typer 0.15.4 (Click 8.1.8) and 0.29.2 (its own Click), the ends
of the range pinned in pyproject.toml.
"""

from __future__ import annotations

import pytest

from cloudserve.cli._errors import classify

# name → (arguments, exit code, words the one line must hold)
MISTAKES = {
    "missing argument": (["deploy"], 2, "Missing argument 'artifact'"),
    "unknown command": (["nosuch"], 2, "No such command 'nosuch'"),
    "unknown option": (["endpoints", "--nope"], 2, "No such option: --nope"),
    "not an integer": (
        ["deploy", "./model", "--replicas", "abc"],
        2,
        "Invalid value for '--replicas'",
    ),
    "bad endpoint name": (
        ["deploy", "./model", "--endpoint", "Bad_Name"],
        2,
        "endpoint='Bad_Name': must start with a letter",
    ),
    "unknown framework": (
        ["deploy", "./model", "--framework", "lightgbm"],
        2,
        "framework='lightgbm'",
    ),
    "broken JSON": (["predict", "churn", "--data", "[[1,2"], 2, "JSON"),
    "missing input file": (["predict", "churn", "--file", "nope.json"], 2, "nope.json"),
    "missing tuning spec": (["tune", "nope.yaml"], 2, "nope.yaml"),
    "bad window": (["monitor", "churn", "--window", "soon"], 2, "window 'soon'"),
    "unknown target": (["endpoints", "--target", "mars"], 2, "no target named 'mars'"),
    "no such endpoint": (["predict", "nosuch", "--data", "[[1, 2]]"], 1, "NotFound"),
}


@pytest.mark.parametrize("case", list(MISTAKES))
def test_a_mistake_is_one_line_and_an_exit_code(cli, case):
    args, code, words = MISTAKES[case]
    run = cli(*args)
    assert "Traceback" not in run.stderr + run.stdout
    assert run.code == code, run.stderr
    assert len(run.err_lines) == 1, run.stderr
    assert words.lower() in run.err_lines[0].lower(), run.err_lines[0]


def test_version_and_short_help(cli):
    run = cli("--version")
    assert run.code == 0 and run.stdout.strip().startswith("cloudserve 0."), run
    run = cli("-h")
    assert run.code == 0 and "Usage" in run.stdout and "deploy" in run.stdout, run
    run = cli("deploy", "-h")
    assert run.code == 0 and "--endpoint" in run.stdout, run


@pytest.mark.parametrize("group", [[], ["jobs"], ["pricing"]])
def test_a_group_without_a_command_shows_its_help(cli, group):
    run = cli(*group)
    assert "Usage" in run.stdout and "Traceback" not in run.stderr
    assert "usage error" not in run.stderr, run.stderr


def test_debug_shows_the_traceback(cli):
    run = cli("--debug", "deploy", "./model", "--framework", "lightgbm")
    assert run.code != 0 and "Traceback" in run.stderr and "ValidationError" in run.stderr


def test_an_unexpected_exception_names_itself_and_debug():
    code, line = classify(RuntimeError("boom\nsecond line"))
    assert code == 1 and line is not None
    assert "RuntimeError: boom second line" in line and "--debug" in line


def test_a_cloud_answer_is_a_failed_operation_not_a_usage_error():
    from cloudserve.errors import InvalidRequest

    try:
        try:
            raise KeyError("native 400")
        except KeyError as native:
            raise InvalidRequest("bad payload", provider="sagemaker") from native
    except InvalidRequest as translated:
        code, line = classify(translated)
    assert code == 1 and line is not None and "InvalidRequest" in line
    assert classify(InvalidRequest("bad spec"))[0] == 2
