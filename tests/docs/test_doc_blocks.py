"""Every Python and shell block of README.md and docs/ runs, in order, page by page.

Each page runs in a fresh working directory holding what the docs refer to (``./model``,
``./model-v4``, ``data/in.csv``, ``data/train.csv``, ``data/big.csv``, ``train.py`` and
``src/train.py``, ``rows.json``) and a ``cloudserve.yaml`` whose ``local`` target is the local backend and whose
``aws`` / ``gcp`` / ``azure`` targets are the providers' offline fakes. Shell blocks run the
``cloudserve`` CLI in-process. A block that cannot run here carries a
``<!-- doc-test: skip: REASON -->`` marker; each one is listed as a skipped test with its reason.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from doc_blocks import PYTHON, SHELL, Block, blocks_of, pages, run_shell

import cloudserve as cs

ALL_BLOCKS = [b for p in pages() for b in blocks_of(p)]
SKIPPED = [b for b in ALL_BLOCKS if b.runnable and b.skip]
RUN_PAGES = sorted({b.page for b in ALL_BLOCKS if b.runnable and not b.skip})
CLOUD = re.compile(r"""["' =](aws|gcp|azure)\b""")

TRAIN_PY = '''\
"""A training script for the docs' tuning examples: prints val_auc for its hyperparameters."""
import argparse, math
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.01)
p.add_argument("--depth", type=int, default=4)
a, _ = p.parse_known_args()
print(f"val_auc={0.9 - 0.02 * abs(math.log10(a.lr) + 2) - 0.01 * abs(a.depth - 6):.5f}")
'''


def _workspace(root: Path, clouds: dict[str, dict[str, object]]) -> None:
    import orjson
    import yaml

    from cloudserve.testing import make_sklearn_model, write_csv

    make_sklearn_model(root / "model", version="3")
    make_sklearn_model(root / "model-v4", version="4", seed=1)
    rows = [[round(0.1 * i - 1, 2), 2.0 - 0.05 * i, 3.5, 1.2 - 0.1 * (i % 7)] for i in range(40)]
    write_csv(root / "data" / "in.csv", rows[:20])
    write_csv(root / "data" / "train.csv", rows)
    write_csv(root / "data" / "big.csv", rows * 10)
    (root / "rows.json").write_bytes(orjson.dumps(rows[:4]))
    for script in (root / "train.py", root / "src" / "train.py"):
        script.parent.mkdir(exist_ok=True)
        script.write_text(TRAIN_PY)
    targets: dict[str, object] = {"local": {"provider": "local"}, **clouds}
    (root / "cloudserve.yaml").write_text(
        yaml.safe_dump({"default": "local", "targets": targets}, sort_keys=False)
    )


@contextlib.contextmanager
def _cloud_fakes(root: Path) -> Iterator[dict[str, dict[str, object]]]:
    """The three clouds' fakes as config blocks (those whose provider package is installed)."""
    from cloudserve.registry import available

    fast = {
        "retry": {"max_attempts": 3, "initial_backoff_s": 0.001, "max_backoff_s": 0.01},
        "waits": {"poll_interval_s": 0.01, "max_poll_interval_s": 0.05},
    }
    with contextlib.ExitStack() as stack:
        blocks: dict[str, dict[str, object]] = {}
        if "sagemaker" in available():
            from cloudserve_sagemaker.testing import FakeSageMaker

            sm = stack.enter_context(FakeSageMaker(workdir=root / "fake-sagemaker"))
            sm.client("s3").create_bucket(Bucket="my-models")
            blocks["aws"] = {
                "provider": "sagemaker",
                "region": sm.region,
                "role_arn": "arn:aws:iam::123456789012:role/sm",
                "bucket": "my-models",
                "endpoint_url": sm.url,
                **fast,
            }
        if "vertex" in available():
            from cloudserve_vertex.testing import FakeVertex

            gcp = stack.enter_context(FakeVertex(workdir=root / "fake-vertex").serve())
            config = gcp.config().model_dump(mode="json", exclude_defaults=True)
            blocks["gcp"] = {**config, "provider": "vertex", **fast}
        if "azureml" in available():
            blocks["azure"] = stack.enter_context(_azure(root))
        yield blocks


@contextlib.contextmanager
def _azure(root: Path) -> Iterator[dict[str, object]]:
    from cloudserve.registry import register, unregister
    from cloudserve_azureml import AzureMLProvider
    from cloudserve_azureml.testing import FakeAzureML

    with FakeAzureML(workdir=root / "fake-azureml") as fake:
        # azure-core only talks HTTPS to Azure's own hostnames, so the fake intercepts requests
        # in-process; let the other fakes' loopback traffic through.
        fake._mock.add_passthru(re.compile(r"http://127\.0\.0\.1"))

        class FakeCredentialAzureML(AzureMLProvider):
            """The Azure ML provider as configured, with the fake's credential."""

            def __init__(self, config, *, target=None):
                super().__init__(config, target=target, credential=fake.credential())

        register(FakeCredentialAzureML, "azureml")
        try:
            yield {
                "provider": "azureml",
                "subscription_id": fake.subscription_id,
                "resource_group": fake.resource_group,
                "workspace": fake.workspace,
                "region": "eastus",
                "sdk_polling_interval_s": 0.01,
                "compute": "cpu-cluster",
            }
        finally:
            unregister("azureml")


def _cli(args: list[str]) -> tuple[int, str]:
    from cloudserve.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue() + err.getvalue()


def _cleanup(state: Path) -> None:
    if not state.exists():
        return
    with cs.connect("local") as client:
        for job in client.list_jobs():
            if not job.status.is_terminal:
                client.cancel_job(job.id)
        for ep in client.list_endpoints():
            client.delete_endpoint(ep.name)


@pytest.mark.slow
@pytest.mark.parametrize("page", RUN_PAGES)
def test_page_blocks_run(page: str, tmp_path: Path, monkeypatch):
    pytest.importorskip("sklearn", reason="the docs' model is a scikit-learn pipeline")
    blocks = [b for b in ALL_BLOCKS if b.page == page and b.runnable and not b.skip]
    needs_clouds = any(CLOUD.search(b.source()) for b in blocks)
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith("CLOUDSERVE_")]:
        if key != "CLOUDSERVE_TEST_CACHE":
            monkeypatch.delenv(key)
    monkeypatch.setenv("CLOUDSERVE_STATE_DIR", str(tmp_path / ".cloudserve"))
    for key, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
    ):
        monkeypatch.setenv(key, value)
    fakes = _cloud_fakes(tmp_path) if needs_clouds else contextlib.nullcontext({})
    namespace: dict[str, object] = {"__name__": "__doc_block__"}
    environ = dict(os.environ)  # shell blocks `export`; undo that after the page
    with fakes as clouds:
        _workspace(tmp_path, clouds)
        try:
            for block in blocks:
                _run(block, namespace)
        finally:
            for value in namespace.values():  # a page's clients: stop their threads
                if isinstance(value, cs.Client):
                    value.close()
            os.environ.clear()
            os.environ.update(environ)
            _cleanup(tmp_path / ".cloudserve")


def _run(block: Block, namespace: dict[str, object]) -> None:
    if block.lang in PYTHON:
        code = compile(block.source(), block.where, "exec")
        exec(code, namespace)
    elif block.lang in SHELL:
        run_shell(block, _cli)


@pytest.mark.parametrize("block", SKIPPED, ids=[b.where for b in SKIPPED])
def test_skipped_block(block: Block):
    assert block.skip and len(block.skip) > 10, f"{block.where}: a skip needs a reason"
    pytest.skip(f"{block.where} ({block.lang}) not run: {block.skip}")


def test_replaced_text_is_listed_and_present():
    replaced = [b for b in ALL_BLOCKS if b.replacements]
    for block in replaced:
        block.source()  # raises when the text to replace is not in the block
    print("\n".join(f"{b.where}: {b.replacements}" for b in replaced))
