"""What a user asks for: model, compute, deploy, batch, training and tuning specs.

Specs are frozen pydantic models. What is wrong on every cloud is refused here, when the spec
is built, with :class:`~cloudserve.errors.InvalidSpec` (an ``InvalidRequest`` naming the
field); what the chosen cloud cannot honour is refused once, by the provider's ``validate``,
which the Client calls before any request.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cloudserve.errors import InvalidSpec

__all__ = [
    "BatchSpec",
    "Choice",
    "Compute",
    "DataCapture",
    "DeploySpec",
    "Framework",
    "IntRange",
    "LogUniform",
    "ModelSpec",
    "Objective",
    "Param",
    "TrainSpec",
    "TuningSpec",
    "Uniform",
    "Workload",
]

Framework = Literal["sklearn", "xgboost", "onnx", "pytorch", "custom", "mlflow"]
NAME_PATTERN = r"^[a-zA-Z][a-zA-Z0-9-]{0,62}$"


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, /, **data: Any) -> None:
        with spec_errors(type(self).__name__):
            super().__init__(**data)

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Any:
        with spec_errors(cls.__name__):
            return super().model_validate(obj, **kwargs)

    @classmethod
    def model_validate_json(cls, json_data: Any, **kwargs: Any) -> Any:
        with spec_errors(cls.__name__):
            return super().model_validate_json(json_data, **kwargs)


@contextmanager
def spec_errors(spec: str) -> Iterator[None]:
    """Turn pydantic's ``ValidationError`` of building ``spec`` into :class:`InvalidSpec`."""
    try:
        yield
    except ValidationError as exc:
        raise invalid_spec(spec, exc) from exc


def invalid_spec(spec: str, exc: ValidationError) -> InvalidSpec:
    """pydantic's errors as one :class:`InvalidSpec` naming each bad field."""
    problems: list[tuple[str | None, str]] = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(part) for part in err["loc"]) or None
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, InvalidSpec):  # a nested spec built from a dict
            for sub, message in inner.problems:
                problems.append((".".join(p for p in (field, sub) if p) or None, message))
            continue
        problems.append((field, err["msg"].removeprefix("Value error, ")))
    return InvalidSpec(spec, problems)


class _PositionalSpec(_Spec):
    """A spec whose first fields may also be given by position, as the docs write them:
    ``LogUniform(1e-4, 1e-1)``, ``IntRange(2, 10)``, ``Objective("val_auc", goal="maximize")``.
    """

    positional_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *args: Any, **data: Any) -> None:
        names = self.positional_fields
        if len(args) > len(names):
            raise TypeError(
                f"{type(self).__name__}() takes at most {len(names)} positional argument(s) "
                f"({', '.join(names)}), got {len(args)}"
            )
        for name, value in zip(names, args, strict=False):
            if name in data:
                raise TypeError(f"{type(self).__name__}() got two values for '{name}'")
            data[name] = value
        super().__init__(**data)


class ModelSpec(_Spec):
    """A trained model: a local directory / file or a cloud URI, or a container image.

    ``framework`` picks the framework route (cloudserve packages the artifact for each cloud's
    prebuilt container); ``image`` picks the container route (the cloudserve runtime image).
    """

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    version: str = "1"
    artifact: str | None = None
    framework: Framework | None = None
    framework_version: str | None = None
    image: str | None = None
    signature: dict[str, Any] | None = None
    sample_input: list[Any] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("artifact", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        return str(value) if isinstance(value, Path) else value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "._-" for c in value):
            raise ValueError("version must be letters, digits, '.', '_' or '-'")
        return value

    @model_validator(mode="after")
    def _artifact_or_image(self) -> ModelSpec:
        if self.artifact is None and self.image is None:
            raise ValueError("a model needs an artifact, an image, or both")
        return self

    @property
    def is_local(self) -> bool:
        """True when the artifact is a path on this machine rather than a cloud URI."""
        return self.artifact is not None and "://" not in self.artifact

    @property
    def variant_name(self) -> str:
        """The default variant name for this model version: ``v<version>``."""
        return "v" + self.version.replace(".", "-").replace("_", "-")


class Compute(_Spec):
    """Where a model runs: a normalised ``size`` (``cpu.small`` …) or an explicit instance type.

    ``replicas`` is the starting count; ``min_replicas``/``max_replicas`` turn on autoscaling
    when they differ.
    """

    size: str | None = "cpu.small"
    instance_type: str | None = None
    replicas: Annotated[int, Field(ge=0)] = 1
    min_replicas: Annotated[int, Field(ge=0)] | None = None
    max_replicas: Annotated[int, Field(ge=1)] | None = None
    accelerator: str | None = None
    accelerator_count: Annotated[int, Field(ge=0)] = 0
    serverless: bool = False
    serverless_memory_mb: Annotated[int, Field(ge=1024, le=6144)] | None = None
    max_concurrency: Annotated[int, Field(ge=1)] | None = None
    autoscale_target: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Compute:
        lo = self.min_replicas if self.min_replicas is not None else self.replicas
        hi = self.max_replicas if self.max_replicas is not None else max(self.replicas, lo)
        if lo > hi:
            raise ValueError(f"min_replicas ({lo}) is greater than max_replicas ({hi})")
        if not lo <= self.replicas <= hi and not self.serverless:
            raise ValueError(f"replicas ({self.replicas}) must lie in [{lo}, {hi}]")
        if self.replicas == 0 and not self.serverless and hi == 0:
            raise ValueError("replicas must be at least 1 for a real-time endpoint")
        return self

    @property
    def replica_range(self) -> tuple[int, int]:
        """The (min, max) replica counts, equal when autoscaling is off."""
        lo = self.min_replicas if self.min_replicas is not None else self.replicas
        hi = self.max_replicas if self.max_replicas is not None else max(self.replicas, lo)
        return lo, hi

    @property
    def autoscaling(self) -> bool:
        """True when the replica count may change with load."""
        lo, hi = self.replica_range
        return lo != hi


class DataCapture(_Spec):
    """Capture of requests and responses, used by monitoring and drift."""

    enabled: bool = True
    sampling_rate: Annotated[float, Field(gt=0, le=1)] = 1.0
    destination: str | None = None
    capture_responses: bool = True


class DeploySpec(_Spec):
    """One model version behind one endpoint, on given compute.

    ``traffic`` is the share (percent) the new variant gets. 100 (the default) is a blue/green
    update: the new variant becomes ready, takes all traffic, and the others are drained and
    removed. Below 100 the new variant is added beside the others (a canary), which keep their
    relative shares of the rest.

    ``shadow`` (a percentage) deploys the variant as a shadow instead: it answers no caller, and
    that share of the requests to the endpoint is also sent to it, its answers kept beside the
    production ones for ``Client.shadow_report``. A shadow variant takes no traffic
    (``traffic=0``).
    """

    model: ModelSpec
    endpoint: Annotated[str, Field(pattern=NAME_PATTERN)]
    compute: Compute = Field(default_factory=Compute)
    variant: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    traffic: Annotated[int, Field(ge=0, le=100)] = 100
    shadow: Annotated[int, Field(ge=0, le=100)] = 0
    data_capture: DataCapture | None = None
    keep_on_failure: bool = False
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _shadow_takes_no_traffic(self) -> DeploySpec:
        if self.shadow and self.traffic:
            raise ValueError(
                f"a shadow variant takes no traffic: traffic must be 0 with shadow={self.shadow}"
            )
        return self

    @property
    def variant_name(self) -> str:
        """The variant this deploy creates or updates."""
        return self.variant or self.model.variant_name


class BatchSpec(_Spec):
    """Predictions for every row of a file or a cloud prefix, written to ``output``."""

    model: ModelSpec
    input: str
    output: str
    format: Literal["csv", "jsonl", "parquet"] | None = None
    compute: Compute = Field(default_factory=Compute)
    batch_size: Annotated[int, Field(ge=1)] = 64
    max_concurrency: Annotated[int, Field(ge=1)] = 2
    max_payload_mb: Annotated[float, Field(gt=0, le=100)] = 6
    error_threshold: Annotated[int, Field(ge=-1)] = -1
    rows_hint: Annotated[int, Field(ge=0)] | None = None
    rows_per_second_hint: Annotated[float, Field(gt=0)] | None = None
    #: passed to the model with every chunk, as in online prediction (``{"method":
    #: "predict_proba"}``); a key the model does not read fails the job's rows with that error
    parameters: dict[str, Any] | None = None

    @field_validator("input", "output", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        return str(value) if isinstance(value, Path) else value

    @property
    def resolved_format(self) -> str:
        """The input format, from ``format`` or the input's extension."""
        if self.format:
            return self.format
        suffix = Path(self.input.split("?")[0]).suffix.lower().lstrip(".")
        return {"jsonl": "jsonl", "json": "jsonl", "parquet": "parquet", "pq": "parquet"}.get(
            suffix, "csv"
        )


class Uniform(_PositionalSpec):
    """A float drawn uniformly from [low, high]."""

    positional_fields = ("low", "high")

    kind: Literal["uniform"] = "uniform"
    low: float
    high: float

    @model_validator(mode="after")
    def _order(self) -> Uniform:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class LogUniform(_PositionalSpec):
    """A positive float drawn uniformly in log space from [low, high]."""

    positional_fields = ("low", "high")

    kind: Literal["loguniform"] = "loguniform"
    low: Annotated[float, Field(gt=0)]
    high: Annotated[float, Field(gt=0)]

    @model_validator(mode="after")
    def _order(self) -> LogUniform:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class IntRange(_PositionalSpec):
    """An integer from [low, high] inclusive, in steps of ``step``; ``log`` samples in log space."""

    positional_fields = ("low", "high", "step")

    kind: Literal["int"] = "int"
    low: int
    high: int
    step: Annotated[int, Field(ge=1)] = 1
    log: bool = False

    @model_validator(mode="after")
    def _order(self) -> IntRange:
        if not self.low <= self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scaled integer range needs low > 0")
        return self


class Choice(_PositionalSpec):
    """One of a list of values (strings, numbers or booleans)."""

    positional_fields = ("values",)

    kind: Literal["choice"] = "choice"
    values: Annotated[list[str | int | float | bool], Field(min_length=1)]


Param = Annotated[Uniform | LogUniform | IntRange | Choice, Field(discriminator="kind")]


class Objective(_PositionalSpec):
    """The metric a tuning job optimises.

    ``regex`` finds it in the training output (its first group is the value), the way SageMaker
    metric definitions work; the default matches lines such as ``val_auc=0.91`` or
    ``val_auc: 0.91``.
    """

    positional_fields = ("metric", "goal")

    metric: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.:/-]*$")]
    goal: Literal["maximize", "minimize"] = "maximize"
    regex: str | None = None

    @property
    def pattern(self) -> str:
        """The regex that finds the metric's value in a line of training output."""
        import re

        if self.regex:
            return self.regex
        return re.escape(self.metric) + r"\s*[=:]\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


class TrainSpec(_Spec):
    """A training run: a script (``entrypoint``) or a ``command``, with data and compute.

    Hyperparameters reach the script as ``--name value`` arguments and as
    ``CLOUDSERVE_HP_<NAME>`` environment variables.
    """

    entrypoint: str | None = None
    command: list[str] | None = None
    source_dir: str | None = None
    image: str | None = None
    framework: Framework | None = None
    framework_version: str | None = None
    inputs: dict[str, str] = Field(default_factory=dict)
    hyperparameters: dict[str, str | int | float | bool] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    compute: Compute = Field(default_factory=Compute)
    max_runtime_s: Annotated[int, Field(ge=1)] = 3600

    @model_validator(mode="after")
    def _entry(self) -> TrainSpec:
        if (self.entrypoint is None) == (self.command is None):
            raise ValueError("give exactly one of entrypoint or command")
        return self


class TuningSpec(_Spec):
    """A hyperparameter search: the training run, the space, the objective and the budget."""

    train: TrainSpec
    search_space: Annotated[dict[str, Param], Field(min_length=1)]
    objective: Objective
    max_trials: Annotated[int, Field(ge=1)] = 10
    parallel_trials: Annotated[int, Field(ge=1)] = 1
    strategy: Literal["bayesian", "random", "grid", "hyperband"] = "bayesian"
    early_stopping: bool = False
    seed: int | None = None
    name: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    trial_time_hint_s: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _budget(self) -> TuningSpec:
        if self.parallel_trials > self.max_trials:
            raise ValueError(
                f"parallel_trials ({self.parallel_trials}) exceeds max_trials ({self.max_trials})"
            )
        if self.strategy == "grid":
            for name, param in self.search_space.items():
                if isinstance(param, Uniform | LogUniform):
                    raise ValueError(
                        f"grid search needs discrete parameters; '{name}' is continuous"
                    )
        return self


class Workload(_Spec):
    """A load to drive at an endpoint: open loop at ``rps`` or closed loop at ``concurrency``."""

    rps: Annotated[float, Field(gt=0)] | None = None
    concurrency: Annotated[int, Field(ge=1)] | None = None
    duration_s: Annotated[float, Field(gt=0)] = 30.0
    warmup_s: Annotated[float, Field(ge=0)] = 2.0
    payload: list[Any] | None = None
    rows_per_request: Annotated[int, Field(ge=1)] = 1
    timeout_s: Annotated[float, Field(gt=0)] = 30.0

    @model_validator(mode="before")
    @classmethod
    def _default_rate(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("rps") is None and data.get("concurrency") is None:
            return {**data, "rps": 10.0}
        return data

    @model_validator(mode="after")
    def _mode(self) -> Workload:
        if self.rps is not None and not math.isfinite(self.rps):
            raise ValueError("rps must be finite")
        return self

    @property
    def mode(self) -> Literal["open", "closed"]:
        """``open`` (fixed arrival rate) unless only ``concurrency`` is given."""
        return "closed" if self.concurrency is not None and self.rps is None else "open"
