from __future__ import annotations

from pathlib import Path

import pytest

from cloudserve.config import load_targets, resolve_target
from cloudserve.errors import ConfigError
from cloudserve.registry import register, unregister
from cloudserve.testing.memory import MemoryConfig, MemoryProvider


@pytest.fixture(autouse=True)
def memory_registered():
    register(MemoryProvider)
    yield
    unregister("memory")


def write(tmp_path: Path, text: str, name: str = "cloudserve.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_target_validated_by_its_provider_class(tmp_path):
    p = write(tmp_path, "default: m\ntargets:\n  m: {provider: memory, label: x}\n")
    t = resolve_target(path=p, env={})
    assert isinstance(t.config, MemoryConfig)
    assert t.config.label == "x" and t.name == "m" and t.file == p


def test_toml_file(tmp_path):
    p = write(
        tmp_path,
        'default = "m"\n[targets.m]\nprovider = "memory"\nlabel = "t"\n',
        "cloudserve.toml",
    )
    assert resolve_target(path=p, env={}).config.label == "t"


def test_env_overrides_fields_and_target(tmp_path):
    p = write(tmp_path, "default: m\ntargets:\n  m: {provider: memory}\n  n: {provider: memory}\n")
    env = {"CLOUDSERVE_M__LABEL": "from-env", "CLOUDSERVE_M__RETRY__MAX_ATTEMPTS": "3"}
    t = resolve_target(path=p, env=env)
    assert t.config.label == "from-env" and t.config.retry.max_attempts == 3
    assert resolve_target(path=p, env={"CLOUDSERVE_TARGET": "n"}).name == "n"


def test_target_precedence_is_env_then_file_default_then_local_as_documented(tmp_path, monkeypatch):
    import cloudserve
    import cloudserve.config

    p = write(tmp_path, "default: m\ntargets:\n  m: {provider: memory}\n  n: {provider: memory}\n")
    assert resolve_target(path=p, env={"CLOUDSERVE_TARGET": "n"}).name == "n"
    assert resolve_target(path=p, env={}).name == "m"
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    assert resolve_target(env={}).name == "local"
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for text in (cloudserve.__doc__, cloudserve.config.__doc__, resolve_target.__doc__, readme):
        flat = " ".join((text or "").split()).replace("`", "")
        assert "CLOUDSERVE_TARGET, else the file's default, else local" in flat


def test_config_env_var_and_cwd_lookup(tmp_path, monkeypatch):
    p = write(tmp_path, "targets:\n  m: {provider: memory}\n")
    assert resolve_target("m", env={"CLOUDSERVE_CONFIG": str(p)}).name == "m"
    monkeypatch.chdir(tmp_path)
    assert load_targets(env={}).file == p


def test_no_file_means_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tf = load_targets(env={})
    assert tf.file is None and tf.targets == {}


@pytest.mark.parametrize(
    ("text", "target", "field", "words"),
    [
        ("targets:\n  m: {provider: nope}\n", "m", "provider", "unknown provider 'nope'"),
        ("targets:\n  m: {label: x}\n", "m", "provider", "missing required key"),
        ("targets:\n  m: {provider: memory, label: [1, 2]}\n", "m", "label", "valid string"),
        ("targets:\n  m: {provider: memory, lable: x}\n", "m", "lable", "unknown key"),
        (
            "targets:\n  m: {provider: memory, retry: {max_attempts: many}}\n",
            "m",
            "retry.max_attempts",
            "integer",
        ),
    ],
)
def test_bad_config_names_file_target_field(tmp_path, text, target, field, words):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        resolve_target("m", path=p, env={})
    err = info.value
    assert (err.file, err.target, err.field) == (str(p), target, field)
    line = str(err)
    assert "\n" not in line and str(p) in line and f"target '{target}'" in line and words in line


def test_malformed_yaml_names_line(tmp_path):
    p = write(tmp_path, "targets:\n  m: [provider: memory\n")
    with pytest.raises(ConfigError, match=r"malformed YAML at line \d+") as info:
        resolve_target("m", path=p, env={})
    assert info.value.file == str(p)


def test_unknown_target_and_missing_file(tmp_path):
    p = write(tmp_path, "targets:\n  m: {provider: memory}\n")
    with pytest.raises(ConfigError, match="no target named 'x'"):
        resolve_target("x", path=p, env={})
    with pytest.raises(ConfigError, match="not found"):
        resolve_target("m", path=tmp_path / "absent.yaml", env={})


def test_secrets_never_shown(tmp_path):
    from pydantic import SecretStr

    from cloudserve.provider import Provider

    class SecretConfig(MemoryConfig):
        provider: str = "secretive"
        key: SecretStr
        port: int = 1

    class Secretive(MemoryProvider):
        name = "secretive"
        config_cls = SecretConfig

    register(Secretive)
    try:
        p = write(tmp_path, "targets:\n  s: {provider: secretive, key: hunter2, port: hunter2}\n")
        with pytest.raises(ConfigError) as info:
            resolve_target("s", path=p, env={})
        assert "hunter2" not in str(info.value)
        p = write(tmp_path, "targets:\n  s: {provider: secretive, key: hunter2}\n")
        t = resolve_target("s", path=p, env={})
        assert "hunter2" not in repr(t.config) and "hunter2" not in str(t.config)
        assert t.config.key.get_secret_value() == "hunter2"
        assert issubclass(Secretive, Provider)
    finally:
        unregister("secretive")
