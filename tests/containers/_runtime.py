"""Podman on a machine that reaches no image registry: a cached Debian base image and helpers.

The base image is a ``debootstrap`` rootfs (the Debian mirror read from the machine's apt
sources), with the host's CA bundle and pip configuration carried in, imported into Podman. The
rootfs tarball is cached under ``$CLOUDSERVE_TEST_CACHE`` keyed by everything that goes into it,
so only the first run on a machine pays for debootstrap (~1 min).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cloudserve.testing.refvenv import cache_dir

SUITE = "bookworm"
PACKAGES = "python3,python3-venv,python3-pip,python-is-python3,ca-certificates"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# The sandbox lacks CAP_SYS_RESOURCE (crun's RLIMIT_NPROC call fails) and crun refuses the
# hybrid cgroup layout: no default ulimits, and runc.
CONTAINERS_CONF = """\
[containers]
default_ulimits = []

[engine]
runtime = "runc"
"""


def podman_env() -> dict[str, str]:
    """The environment every ``podman`` call of the tests runs with (``CONTAINERS_CONF``)."""
    conf = cache_dir() / "containers.conf"
    if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
        conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def podman(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``podman ARGS`` (output captured); raises with podman's stderr on failure."""
    done = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} … failed:\n{done.stderr[-4000:]}")
    return done


def apt_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 ``.sources`` or one-line lists)."""
    candidates = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in candidates:
        for block in path.read_text().split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", block, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", block, re.M)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1)
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.list")]:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m and m.group(2) == SUITE:
                return m.group(1)
    raise RuntimeError(f"no Debian mirror for {SUITE} in /etc/apt/sources*")


def pip_files() -> list[Path]:
    """The host's pip configuration files (and the constraint files they name)."""
    found = [
        p
        for p in (
            Path("/etc/pip.conf"),
            Path("/etc/xdg/pip/pip.conf"),
            Path.home() / ".config/pip/pip.conf",
            Path.home() / ".pip/pip.conf",
        )
        if p.is_file()
    ]
    for conf in list(found):
        for m in re.finditer(r"^\s*constraint\s*=\s*(\S+)", conf.read_text(), re.M):
            if Path(m.group(1)).is_file():
                found.append(Path(m.group(1)))
    return list(dict.fromkeys(found))


def pip_environment() -> dict[str, str]:
    """The ``PIP_*`` variables of this process (they carry part of the pip configuration)."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("PIP_")}


def pip_local_paths() -> list[Path]:
    """Local directories the pip configuration reads packages from (mounted into builds)."""
    text = (
        "\n".join(p.read_text() for p in pip_files()) + "\n" + "\n".join(pip_environment().values())
    )
    paths: set[Path] = set()
    for token in re.findall(r"(?:file://)?(/[^\s'\"]+)", text):
        path = Path(token)
        if path.is_dir():
            # an index's pages link to files beside its simple/ folder: mount the parent
            paths.add(path.parent if path.name == "simple" else path)
    return sorted(p for p in paths if not str(p).startswith(("/etc", "/root", "/home")))


def _base_key() -> str:
    h = hashlib.sha256()
    h.update(f"{SUITE}|{PACKAGES}|{apt_mirror()}".encode())
    h.update(CA_BUNDLE.read_bytes())
    for path in pip_files():
        h.update(str(path).encode() + path.read_bytes())
    h.update(repr(pip_environment()).encode())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _make_rootfs(tarball: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="cloudserve-rootfs-", dir=cache_dir()) as tmp:
        root = Path(tmp) / "rootfs"
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={PACKAGES}",
                SUITE,
                str(root),
                apt_mirror(),
            ],
            check=True,
            capture_output=True,
            timeout=900,
        )
        # Package downloads pass a proxy whose CA only the host's bundle holds.
        shutil.copy2(CA_BUNDLE, root / str(CA_BUNDLE).lstrip("/"))
        for path in pip_files():
            target = root / str(path).lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        subprocess.run(
            ["chroot", str(root), "python3", "-m", "venv", "/opt/venv"],
            check=True,
            capture_output=True,
            timeout=300,
        )
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        partial = tarball.with_suffix(".partial")
        with tarfile.open(partial, "w") as tar:
            tar.add(root, arcname=".")
        partial.replace(tarball)


def base_image() -> str:
    """A Debian + Python 3 + venv image in Podman's store, built once per machine (cached)."""
    key = _base_key()
    name = f"localhost/cloudserve-test-base:{key}"
    if podman("image", "exists", name, check=False).returncode == 0:
        return name
    tarball = cache_dir() / f"base-{key}.tar"
    with _locked(cache_dir() / "base.lock"):
        if podman("image", "exists", name, check=False).returncode == 0:
            return name
        if not tarball.exists():
            _make_rootfs(tarball)
        changes = [
            "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ]
        changes += [f"ENV {k}={v}" for k, v in pip_environment().items()]
        args = ["import"]
        for change in changes:
            args += ["--change", change]
        podman(*args, str(tarball), name, timeout=600)
    return name


def build_volumes() -> list[str]:
    """``--volume`` options that let a build reach the host's local package directories."""
    out: list[str] = []
    for path in pip_local_paths():
        out += ["--volume", f"{path}:{path}:ro"]
    return out
