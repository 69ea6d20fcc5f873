"""Amazon SageMaker provider for cloudserve.

``import cloudserve_sagemaker`` imports no ``boto3`` / ``botocore`` module: the SDK loads on the
first call that needs it, so discovering the provider or reading its config costs nothing.
See ``docs/providers/sagemaker.md``.
"""

from __future__ import annotations

from cloudserve_sagemaker._config import AsyncInferenceSettings, SageMakerConfig, VpcSettings
from cloudserve_sagemaker._provider import SageMakerProvider

__all__ = ["AsyncInferenceSettings", "SageMakerConfig", "SageMakerProvider", "VpcSettings"]
