"""``hyperadapt bench scale``: a smoke run at a tiny batch, the per-layer solve, and the 8B/70B plan's counts."""

import json

import pytest

from hyperadapt.benchmarks import scale
from hyperadapt.errors import UserError


def test_a_tiny_scale_run_solves_fixed_plus_per_layer_and_plans(tmp_path):
    out = tmp_path / "scale.json"
    argv = [
        "--sizes",
        "135m",
        "--depths",
        "1",
        "2",
        "--batch",
        "2",
        "--seq",
        "12",
        "--answer-tokens",
        "4",
        "--gen-prompt",
        "4",
        "--gen-tokens",
        "1",
        "--out",
        str(out),
    ]
    assert scale.main(argv) == 0
    result = json.loads(out.read_text())
    entry = result["sizes"]["135m"]
    for case in scale.CASES:  # the solved line goes through both measured depths
        row = entry["extrapolated"][case]["seconds"]
        for depth in (1, 2):
            measured = entry["depths"][str(depth)][case]["seconds"]
            assert row["fixed"] + depth * row["per_layer"] == pytest.approx(measured)
    assert entry["summary"]["base_parameters"] == 134_515_008  # SmolLM2-135M's parameter count
    assert entry["summary"]["step_vs_lora"]["lora"] == 1.0
    trainable = entry["summary"]["trainable"]
    assert trainable == {k: scale.trainable_counts("135m")[k] for k in ("lora", "tagi", "megan")}
    assert scale.main(["--plan", str(out)]) == 0
    plan = json.loads(out.read_text())["plan"]["models"]
    assert plan["8b"]["parameters"]["base"] == 8_030_261_248 and plan["70b"]["parameters"]["base"] == 70_553_706_496
    assert plan["8b"]["methods"]["tagi"]["weights_gb"] == pytest.approx(16.06, abs=0.01)


def test_bad_options_are_one_clear_error():
    with pytest.raises(ValueError, match="unknown sizes"):
        scale.ScaleConfig(sizes=["3b"])
    with pytest.raises(ValueError, match="two different layer counts"):
        scale.ScaleConfig(depths=[2, 2])


def test_plan_refuses_what_is_not_a_scale_result_in_one_line(tmp_path, capsys):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"results": {}}))
    with pytest.raises(UserError, match=r"other.json: not a result of hyperadapt bench scale \(no 'sizes'\)"):
        scale.main(["--plan", str(other)])
    with pytest.raises(FileNotFoundError, match="bench scale result not found"):
        scale.main(["--plan", str(tmp_path / "missing.json")])
    assert json.loads(other.read_text()) == {"results": {}}  # nothing written
