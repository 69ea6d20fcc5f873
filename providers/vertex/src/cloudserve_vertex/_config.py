"""The ``vertex`` target's typed config."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from cloudserve.provider import ProviderConfig

__all__ = ["VertexConfig"]


class VertexConfig(ProviderConfig):
    """Where the Vertex AI project is and how to reach it.

    ``credentials`` picks the identity: ``default`` (Application Default Credentials),
    ``service_account`` (the JSON key file in ``service_account_file``) or ``anonymous``
    (for the fake service only). ``api_endpoint`` overrides the regional host
    (``https://us-central1-aiplatform.googleapis.com``); a ``http://`` URL points every client
    (Vertex, Cloud Storage, Cloud Monitoring) at a local fake. ``staging_bucket`` holds model
    artifacts, batch inputs and training packages under ``staging_prefix``.
    ``network`` peers endpoints and jobs with a VPC; ``encryption_key`` (a Cloud KMS key name)
    encrypts what cloudserve creates; ``labels`` are added to every resource.
    ``max_request_mb`` is the online request limit (1.5 MB on shared public endpoints);
    larger inputs are split and sent ``predict_concurrency`` at a time. ``request_timeout_s``
    bounds every single request (the v1 clients have no default timeout).
    ``serving_image`` is the cloudserve runtime image in Artifact Registry that the container
    route deploys (``cloudserve build-image --push TARGET`` sets it; there is no default).
    ``training_image`` is the executor image of tuning trials: one of Vertex's prebuilt
    training containers that is still available, or your own (no default, because each
    prebuilt version reaches end of availability).
    """

    provider: Literal["vertex"] = "vertex"
    project: str
    location: str = "us-central1"
    staging_bucket: str
    staging_prefix: str = "cloudserve"
    credentials: Literal["default", "service_account", "anonymous"] = "default"
    service_account_file: str | None = None
    api_endpoint: str | None = None
    transport: Literal["rest", "grpc"] = "rest"
    network: str | None = None
    encryption_key: str | None = None
    service_account: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    max_request_mb: float = Field(1.5, gt=0, le=10)
    predict_concurrency: int = Field(4, ge=1, le=64)
    request_timeout_s: float = Field(60.0, gt=0, le=3600)
    serving_image: str | None = None
    training_image: str | None = None

    @field_validator("staging_bucket")
    @classmethod
    def _gs(cls, value: str) -> str:
        if not value.startswith("gs://") or len(value) <= 5:
            raise ValueError("staging_bucket must be a gs://bucket URI")
        return value.rstrip("/")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        import re

        for k, v in value.items():
            if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", k) or not re.fullmatch(
                r"[a-z0-9_-]{0,63}", v
            ):
                raise ValueError(
                    f"label {k}={v}: keys and values are lowercase letters, digits, '_' or '-'"
                )
        return value

    @model_validator(mode="after")
    def _credentials(self) -> VertexConfig:
        if self.credentials == "service_account" and not self.service_account_file:
            raise ValueError("credentials 'service_account' needs service_account_file")
        if self.api_endpoint and "://" not in self.api_endpoint:
            raise ValueError("api_endpoint needs a scheme: https://host or http://127.0.0.1:PORT")
        if (
            self.transport == "grpc"
            and self.api_endpoint
            and self.api_endpoint.startswith("http://")
        ):
            raise ValueError("a plain-HTTP api_endpoint needs transport 'rest'")
        return self

    @property
    def bucket(self) -> str:
        """The staging bucket's name (without ``gs://``)."""
        return self.staging_bucket.removeprefix("gs://").split("/", 1)[0]
