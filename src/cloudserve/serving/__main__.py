"""``python -m cloudserve.serving [--model-dir DIR] [--port N ...] [serve]``: run the server.

Defaults follow the container contracts: the port is ``AIP_HTTP_PORT`` (Vertex AI),
``SAGEMAKER_BIND_TO_PORT``, else 8080; without ``--model-dir`` the model is the one the cloud
handed over (``AIP_STORAGE_URI``, ``AZUREML_MODEL_DIR``, ``/opt/ml/model``, ``/mnt/models``, then
one baked into the image; see ``cloudserve.serving._location``); the token may come from
``CLOUDSERVE_TOKEN`` (so it does not show in the process list). A ``serve`` argument anywhere is
accepted, because SageMaker starts containers as ``docker run IMAGE serve`` (after the image's
own ENTRYPOINT arguments), and KServe's ``--model_name`` / ``--http_port`` spellings too.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cloudserve.serving._settings import ServerSettings, default_port


def parse_args(argv: list[str]) -> ServerSettings:
    """Settings from the command line (and the environment for defaults)."""
    p = argparse.ArgumentParser(prog="python -m cloudserve.serving", description=__doc__)
    p.add_argument(
        "command", nargs="?", choices=["serve"], help="SageMaker's `docker run IMAGE serve`"
    )
    p.add_argument("--model-dir", type=Path, default=None)
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to listen on every interface")
    p.add_argument("--port", "--http_port", type=int, default=default_port())
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64, help="max rows per model call; 1 = off")
    p.add_argument("--batch-wait-ms", type=float, default=2.0)
    p.add_argument("--max-queue", type=int, default=1024, help="waiting requests beyond → 503")
    p.add_argument("--max-queue-ms", type=float, default=20.0, help="oldest waiting → 503")
    p.add_argument("--idle-timeout", type=float, default=75.0, help="seconds; idle connections")
    p.add_argument("--header-timeout", type=float, default=10.0, help="seconds to send headers")
    p.add_argument("--body-timeout", type=float, default=30.0, help="seconds to send the body")
    p.add_argument("--max-header-bytes", type=int, default=16 * 1024, help="larger → 431")
    p.add_argument("--token", default=os.environ.get("CLOUDSERVE_TOKEN"))
    p.add_argument("--max-body-bytes", type=int, default=6 * 1024 * 1024)
    p.add_argument("--cache-size", type=int, default=0, help="in-process LRU entries; 0 = off")
    p.add_argument("--cache-url", default=os.environ.get("CLOUDSERVE_CACHE_URL"))
    p.add_argument("--model-name", "--model_name", default=None)
    p.add_argument("--log-level", default="info")
    a = p.parse_intermixed_args(argv)
    return ServerSettings(
        model_dir=a.model_dir,
        host=a.host,
        port=a.port,
        workers=a.workers,
        max_batch_size=a.batch_size,
        max_wait_ms=a.batch_wait_ms,
        max_queue=a.max_queue,
        max_queue_ms=a.max_queue_ms,
        idle_timeout_s=a.idle_timeout,
        header_timeout_s=a.header_timeout,
        body_timeout_s=a.body_timeout,
        max_header_bytes=a.max_header_bytes,
        token=a.token or None,
        max_body_bytes=a.max_body_bytes,
        cache_size=a.cache_size,
        cache_url=a.cache_url or None,
        model_name=a.model_name,
        log_level=a.log_level,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM; returns the exit code."""
    from cloudserve.serving._server import serve

    return serve(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
