import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# The harness module sits beside the tests; make it importable however pytest is invoked.
sys.path.insert(0, str(Path(__file__).parent))

import pytest


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials, so botocore signs requests and never looks for real ones."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Any]:
    """A fresh fake (endpoints Creating/Updating for one poll, jobs InProgress for one); the
    test fails if the provider sent a request the service model refuses."""
    from sagemaker_harness import start_fake

    f = start_fake(tmp_path, creating_polls=1, updating_polls=1, job_polls=1)
    yield f
    f.stop()
    assert f.rejected() == [], "every request the provider sends passes the service model"


@pytest.fixture
def client(fake: Any) -> Iterator[Any]:
    """A client of the SageMaker provider pointed at ``fake``."""
    from sagemaker_harness import fast_config

    from cloudserve.client import Client
    from cloudserve_sagemaker import SageMakerProvider

    provider = SageMakerProvider(fast_config(fake))
    yield Client(provider)
    provider.close()
