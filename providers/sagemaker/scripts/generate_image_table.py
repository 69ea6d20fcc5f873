#!/usr/bin/env python3
"""Regenerate ``cloudserve_sagemaker/_image_uris.json`` from the SageMaker Python SDK's tables.

The SDK's ``image_uri_config/{sklearn,xgboost,pytorch}.json`` (``sagemaker.core`` in SDK 3.x,
``sagemaker`` in 2.x) list every published framework image: repository, tag parts and the ECR
account of every region. This script turns them into the URIs the SDK's
``image_uris.retrieve`` would build — same tag rule (``_format_tag``: version or ``tag_prefix``,
processor, Python version, container version), same host (botocore's ECR endpoint for the
region) — so cloudserve needs no SDK at run time::

    python providers/sagemaker/scripts/generate_image_table.py            # from the installed SDK
    python providers/sagemaker/scripts/generate_image_table.py --config-dir DIR

``tests/test_sagemaker_images.py`` diffs the checked-in table against the installed SDK.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

FRAMEWORKS = ("sklearn", "xgboost", "pytorch")
SCOPES = ("inference", "training")
OUT = Path(__file__).resolve().parents[1] / "src" / "cloudserve_sagemaker" / "_image_uris.json"


def sdk_config_dir() -> tuple[Path, str]:
    """The installed SDK's ``image_uri_config`` folder and a label naming the distribution."""
    for module, dist in (("sagemaker.core", "sagemaker-core"), ("sagemaker", "sagemaker")):
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            continue
        if spec is None or not spec.submodule_search_locations:
            continue
        folder = Path(next(iter(spec.submodule_search_locations))) / "image_uri_config"
        if (folder / "sklearn.json").exists():
            return folder, f"{dist} {importlib.metadata.version(dist)}"
    raise SystemExit("no SageMaker Python SDK installed; pass --config-dir")


def ecr_host(region: str) -> str:
    """botocore's ECR hostname for ``region`` (what the SDK puts after ``<account>.dkr.``)."""
    import botocore.loaders
    from botocore.regions import EndpointResolver

    loader = botocore.loaders.create_loader()
    resolver = EndpointResolver(loader.load_data("endpoints"))
    found = resolver.construct_endpoint("ecr", region)
    return found["hostname"] if found else f"ecr.{region}.amazonaws.com"


def tag_parts(config: dict[str, Any], row: dict[str, Any]) -> tuple[str | None, dict[str, str]]:
    """The row's fixed tag prefix (None: the version asked for, as the SDK does) and, per
    processor, the rest of the tag as the SDK's ``_format_tag`` builds it (newest Python)."""
    processors = config.get("processors") or row.get("processors") or [None]
    py_versions = row.get("py_versions") or [None]
    py = py_versions[-1]
    out = {}
    for processor in processors:
        container = (row.get("container_version") or {}).get(processor)
        shown = processor if row.get("processor_in_tag", True) else None
        rest = "".join(f"-{p}" for p in (shown, py, container) if p)
        out[processor or "cpu"] = rest
    return row.get("tag_prefix"), out


def build(folder: Path, source: str) -> dict[str, Any]:
    registries: dict[str, dict[str, str]] = {}
    table: dict[str, Any] = {}
    regions: set[str] = set()
    for framework in FRAMEWORKS:
        data = json.loads((folder / f"{framework}.json").read_text())
        for scope in SCOPES:
            config = data[scope]
            rows = {}
            for version, row in config["versions"].items():
                if "registries" not in row or "repository" not in row:
                    continue
                key = hashlib.sha256(
                    json.dumps(row["registries"], sort_keys=True).encode()
                ).hexdigest()[:10]
                registries[key] = dict(sorted(row["registries"].items()))
                regions |= set(row["registries"])
                prefix, suffixes = tag_parts(config, row)
                rows[version] = {
                    "repository": row["repository"],
                    "tag_prefix": prefix,
                    "tag_suffixes": suffixes,
                    "py_versions": row.get("py_versions", []),
                    "registries": key,
                }
            table.setdefault(framework, {})[scope] = {
                "versions": rows,
                "aliases": config.get("version_aliases", {}),
            }
    return {
        "source": f"{source} image_uri_config",
        "frameworks": table,
        "registries": dict(sorted(registries.items())),
        "hosts": {r: ecr_host(r) for r in sorted(regions)},
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-dir", type=Path, help="an image_uri_config folder")
    parser.add_argument("--source", default=None, help="label for the table's source")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.config_dir:
        folder, source = args.config_dir, args.source or str(args.config_dir)
    else:
        folder, source = sdk_config_dir()
    table = build(folder, args.source or source)
    args.out.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out} from {table['source']}: {len(table['hosts'])} regions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
