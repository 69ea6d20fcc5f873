"""Environment overrides: lists and mappings as JSON, and the built-in local target without a file."""

from __future__ import annotations

import pytest

import cloudserve as cs
from cloudserve.config import load_targets, resolve_target
from cloudserve.errors import ConfigError


@pytest.fixture
def no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for key in list(__import__("os").environ):
        if key.startswith("CLOUDSERVE_") and key != "CLOUDSERVE_TEST_CACHE":
            monkeypatch.delenv(key)
    monkeypatch.setenv("CLOUDSERVE_STATE_DIR", str(tmp_path / "state"))
    return monkeypatch


def test_local_override_without_a_config_file(no_file):
    # docs/local.md's own example: no cloudserve.yaml, one override
    no_file.setenv("CLOUDSERVE_LOCAL__DRAIN_S", "0.2")
    with cs.connect("local") as client:
        assert client.provider.config.drain_s == 0.2
    with cs.connect() as client:  # the default target is local too
        assert client.provider.config.drain_s == 0.2


def test_list_and_dict_fields_are_json(no_file):
    no_file.setenv("CLOUDSERVE_LOCAL__PORT_RANGE", "[21400, 21479]")
    target = resolve_target("local")
    assert target.config.port_range == (21400, 21479)


def test_json_mapping_override(tmp_path):
    (tmp_path / "cloudserve.yaml").write_text("targets:\n  l: {provider: local}\n")
    env = {"CLOUDSERVE_L__RETRY": '{"max_attempts": 7}', "CLOUDSERVE_L__DRAIN_S": "0"}
    target = resolve_target("l", path=tmp_path / "cloudserve.yaml", env=env)
    assert target.config.retry.max_attempts == 7 and target.config.drain_s == 0


def test_scalars_stay_yaml_scalars():
    tf = load_targets(
        path=None,
        env={"CLOUDSERVE_X__A": "0.5", "CLOUDSERVE_X__B": "true", "CLOUDSERVE_X__C": "eu-west-1"},
    )
    assert tf.targets["x"] == {"a": 0.5, "b": True, "c": "eu-west-1"}


def test_broken_json_names_the_variable(no_file):
    no_file.setenv("CLOUDSERVE_LOCAL__PORT_RANGE", "[21400, ")
    with pytest.raises(ConfigError) as info:
        resolve_target("local")
    assert "CLOUDSERVE_LOCAL__PORT_RANGE" in str(info.value) and "JSON" in str(info.value)
