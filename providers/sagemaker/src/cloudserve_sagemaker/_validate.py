"""Pure checks of specs against SageMaker's limits; no SDK, no request.

Facts used here, with their sources (also in ``docs/providers/sagemaker.md``):

- ``KmsKeyId`` (CreateEndpointConfig) and ``VolumeKmsKeyId`` (transform, training): "Certain
  Nitro-based instances include local storage … encrypted using a hardware module on the
  instance. You can't request a KmsKeyId when using an instance type with local storage … the
  call to CreateEndpointConfig fails" (SageMaker API reference, CreateEndpointConfig.KmsKeyId;
  TransformResources.VolumeKmsKeyId). Families with NVMe instance storage: g4dn, g4ad, g5, g6,
  g6e, p3dn, p4d, p4de, p5…, trn1/trn2, and the ``d`` variants (m5d, c5d, r5d, m6id …).
- Serverless invocations carry at most 4 MB (real-time: 6 MB).
"""

from __future__ import annotations

import re

__all__ = ["SERVERLESS_PAYLOAD_MB", "has_local_storage"]

SERVERLESS_PAYLOAD_MB = 4.0

_LOCAL_STORAGE = re.compile(
    r"^ml\.(g4dn|g4ad|g5|g6|g6e|gr6|p3dn|p4d|p4de|p5[a-z]*|p6[a-z0-9-]*|trn1n?|trn2|"
    r"[cmr]\d+[a-z]*d[a-z]*)\."
)


def has_local_storage(instance_type: str | None) -> bool:
    """True for instance types with local NVMe storage (no KMS key may be requested)."""
    return bool(instance_type and _LOCAL_STORAGE.match(instance_type))
