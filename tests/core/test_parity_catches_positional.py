"""The answers-parity class must fail a provider that matches columns by position: prove it."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("sklearn", reason="the parity fixtures train a scikit-learn pipeline")

TESTS = Path(__file__).resolve().parents[1]

BROKEN = f"""
import csv, io, sys
from pathlib import Path
sys.path.insert(0, {str(TESTS / "local")!r})
from local_helpers import cleanup, local_config
from cloudserve.local import LocalProvider
from cloudserve.testing import ProviderHarness
from cloudserve.testing.suite import AnswersParityTests


class Positional(LocalProvider):
    '''What a careless handler does: values by position, the names and the header dropped.'''

    def predict(self, endpoint, instances, *, variant=None, parameters=None):
        rows = [list(r.values()) if isinstance(r, dict) else r for r in instances]
        return super().predict(endpoint, rows, variant=variant, parameters=parameters)

    def batch_predict(self, spec, **kwargs):
        lines = Path(spec.input).read_text().splitlines(keepends=True)
        headerless = Path(spec.input).with_suffix(".nohead.csv")
        headerless.write_text("".join(lines[1:]))
        return super().batch_predict(spec.model_copy(update={{"input": str(headerless)}}), **kwargs)


class PositionalHarness(ProviderHarness):
    native_errors = False

    def start(self, workdir):
        self.state_dir = workdir / "state"

    def stop(self):
        cleanup(self.state_dir)

    def make_provider(self):
        return Positional(local_config(self.state_dir))


class TestPositional(PositionalHarness, AnswersParityTests):
    pass
"""

MUST_FAIL = [
    "test_records_in_another_order_with_blanks_text_and_nan",
    "test_predict_proba",
    "test_csv_with_a_shuffled_header",
    "test_batch_with_a_shuffled_header_and_blanks",
]


@pytest.mark.slow
def test_parity_fails_a_position_based_provider(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_positional=BROKEN)
    keep = " or ".join(MUST_FAIL)
    result = pytester.runpytest_subprocess("-q", "-rf", "-p", "no:cacheprovider", "-k", keep)
    failed = {
        line.split("::")[-1].split(" ")[0] for line in result.outlines if line.startswith("FAILED ")
    }
    assert failed == set(MUST_FAIL), "\n".join(result.outlines[-30:])
