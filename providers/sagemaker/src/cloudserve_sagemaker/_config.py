"""The ``sagemaker`` target's typed config."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cloudserve.provider import ProviderConfig

__all__ = ["AsyncInferenceSettings", "SageMakerConfig", "VpcSettings"]

_ARN_ROLE = r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$"


class VpcSettings(BaseModel):
    """Subnets and security groups the model containers run in (``VpcConfig``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subnets: list[str] = Field(min_length=1)
    security_group_ids: list[str] = Field(min_length=1)


class AsyncInferenceSettings(BaseModel):
    """Deploy asynchronous endpoints: requests are queued, inputs and outputs live in S3.

    ``output_path`` defaults to ``s3://<bucket>/<prefix>/async-output``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    output_path: str | None = Field(None, pattern=r"^s3://")
    max_concurrent_invocations_per_instance: int = Field(4, ge=1, le=1000)


class SageMakerConfig(ProviderConfig):
    """Where SageMaker runs and how cloudserve reaches it.

    ``role_arn`` is the execution role the models, transform and training jobs run as;
    ``bucket``/``prefix`` is where artifacts, batch inputs/outputs, capture files and training
    code go. ``endpoint_url`` points every service at one address (LocalStack, the test fake);
    ``service_endpoints`` overrides one service at a time (``{"sagemaker-runtime": "…"}``).
    ``retry_mode`` is botocore's mode; whatever it is, botocore makes one attempt per call and
    cloudserve's ``retry`` policy alone decides repeats, so attempts are bounded and not doubled.
    ``async_inference`` makes deploys on this target create asynchronous endpoints.
    ``serving_image`` is the cloudserve serving image in ECR that the container route deploys
    (``cloudserve build-image MODEL --push TARGET`` sets it): models no prebuilt framework image
    can load take it.
    """

    provider: Literal["sagemaker"] = "sagemaker"
    region: str = "us-east-1"
    role_arn: str = Field(pattern=_ARN_ROLE)
    bucket: str = Field(min_length=3, max_length=63)
    prefix: str = "cloudserve"
    profile: str | None = None
    endpoint_url: str | None = None
    service_endpoints: dict[str, str] = Field(default_factory=dict)
    vpc: VpcSettings | None = None
    kms_key_id: str | None = None
    retry_mode: Literal["standard", "adaptive", "legacy"] = "standard"
    connect_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(70.0, gt=0)
    async_inference: AsyncInferenceSettings | None = None
    serving_image: str | None = Field(None, min_length=1, max_length=255)
    predict_concurrency: int = Field(8, ge=1, le=64)
    max_payload_mb: float = Field(6.0, gt=0, le=6.0)
    capture_path: str | None = Field(None, pattern=r"^s3://")
    autoscale_target: float = Field(70.0, gt=0)

    @field_validator("prefix")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip("/")

    def s3_uri(self, *parts: str) -> str:
        """``s3://bucket/prefix/<parts…>``."""
        path = "/".join(p.strip("/") for p in (self.prefix, *parts) if p)
        return f"s3://{self.bucket}/{path}"
