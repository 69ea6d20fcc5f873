"""``cloudserve serve PATH`` and ``cloudserve build-image PATH``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cloudserve.cli._render import console


def register(app: typer.Typer) -> None:
    """Add the ``serve`` and ``build-image`` commands to the CLI."""
    app.command("serve")(serve)
    app.command("build-image")(build_image)


def serve(
    path: Annotated[Path, typer.Argument(help="Model directory (or model file) to serve.")],
    host: Annotated[
        str, typer.Option(help="Interface; 0.0.0.0 exposes it to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(help="Worker processes sharing the port.")] = 1,
    batch_size: Annotated[
        int, typer.Option(help="Max rows per model call; 1 turns batching off.")
    ] = 64,
    batch_wait_ms: Annotated[float, typer.Option(help="Longest a batch waits to fill.")] = 2.0,
    token: Annotated[
        str | None,
        typer.Option(envvar="CLOUDSERVE_TOKEN", help="Require 'Authorization: Bearer TOKEN'."),
    ] = None,
    max_body_bytes: Annotated[int, typer.Option(help="Larger bodies get 413.")] = 6 * 1024 * 1024,
    max_queue: Annotated[int, typer.Option(help="Queued requests beyond this get 503.")] = 1024,
    max_queue_ms: Annotated[
        float,
        typer.Option(
            help="A new request that would wait longer than this (ms) behind full batches "
            "gets 503 (only while the requests' own work is the bottleneck)."
        ),
    ] = 20.0,
    idle_timeout: Annotated[
        float, typer.Option(help="Seconds before a connection with no request is closed.")
    ] = 75.0,
    header_timeout: Annotated[
        float, typer.Option(help="Seconds a client has to send its headers (then 408).")
    ] = 10.0,
    body_timeout: Annotated[
        float, typer.Option(help="Seconds a client has to send its body (then 408).")
    ] = 30.0,
    max_header_bytes: Annotated[int, typer.Option(help="Larger headers get 431.")] = 16 * 1024,
    cache_size: Annotated[
        int, typer.Option(help="In-process prediction cache entries (0 = off).")
    ] = 0,
    cache_url: Annotated[
        str | None,
        typer.Option(envvar="CLOUDSERVE_CACHE_URL", help="redis://… shared prediction cache."),
    ] = None,
    model_name: Annotated[
        str | None,
        typer.Option(help="Name on the Open Inference Protocol routes (/v2/models/NAME)."),
    ] = None,
) -> None:
    """Serve a model over HTTP with every cloud's routes (SageMaker, Vertex AI, Azure ML, v2)."""
    from cloudserve.serving import ServerSettings
    from cloudserve.serving._server import serve as run

    settings = ServerSettings(
        model_dir=path,
        host=host,
        port=port,
        workers=workers,
        max_batch_size=batch_size,
        max_wait_ms=batch_wait_ms,
        token=token,
        max_body_bytes=max_body_bytes,
        max_queue=max_queue,
        max_queue_ms=max_queue_ms,
        idle_timeout_s=idle_timeout,
        header_timeout_s=header_timeout,
        body_timeout_s=body_timeout,
        max_header_bytes=max_header_bytes,
        cache_size=cache_size,
        cache_url=cache_url,
        model_name=model_name,
    )
    console.print(f"serving [bold]{path}[/] on http://{host}:{port} (Ctrl-C to stop)")
    code = run(settings)
    if code:
        raise typer.Exit(code)


def build_image(
    path: Annotated[Path, typer.Argument(help="Model directory (or model file) to package.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Build context directory.")] = Path(
        "cloudserve-image"
    ),
    tag: Annotated[
        str | None, typer.Option(help="Image tag (default: cloudserve-NAME:latest).")
    ] = None,
    base_image: Annotated[
        str, typer.Option(help="Base image with Python 3.10+ and pip.")
    ] = "python:3.11-slim",
    build: Annotated[
        bool, typer.Option(help="Build it with Docker or Podman, whichever answers.")
    ] = True,
    engine: Annotated[
        str | None, typer.Option(help="docker or podman (default: the first that answers).")
    ] = None,
    push: Annotated[
        str | None,
        typer.Option(
            help="Push to this target's registry (ECR, Artifact Registry, the workspace's ACR) "
            "and record the URI as the target's serving_image."
        ),
    ] = None,
    repository: Annotated[str, typer.Option(help="Repository in the registry.")] = "cloudserve",
) -> None:
    """Write a build context for one image that runs on every cloud and locally, and build it.

    With ``--push TARGET`` the image goes to that target's registry, logged in with the target's
    own SDK, and the pushed URI becomes the target's ``serving_image`` in the targets file: the
    container route deploys it.
    """
    from cloudserve.serving._image import build_image as run_build
    from cloudserve.serving._image import container_engine, write_build_context

    context = write_build_context(path, output, base_image=base_image)
    packages = len(context.requirements)
    console.print(f"wrote {context.dockerfile} ({context.framework} model, {packages} packages)")
    if not build:
        return
    found = container_engine(engine)
    if found is None:
        tried = engine or "Docker or Podman"
        console.print(
            f"no container engine answered ({tried}); build it later with: "
            f"podman build -t IMAGE {context.directory}"
        )
        if push:
            raise typer.Exit(1)
        return
    name = tag or f"cloudserve-{path.resolve().stem.lower()}:{context.version}"
    run_build(context, name, engine=found)
    console.print(f"built image [bold]{name}[/] with {found}")
    if push:
        _push(name, push, repository, found)


def _push(local: str, target_name: str, repository: str, engine: str) -> None:
    from cloudserve.config import resolve_target
    from cloudserve.serving._registry import push_image, record_serving_image, registry_for_target

    target = resolve_target(target_name)
    remote, login = registry_for_target(target, repository, local.rsplit(":", 1)[-1])
    push_image(local, remote, engine=engine, login=login)
    console.print(f"pushed [bold]{remote}[/]")
    if target.file is None or "serving_image" not in type(target.config).model_fields:
        # no file to record it in, or a provider whose config has no serving_image field yet
        console.print(f"deploy it with image={remote!r} (target '{target_name}')")
        return
    record_serving_image(target.file, target_name, remote)
    console.print(f"{target.file}: targets.{target_name}.serving_image = {remote}")
