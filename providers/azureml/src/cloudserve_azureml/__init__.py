"""Azure ML provider for cloudserve.

``import cloudserve_azureml`` imports no ``azure.*`` module: the SDKs load on first use, so
discovering the provider (or reading its config) costs nothing. See ``docs/providers/azureml.md``.
"""

from __future__ import annotations

from cloudserve_azureml._config import AzureMLConfig
from cloudserve_azureml._provider import AzureMLProvider

__all__ = ["AzureMLConfig", "AzureMLProvider"]
