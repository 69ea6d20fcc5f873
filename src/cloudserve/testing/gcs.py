"""A local Cloud Storage for tests: what a Vertex AI container downloads ``AIP_STORAGE_URI`` from.

``gcp-storage-emulator`` (PyPI) speaks the JSON API that ``google-cloud-storage`` uses; the client
goes there when ``STORAGE_EMULATOR_HOST`` is set::

    with gcs_emulator() as host:                 # "http://127.0.0.1:PORT"
        uri = upload_dir(host, "bucket", "models/churn/3", model_dir)   # "gs://bucket/models/…"
        # run the server with AIP_STORAGE_URI=uri and STORAGE_EMULATOR_HOST=host

Needs the ``gcp-storage-emulator`` and ``google-cloud-storage`` packages (test dependencies).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["gcs_emulator", "upload_dir"]


@contextmanager
def gcs_emulator(host: str = "127.0.0.1") -> Iterator[str]:
    """Run an in-memory emulator on a free port; yields its URL for ``STORAGE_EMULATOR_HOST``."""
    from gcp_storage_emulator.server import create_server

    with socket.socket() as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    server = create_server(host, port, in_memory=True)
    server.start()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def upload_dir(emulator: str, bucket: str, prefix: str, directory: str | Path) -> str:
    """Upload every file under ``directory`` to ``gs://bucket/prefix/…``; returns that URI."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=emulator),
    )
    b = client.bucket(bucket)
    if not b.exists():
        b = client.create_bucket(bucket)
    root = Path(directory)
    for path in sorted(root.rglob("*")):
        if path.is_file():
            b.blob(f"{prefix}/{path.relative_to(root).as_posix()}").upload_from_filename(str(path))
    return f"gs://{bucket}/{prefix}"
