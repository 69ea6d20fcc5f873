"""The local provider: cloudserve's reference implementation and embedded default.

Everything the cloud providers do, for real, on this machine: endpoints as serving-runtime
processes with a weighted (optionally sticky) router and blue/green updates, a model registry,
streamed batch prediction, Optuna tuning, data capture, metrics and drift, and queued
predictions. State lives in SQLite under ``.cloudserve/`` (or ``$CLOUDSERVE_STATE_DIR``). See
``docs/local.md``.
"""

from cloudserve.local.config import LocalConfig
from cloudserve.local.provider import LocalProvider

__all__ = ["LocalConfig", "LocalProvider"]
