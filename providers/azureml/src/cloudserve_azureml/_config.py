"""The ``azureml`` target's typed config."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from cloudserve.provider import ProviderConfig

__all__ = ["AzureMLConfig"]


class AzureMLConfig(ProviderConfig):
    """Where the Azure ML workspace is and how to reach it.

    ``credential`` picks the identity: ``default`` (``DefaultAzureCredential``: environment,
    managed identity, Azure CLI …) or ``service_principal`` (``tenant_id``, ``client_id`` and
    ``client_secret``, the secret never printed). ``compute`` names the compute cluster that
    batch and sweep jobs run on. ``sdk_polling_interval_s`` is how often the SDK polls a
    long-running operation (``None`` keeps the SDK's 30 s; tests use 0.01).

    Batch: ``batch_mini_batch_size`` is how many input *files* one ``run()`` call of a batch
    deployment gets (Azure's ``mini_batch_size``; the rows per model call come from
    ``BatchSpec.batch_size``). Tuning: ``early_termination`` picks the policy a sweep uses when
    ``TuningSpec.early_stopping`` is set; ``training_environment`` names an existing environment
    for the trials (``azureml:NAME:VERSION``), else one is built from ``environment_image``
    with the training script's imports pinned. ``extra_requirements`` are pip lines added to
    every environment cloudserve builds (a private package your pickle needs, say); cloudserve
    itself is on no package index and is never one of them.

    ``serving_image`` is the cloudserve serving image in the workspace's container registry
    (``cloudserve build-image MODEL --push TARGET`` pushes it and records it here): the container
    route deploys it for a model the framework route cannot serve (anything but scikit-learn
    and XGBoost) unless the model names its own ``image``.
    """

    provider: Literal["azureml"] = "azureml"
    subscription_id: str
    resource_group: str
    workspace: str
    region: str | None = None
    credential: Literal["default", "service_principal"] = "default"
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    compute: str | None = None
    sdk_polling_interval_s: float | None = Field(None, gt=0)
    environment_image: str = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
    extra_requirements: list[str] = Field(default_factory=list)
    request_timeout_ms: int = Field(5000, ge=1000, le=180000)
    max_request_mb: float = Field(5.0, gt=0)
    predict_concurrency: int = Field(4, ge=1, le=64)
    batch_mini_batch_size: int = Field(10, ge=1)
    batch_max_retries: int = Field(3, ge=0)
    early_termination: Literal["bandit", "median_stopping", "truncation_selection"] = "bandit"
    training_environment: str | None = None
    serving_image: str | None = Field(None, min_length=1, max_length=512)

    @field_validator("extra_requirements")
    @classmethod
    def _no_cloudserve(cls, lines: list[str]) -> list[str]:
        bad = [line for line in lines if line.strip().lower().startswith("cloudserve")]
        if bad:
            raise ValueError(
                f"{bad[0]} is on no package index, so an Azure environment cannot install it"
            )
        return lines

    @model_validator(mode="after")
    def _service_principal(self) -> AzureMLConfig:
        if self.credential == "service_principal":
            missing = [
                f for f in ("tenant_id", "client_id", "client_secret") if getattr(self, f) is None
            ]
            if missing:
                raise ValueError(f"credential 'service_principal' needs {', '.join(missing)}")
        return self
