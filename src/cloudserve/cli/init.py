"""``cloudserve init``: scaffold a ``cloudserve.yaml`` with the local target and chosen clouds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cloudserve.cli._render import console
from cloudserve.errors import InvalidRequest

__all__ = ["register", "scaffold"]

# target name → (provider, its settings with placeholder values, what each one is)
CLOUD_TARGETS: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "aws": (
        "sagemaker",
        [
            ("region", "us-east-1", "AWS region"),
            ("role_arn", '"arn:aws:iam::123456789012:role/sagemaker"', "role SageMaker assumes"),
            ("bucket", "my-models", "S3 bucket for model artifacts"),
        ],
    ),
    "gcp": (
        "vertex",
        [
            ("project", "my-project", "Google Cloud project id"),
            ("location", "us-central1", "Vertex AI region"),
            ("staging_bucket", '"gs://my-models"', "GCS bucket for model artifacts"),
        ],
    ),
    "azure": (
        "azureml",
        [
            ("subscription_id", '"00000000-0000-0000-0000-000000000000"', "subscription"),
            ("resource_group", "my-resource-group", "resource group of the workspace"),
            ("workspace", "my-workspace", "Azure ML workspace"),
        ],
    ),
}


def scaffold(clouds: list[str], default: str = "local") -> str:
    """The text of a ``cloudserve.yaml`` with ``local`` and a target for each cloud named."""
    unknown = sorted(set(clouds) - set(CLOUD_TARGETS))
    if unknown:
        raise InvalidRequest(
            f"unknown cloud {unknown[0]!r}; choose from {', '.join(CLOUD_TARGETS)}"
        )
    lines = [
        "# cloudserve targets. `cloudserve targets` lists them; `--target NAME` (or",
        "# CLOUDSERVE_TARGET=NAME) picks one. Every field can be overridden from the environment:",
        "# CLOUDSERVE_<TARGET>__<FIELD>=value, e.g. CLOUDSERVE_AWS__REGION=eu-west-1.",
        "# Replace the placeholder values below with your own.",
        f"default: {default}",
        "targets:",
        "  local: {provider: local}",
    ]
    for name in dict.fromkeys(clouds):
        provider, fields = CLOUD_TARGETS[name]
        lines += [f"  {name}:", f"    provider: {provider}"]
        lines += [f"    {key}: {value}  # {what}" for key, value, what in fields]
    return "\n".join(lines) + "\n"


def init(
    cloud: Annotated[
        list[str] | None,
        typer.Option("--cloud", "-c", help="Add a target for aws, gcp or azure (repeat)."),
    ] = None,
    path: Annotated[Path, typer.Option(help="File to write.")] = Path("cloudserve.yaml"),
    default: Annotated[str, typer.Option(help="The default target.")] = "local",
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a cloudserve.yaml with the local target and a target for each --cloud."""
    clouds = list(cloud or [])
    if default != "local" and default not in clouds:
        raise InvalidRequest(f"--default {default!r} is not among the targets written")
    if path.exists() and not force:
        raise InvalidRequest(f"{path} already exists; pass --force to overwrite it")
    path.write_text(scaffold(clouds, default), encoding="utf-8")
    console.print(f"wrote {path} (targets: {', '.join(['local', *dict.fromkeys(clouds)])})")


def register(app: typer.Typer) -> None:
    """Add ``init`` to the CLI."""
    app.command("init")(init)
