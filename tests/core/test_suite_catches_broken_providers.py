"""The conformance suite must fail a provider that breaks the contract: prove it."""

from __future__ import annotations

import pytest

HEADER = """
import pytest
from cloudserve.testing.memory import MemoryHarness, MemoryProvider
from cloudserve.provider import Capability
from cloudserve.resources import EndpointStatus
from cloudserve.testing.suite import ProviderConformance
"""

CASES = {
    "wrong_status_mapping": (
        """
class Broken(MemoryProvider):
    def _endpoint(self, name, state):
        ep = super()._endpoint(name, state)
        return ep.model_copy(update={"status": EndpointStatus.CREATING})
""",
        ["test_deploy_creates_ready_endpoint"],
    ),
    "untranslated_error": (
        """
class Broken(MemoryProvider):
    def call(self, fn, *args, retry=True, **kwargs):
        return fn(*args, **kwargs)
""",
        ["test_missing_endpoint_is_not_found", "test_throttled_call_succeeds_after_retries"],
    ),
    "silent_capability": (
        """
class Broken(MemoryProvider):
    capabilities = MemoryProvider.capabilities - {Capability.METRICS}
""",
        ["test_undeclared_capabilities_raise"],
    ),
    "batch_without_capability_check": (
        """
class Broken(MemoryProvider):
    # BATCH is not declared, get_batch_job checks it, batch_predict forgets to
    capabilities = MemoryProvider.capabilities - {Capability.BATCH}
    unsupported = {**MemoryProvider.unsupported, Capability.BATCH: "no batch here"}

    def get_batch_job(self, job_id):
        self.require(Capability.BATCH)
        return super().get_batch_job(job_id)
""",
        ["test_undeclared_capabilities_raise"],
    ),
    "declared_but_not_implemented": (
        """
class Broken(MemoryProvider):
    # declares rollout, but never overrides get_rollout_state / put_rollout_state
    capabilities = MemoryProvider.capabilities | {Capability.ROLLOUT}
    unsupported = {k: v for k, v in MemoryProvider.unsupported.items() if k != Capability.ROLLOUT}
""",
        ["test_declared_capabilities_are_implemented"],
    ),
    "override_without_xfail": (
        """
class Broken(MemoryProvider):
    pass

class _Override:
    def test_delete_is_idempotent(self, client):
        pass
""",
        ["test_no_unmarked_overrides"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_suite_fails_broken_provider(pytester, case):
    body, must_fail = CASES[case]
    bases = (
        "_Override, MemoryHarness, ProviderConformance"
        if "_Override" in body
        else ("MemoryHarness, ProviderConformance")
    )
    pytester.makepyfile(
        **{
            f"test_{case}": HEADER
            + body
            + f"""
class TestBroken({bases}):
    provider_cls = Broken
"""
        }
    )
    result = pytester.runpytest_subprocess("-q", "-rf", "-p", "no:cacheprovider")
    failed = {
        line.split("::")[-1].split(" ")[0] for line in result.outlines if line.startswith("FAILED ")
    }
    for name in must_fail:
        assert name in failed, f"{case}: {name} should fail, failed: {sorted(failed)}"


def test_override_with_xfail_reason_is_accepted(pytester):
    pytester.makepyfile(
        test_ok=HEADER
        + """
class TestOk(MemoryHarness, ProviderConformance):
    @pytest.mark.xfail(reason="this provider cannot delete yet", strict=True)
    def test_delete_is_idempotent(self, client):
        raise AssertionError("known gap")
"""
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=0, xfailed=1, passed=27)
