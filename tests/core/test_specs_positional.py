"""The search-space classes and Objective take the positional forms DESIGN.md and the docs use."""

from __future__ import annotations

import pytest

import cloudserve as cs


def test_positional_forms_equal_keyword_forms():
    assert cs.LogUniform(1e-4, 1e-1) == cs.LogUniform(low=1e-4, high=1e-1)
    assert cs.Uniform(0, 1) == cs.Uniform(low=0, high=1)
    assert cs.IntRange(2, 10) == cs.IntRange(low=2, high=10)
    assert cs.IntRange(2, 10, 2).step == 2
    assert cs.Choice(["a", "b"]) == cs.Choice(values=["a", "b"])
    objective = cs.Objective("val_auc", goal="maximize")
    assert objective == cs.Objective(metric="val_auc", goal="maximize")
    assert cs.Objective("loss", "minimize").goal == "minimize"


def test_design_md_tuning_spec_builds():
    spec = cs.TuningSpec(
        train=cs.TrainSpec(entrypoint="train.py", inputs={"train": "data/train.csv"}),
        search_space={"lr": cs.LogUniform(1e-4, 1e-1), "depth": cs.IntRange(2, 10)},
        objective=cs.Objective("val_auc", goal="maximize"),
        max_trials=20,
        parallel_trials=4,
    )
    assert spec.search_space["depth"].high == 10
    # still plain data: round-trips through JSON (the CLI's tune spec files)
    assert cs.TuningSpec.model_validate_json(spec.model_dump_json()) == spec


def test_positional_mistakes_are_clear():
    with pytest.raises(TypeError, match="at most 2 positional"):
        cs.LogUniform(1e-4, 1e-1, 3)
    with pytest.raises(TypeError, match="two values for 'low'"):
        cs.Uniform(0, 1, low=0)
    with pytest.raises(cs.InvalidRequest, match="must be below high"):
        cs.LogUniform(1e-1, 1e-4)
