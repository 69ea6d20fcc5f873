"""What the docs state outside runnable blocks: every targets file they show is valid, and the
ONNX output names serving.md gives are the ones a converted scikit-learn classifier has."""

from __future__ import annotations

import sys

import pytest
import yaml
from doc_blocks import blocks_of, pages

from cloudserve.config import validate_block
from cloudserve.registry import available

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_BLOCKS = [
    b
    for p in pages()
    for b in blocks_of(p)
    if b.lang in ("yaml", "toml") and "targets" in b.code and "provider" in b.code
]


@pytest.mark.parametrize("block", CONFIG_BLOCKS, ids=[b.where for b in CONFIG_BLOCKS])
def test_every_targets_file_in_the_docs_is_valid(block):
    data = tomllib.loads(block.code) if block.lang == "toml" else yaml.safe_load(block.code)
    assert isinstance(data.get("targets"), dict), block.where
    for name, settings in data["targets"].items():
        if settings.get("provider") not in available():
            continue  # a provider package not installed here: its own tests cover its page
        validate_block(name, settings)  # ConfigError names the field the example gets wrong


def test_onnx_output_names_in_serving_md(tmp_path):
    pytest.importorskip("skl2onnx")
    pytest.importorskip("onnxruntime")
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    from cloudserve.errors import InvalidRequest
    from cloudserve.packaging import write_manifest
    from cloudserve.serving import load_model

    text = " ".join((pages()[0].parent / "docs" / "serving.md").read_text().split())
    assert '{"output": "output_probability"}' in text and "`label` and `probabilities`" in text
    x = np.random.default_rng(0).normal(size=(50, 4))
    clf = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    expected = clf.predict_proba(x[:3])
    for options, output, unknown in (
        (None, "output_probability", "probabilities"),
        ({"zipmap": False}, "probabilities", "output_probability"),
    ):
        model_dir = tmp_path / output
        model_dir.mkdir()
        onx = to_onnx(clf, x[:1].astype(np.float32), options=options)
        (model_dir / "model.onnx").write_bytes(onx.SerializeToString())
        write_manifest(model_dir, framework="onnx")
        model = load_model(model_dir)
        proba = model.predict(x[:3].tolist(), {"output": output})
        rows = [[p[0], p[1]] if isinstance(p, dict) else p for p in proba]
        assert np.allclose(rows, expected, atol=1e-5), output
        with pytest.raises(InvalidRequest, match=output):
            model.predict(x[:1].tolist(), {"output": unknown})


def test_doc_links_stay_inside_the_site():
    """What `mkdocs build --strict` refuses: a relative link to a file outside docs/ or missing.

    (CI also runs the real build: `tox -e docs`.)"""
    import re

    root = pages()[0].parent / "docs"
    broken = []
    for page in sorted(root.rglob("*.md")):
        text = re.sub(r"`[^`\n]*`", "", page.read_text(encoding="utf-8"))  # code is not a link
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:|#", target):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.is_relative_to(root.resolve()) or not path.exists():
                broken.append(f"{page.relative_to(root)}: {target}")
    assert not broken, broken
