"""Answers parity: the same data gives the model's own answers on every path of a provider.

:class:`ParityChecks` (run as ``cloudserve.testing.suite.AnswersParityTests``) deploys a
Titanic-style scikit-learn Pipeline — a ColumnTransformer with a OneHotEncoder on the text
columns ``Sex`` and ``Embarked`` and median imputation of ``Age`` — and sends it the same
fixtures through online prediction and batch: records with their keys in another order, the same
CSV with a shuffled header and without one, blanks, text, missing values, ``predict_proba``, and
rows of the wrong shape. Every answer is compared with what the model itself says about the same
CSV read by ``pandas.read_csv``. A provider that matches columns by position, drops
``parameters`` or turns blanks into empty strings fails it.

A provider's test module adds it next to its conformance class::

    class TestSageMakerParity(SageMakerHarness, AnswersParityTests):
        pass

A harness whose batch input or output lives in a fake bucket overrides
:meth:`ParityChecks.parity_batch_input` (and its usual ``batch_output`` /
``read_batch_output``).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import orjson
import pytest

from cloudserve.client import Client
from cloudserve.errors import InvalidRequest
from cloudserve.specs import BatchSpec, Compute, ModelSpec

__all__ = [
    "TITANIC_CSV",
    "TITANIC_FEATURES",
    "ParityChecks",
    "make_titanic_model",
    "shuffled_csv",
    "titanic_answers",
]

#: The model's feature names, in its training order.
TITANIC_FEATURES = ["Pclass", "Sex", "Age", "SibSp", "Fare", "Embarked"]

#: Request rows as a CSV in the training order: text, blanks in numeric and text columns, a
#: literal ``nan`` and a category the model never saw (``X``).
TITANIC_CSV = """Pclass,Sex,Age,SibSp,Fare,Embarked
3,male,22,1,7.25,S
1,female,38,1,71.2833,C
3,female,,0,7.925,S
1,female,35,1,53.1,
3,male,nan,0,8.05,Q
2,male,54,0,51.8625,X
3,female,2,3,21.075,S
"""


def _training_frame(n: int = 400, seed: int = 7) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "Pclass": rng.integers(1, 4, n),
            "Sex": rng.choice(["male", "female"], n),
            "Age": np.where(rng.random(n) < 0.2, np.nan, rng.uniform(1, 75, n).round()),
            "SibSp": rng.integers(0, 4, n),
            "Fare": rng.uniform(5, 120, n).round(4),
            "Embarked": rng.choice(
                np.array(["S", "C", "Q", None], dtype=object), n, p=[0.6, 0.2, 0.15, 0.05]
            ),
        }
    )
    score = (
        (frame.Sex == "female") * 2.0
        - frame.Pclass * 0.7
        + frame.Fare / 60
        - frame.Age.fillna(30) / 40
    )
    return frame, (score + rng.normal(0, 0.3, n) > -0.6).astype(int)


def make_titanic_model(directory: Path, *, version: str = "1") -> Path:
    """Train the Titanic-style Pipeline into ``directory`` (``model.joblib`` + manifest)."""
    import joblib
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from cloudserve.packaging import write_manifest

    frame, y = _training_frame()
    columns = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), ["Pclass", "Age", "SibSp", "Fare"]),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                ["Sex", "Embarked"],
            ),
        ]
    )
    model = make_pipeline(columns, LogisticRegression(max_iter=1000)).fit(frame, y)
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, directory / "model.joblib")
    write_manifest(
        directory,
        framework="sklearn",
        version=version,
        signature={"feature_names": TITANIC_FEATURES, "n_features": len(TITANIC_FEATURES)},
    )
    return directory


def titanic_answers(model_dir: Path, csv_text: str = TITANIC_CSV, method: str = "predict") -> list:
    """What the model itself answers for the CSV, read by pandas in the training order."""
    import joblib
    import pandas as pd

    model = joblib.load(Path(model_dir) / "model.joblib")
    frame = pd.read_csv(io.StringIO(csv_text))[TITANIC_FEATURES]
    return getattr(model, method)(frame).tolist()


def shuffled_csv(csv_text: str = TITANIC_CSV, *, header: bool = True) -> str:
    """The same rows with the columns in another order (and the header kept or dropped)."""
    import pandas as pd

    frame = pd.read_csv(io.StringIO(csv_text), keep_default_na=False, dtype=str)
    if not header:
        return str(frame.to_csv(index=False, header=False))
    columns = list(frame.columns)
    return str(frame[columns[1::2][::-1] + columns[0::2]].to_csv(index=False))


def _records(csv_text: str) -> list[dict[str, Any]]:
    """The CSV's rows as records with keys in reverse order, blanks as None, ``nan`` as NaN."""
    import csv

    records = []
    for row in csv.DictReader(io.StringIO(csv_text)):
        record: dict[str, Any] = {}
        for key in reversed(list(row)):
            text = row[key]
            if text == "":
                record[key] = None
            elif text == "nan":
                record[key] = math.nan
            else:
                try:
                    record[key] = float(text)
                except ValueError:
                    record[key] = text
        records.append(record)
    return records


def _as_output(value: Any) -> Any:
    """A batch output cell as a value (CSV cells arrive as text, lists as JSON text)."""
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    if isinstance(value, dict) and "prediction" in value:
        return value["prediction"]
    return value


def _close(got: list[Any], want: list[Any]) -> bool:
    import numpy as np

    try:
        return bool(np.allclose(np.asarray(got, dtype=float), np.asarray(want, dtype=float)))
    except (TypeError, ValueError):
        return False


class ParityChecks:
    """Deploy/predict and batch give the model's own answers, whatever the column order.

    Needs the ``client``, ``workdir`` and ``endpoint_name`` fixtures of the conformance suite:
    use it as :class:`cloudserve.testing.suite.AnswersParityTests`.
    """

    # -- hooks a harness may override ---------------------------------------------------------

    def parity_model_spec(self, workdir: Path) -> ModelSpec:
        """The Titanic-style model to deploy."""
        directory = make_titanic_model(workdir / "titanic")
        return ModelSpec(
            name="cs-titanic", version="1", artifact=str(directory), framework="sklearn"
        )

    def parity_batch_input(self, workdir: Path, csv_text: str) -> str:
        """Where a batch job reads this CSV from (a local file by default)."""
        path = workdir / "parity" / f"input-{abs(hash(csv_text)) % 10**8}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(csv_text)
        return str(path)

    # -- fixtures ----------------------------------------------------------------------------

    @pytest.fixture
    def titanic(self, client: Client, workdir: Path, endpoint_name: str) -> tuple[str, Path]:
        """A deployed Titanic endpoint and the model directory it serves."""
        model = self.parity_model_spec(workdir)
        client.deploy(model, endpoint_name, Compute())
        return endpoint_name, Path(str(model.artifact))

    # -- online ------------------------------------------------------------------------------

    def test_records_in_another_order_with_blanks_text_and_nan(
        self, client: Client, titanic: tuple[str, Path]
    ) -> None:
        endpoint, model_dir = titanic
        got = client.predict(endpoint, _records(TITANIC_CSV)).outputs
        assert got == titanic_answers(model_dir), "records must be matched by name, not position"

    def test_predict_proba(self, client: Client, titanic: tuple[str, Path]) -> None:
        endpoint, model_dir = titanic
        got = client.predict(
            endpoint, _records(TITANIC_CSV), parameters={"method": "predict_proba"}
        ).outputs
        want = titanic_answers(model_dir, method="predict_proba")
        assert _close(got, want), f"parameters must reach the model: got {got[:2]}"

    def test_csv_with_a_shuffled_header(
        self, client: Client, workdir: Path, titanic: tuple[str, Path]
    ) -> None:
        from cloudserve.codecs import read_instances

        endpoint, model_dir = titanic
        path = workdir / "shuffled.csv"
        path.write_text(shuffled_csv())
        got = client.predict(endpoint, read_instances(path)).outputs
        assert got == titanic_answers(model_dir)

    def test_csv_without_a_header_goes_by_the_model_order(
        self, client: Client, workdir: Path, titanic: tuple[str, Path]
    ) -> None:
        from cloudserve.codecs import read_instances

        endpoint, model_dir = titanic
        path = workdir / "headerless.csv"
        path.write_text(shuffled_csv(header=False))
        got = client.predict(endpoint, read_instances(path)).outputs
        assert got == titanic_answers(model_dir)

    def test_wrong_shape_and_unknown_method_are_invalid_requests(
        self, client: Client, titanic: tuple[str, Path]
    ) -> None:
        endpoint, _ = titanic
        records = _records(TITANIC_CSV)
        for record in records:
            del record["Fare"]
        with pytest.raises(InvalidRequest, match="Fare"):
            client.predict(endpoint, records)
        with pytest.raises(InvalidRequest):
            client.predict(endpoint, [[3, "male", 22]])
        with pytest.raises(InvalidRequest, match="explode"):
            client.predict(endpoint, _records(TITANIC_CSV), parameters={"method": "explode"})

    # -- batch -------------------------------------------------------------------------------

    def _batch(
        self, client: Client, workdir: Path, csv_text: str, parameters: dict[str, Any] | None
    ) -> list[Any]:
        from cloudserve.provider import Capability

        if not client.provider.supports(Capability.BATCH):
            pytest.skip(f"batch: {client.provider.reason(Capability.BATCH)}")
        harness: Any = self
        spec = BatchSpec(
            model=self.parity_model_spec(workdir),
            input=self.parity_batch_input(workdir, csv_text),
            output=harness.batch_output(workdir),
            parameters=parameters,
        )
        done = client.batch_predict(spec).wait(timeout=300)
        return [_as_output(v) for v in harness.read_batch_output(done.output)]

    def test_batch_with_a_shuffled_header_and_blanks(self, client: Client, workdir: Path) -> None:
        got = self._batch(client, workdir, shuffled_csv(), None)
        want = titanic_answers(workdir / "titanic")
        assert [int(float(v)) for v in got] == want, "batch must match columns by name"

    def test_batch_predict_proba(self, client: Client, workdir: Path) -> None:
        got = self._batch(client, workdir, TITANIC_CSV, {"method": "predict_proba"})
        want = titanic_answers(workdir / "titanic", method="predict_proba")
        assert _close(got, want), f"BatchSpec.parameters must reach the model: got {got[:2]}"
