"""Vertex AI provider for cloudserve.

``import cloudserve_vertex`` imports no ``google.*`` module: the GAPIC clients load on first
use, so discovering the provider (or reading its config) costs nothing. See
``docs/providers/vertex.md``.
"""

from __future__ import annotations

from cloudserve_vertex._config import VertexConfig
from cloudserve_vertex._provider import VertexProvider

__all__ = ["VertexConfig", "VertexProvider"]
