"""Diff cloudserve's SageMaker image table against the SageMaker Python SDK's ``image_uris``.

Run with a python that has the SDK (``sagemaker`` 2.x or ``sagemaker-core``)::

    python sdk_image_diff.py path/to/_image_uris.json

Prints a JSON object: ``checked`` (URIs compared), ``differences`` (what differs: a URI, a
version or a region one side lacks). Imports nothing from cloudserve.

Versions and regions are compared as sets everywhere. URIs are compared for every version, alias
and processor in one region each, taken in turn from regions with unusual hosts and accounts
(``SAMPLE_REGIONS``), and for every region of the newest sklearn and xgboost serving images
(``retrieve`` is slow, about 0.2 s a call, so not all ~10,000 combinations are built).
"""

import json
import os
import sys


def sdk():
    try:
        from sagemaker.core import image_uris
    except ImportError:
        from sagemaker import image_uris
    import os

    folder = os.path.join(os.path.dirname(image_uris.__file__), "image_uri_config")
    return image_uris, folder


SAMPLE_REGIONS = ("us-east-1", "eu-west-3", "us-gov-west-1", "cn-north-1", "il-central-1")


def diff(table):
    image_uris, folder = sdk()
    checked, differences = 0, []
    for framework, scopes in table["frameworks"].items():
        with open(os.path.join(folder, framework + ".json")) as fh:
            config = json.load(fh)
        for scope, ours in scopes.items():
            theirs = {v for v, row in config[scope]["versions"].items() if "registries" in row}
            if theirs != set(ours["versions"]):
                differences.append(
                    {
                        "framework": framework,
                        "scope": scope,
                        "versions": sorted(theirs ^ set(ours["versions"])),
                    }
                )
            asked = [(v, v) for v in ours["versions"]] + list(ours["aliases"].items())
            for turn, (version, resolved) in enumerate(asked):
                row = ours["versions"].get(resolved)
                if row is None:
                    continue
                sdk_row = config[scope]["versions"][resolved]
                if set(sdk_row["registries"]) != set(table["registries"][row["registries"]]):
                    differences.append(
                        {"framework": framework, "version": resolved, "regions": "differ"}
                    )
                py = (row["py_versions"] or [None])[-1]
                accounts = table["registries"][row["registries"]]
                newest = resolved == list(ours["versions"])[-1] and version == resolved
                if newest and scope == "inference" and framework != "pytorch":
                    regions = list(accounts)
                else:
                    sample = [r for r in SAMPLE_REGIONS if r in accounts]
                    regions = [sample[turn % len(sample)]] if sample else []
                for processor, suffix in row["tag_suffixes"].items():
                    instance = "ml.g5.xlarge" if processor == "gpu" else "ml.m5.large"
                    for region in regions:
                        account = accounts[region]
                        tag = (row["tag_prefix"] or version) + suffix
                        host = table["hosts"][region]
                        mine = "{}.dkr.{}/{}:{}".format(account, host, row["repository"], tag)
                        try:
                            expected = image_uris.retrieve(
                                framework,
                                region,
                                version=version,
                                image_scope=scope,
                                instance_type=instance,
                                py_version=py,
                            )
                        except Exception as exc:
                            expected = f"error: {exc}"
                        checked += 1
                        if expected != mine:
                            differences.append({"ours": mine, "sdk": expected})
    return {"checked": checked, "differences": differences}


if __name__ == "__main__":
    import logging
    import os

    logging.disable(logging.CRITICAL)
    with open(sys.argv[1]) as fh:
        result = diff(json.load(fh))
    print(json.dumps(result))
