"""``build-image --push``: a real push to a local registry (Debian's ``docker-registry``) that
asks for a login, as the clouds' registries do."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from cloudserve.errors import InvalidRequest
from cloudserve.serving._registry import RegistryLogin, push_image
from cloudserve.testing.components import needs
from conftest import free_port

pytestmark = pytest.mark.slow

USER = "oauth2accesstoken"
TOKEN = "ya29.local-registry-token"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    """A local registry on a free port with one user (bcrypt htpasswd); yields its host."""
    needs("docker-registry", "a local OCI registry for the push test")
    bcrypt = pytest.importorskip("bcrypt", reason="hashes the registry's htpasswd")
    root = tmp_path_factory.mktemp("registry")
    (root / "htpasswd").write_text(
        f"{USER}:{bcrypt.hashpw(TOKEN.encode(), bcrypt.gensalt()).decode()}\n"
    )
    port = free_port()
    config = {
        "version": 0.1,
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
        "auth": {"htpasswd": {"realm": "cloudserve-test", "path": str(root / "htpasswd")}},
    }
    (root / "config.yml").write_text(yaml.safe_dump(config))
    log = (root / "registry.log").open("wb")
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(root / "config.yml")], stdout=log, stderr=log
    )
    host = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://{host}/v2/", timeout=1).status_code == 401:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail(
                f"the registry did not start: {(root / 'registry.log').read_text()[-2000:]}"
            )
        yield host
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_push_to_a_local_registry_with_a_login(
    built_images, registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))  # not the machine's
    image = built_images("sklearn")
    remote = f"{registry}/cloudserve/churn:1"
    wrong = RegistryLogin(registry, USER, "not-the-token")
    with pytest.raises(InvalidRequest, match=f"logging in to {registry} failed"):
        push_image(image, remote, engine="podman", login=wrong, tls_verify=False)
    push_image(
        image, remote, engine="podman", login=RegistryLogin(registry, USER, TOKEN), tls_verify=False
    )
    tags = httpx.get(f"http://{registry}/v2/cloudserve/churn/tags/list", auth=(USER, TOKEN))
    assert tags.json() == {"name": "cloudserve/churn", "tags": ["1"]}
    manifest = httpx.get(
        f"http://{registry}/v2/cloudserve/churn/manifests/1",
        auth=(USER, TOKEN),
        headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
        },
    )
    assert manifest.status_code == 200 and manifest.json()["layers"]
