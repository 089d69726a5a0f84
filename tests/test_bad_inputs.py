"""Bad inputs, as a new user gives them: each ends in one clear line (CLI: ``error: ...``, exit code 2; API: an
exception naming the problem), never a traceback or a silently wrong result, and nothing is written where
it should not be. Names are never paths; what is printed is what was given."""

from __future__ import annotations

import json
import logging
import shutil
import sys

import pytest
import torch
from safetensors.torch import save_file
from tests.cli_helpers import eval_args, runner, train_args

from hyperadapt.cli import app
from hyperadapt.config import load_config
from hyperadapt.core import LoraConditioning, export_peft, inject, load_peft
from hyperadapt.data.loaders import load_cl_stream, load_sni, load_task_file
from hyperadapt.data.schema import TaskDataError
from hyperadapt.evaluation import EvalConfig
from hyperadapt.io import atomic_write_text, check_writable, child_path, safe_name
from hyperadapt.methods.baselines import MultiTaskLoraConfig
from hyperadapt.models import load_base_model
from hyperadapt.testing import tiny_model

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent / "methods"))
from test_switch_helpers import tiny_config  # noqa: E402

from hyperadapt.methods.continual import run_stream  # noqa: E402


def _files(root) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def bad(args: list[str], *words: str, env: dict | None = None):
    """Run the CLI; expect exit 2, exactly one ``error:`` line naming ``words``, and no traceback."""
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]
    return lines[0]


@pytest.fixture
def here(tmp_path, monkeypatch):
    """Work in an empty folder, so that anything written by mistake shows up."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("not a folder")
    return path


# ---------------------------------------------------------------------------------------------------------
# Names are not paths


NAMES = [
    "../../escaped_task",
    "/etc/passwd",
    "a/b",
    "a\\b",
    "..",
    ".hidden",
    "x" * 300,
    "名詞の複数形",
    "tab\tname",
    "C:\\evil",
    "nul\0byte",
]


@pytest.mark.parametrize("name", NAMES)
def test_safe_name_stays_in_its_folder(name, tmp_path):
    safe = safe_name(name)
    assert safe and len(safe) <= 64 and "/" not in safe and "\\" not in safe and not safe.startswith(".")
    assert child_path(tmp_path, name).parent == tmp_path


def test_safe_name_keeps_plain_names_and_separates_different_ones():
    assert safe_name("task001_plural-nouns.v2") == "task001_plural-nouns.v2"
    assert safe_name("a/b") != safe_name("a_b") and safe_name("a/b") != safe_name("a\\b")


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_names_are_refused(name):
    with pytest.raises(ValueError, match="task name is empty"):
        safe_name(name, "task name")


@pytest.fixture(scope="module")
def switch_run(tmp_path_factory, tiny_dir):
    """A finished two-task SwitchCIT run on the tiny model (copy it before changing it)."""
    run_dir = tmp_path_factory.mktemp("switch") / "run"
    run_stream(tiny_config(str(tiny_dir)), run_dir, "switchcit")
    return run_dir


@pytest.fixture
def run_copy(switch_run, tmp_path):
    target = tmp_path / "box" / "run"
    shutil.copytree(switch_run, target)
    return target


def _task_jsonl(path, name: str, n: int = 6):
    rows = [
        {
            "task": name,
            "instruction": "Repeat the input.",
            "input": f"w{i}",
            "output": f"w{i}",
            "split": "train" if i < n - 2 else "test",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_continual_add_never_writes_outside_the_run(run_copy, tmp_path, here):
    outside = _files(tmp_path) - {str(p.relative_to(tmp_path)) for p in run_copy.rglob("*")}
    names = ["../../escaped_task", "/tmp/abs_task", "名詞/複数", "y" * 200]
    for i, name in enumerate(names):
        data = _task_jsonl(tmp_path / f"t{i}.jsonl", name)
        result = runner.invoke(app, ["continual", "add", str(run_copy), "--task", f"jsonl:{data}"])
        assert result.exit_code == 0, result.output
        assert name in result.output  # printed as given
    now = _files(tmp_path) - {str(p.relative_to(tmp_path)) for p in run_copy.rglob("*")}
    assert now - outside == {f"t{i}.jsonl" for i in range(len(names))}
    assert not (tmp_path / "escaped_task").exists() and not __import__("pathlib").Path("/tmp/abs_task").exists()
    run = json.loads((run_copy / "run.json").read_text())
    assert run["added"] == names
    manifest = json.loads((run_copy / "adapters" / "manifest.json").read_text())
    assert [a["task"] for a in manifest["adapters"]][-len(names) :] == names
    gen = runner.invoke(app, ["generate", str(run_copy), "--input", "see [/x] here", "--max-new-tokens", "2"])
    assert gen.exit_code == 0, gen.output
    assert "see [/x] here" in gen.output and ("task: " in gen.output or "rejected" in gen.output)


def test_continual_add_lists_the_synthetic_tasks_for_an_unknown_name(run_copy):
    before = _files(run_copy)
    bad(["continual", "add", str(run_copy), "--task", "synthetic:plurall"], "'plurall'", "use one of", "plural")
    assert _files(run_copy) == before


def test_continual_add_refuses_an_empty_task_name(run_copy, tmp_path):
    before = _files(run_copy)
    bad(["continual", "add", str(run_copy), "--task", f"jsonl:{_task_jsonl(tmp_path / 't.jsonl', '')}"], "task")
    assert _files(run_copy) == before


def test_continual_export_writes_a_plain_peft_folder_of_a_stored_int8_adapter(switch_run, tiny_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    stored = next((switch_run / "adapters").glob("001-*"))
    assert (stored / "adapter_model.int8.safetensors").exists()  # the default storage
    out = tmp_path / "peft" / "add"
    result = runner.invoke(
        app, ["continual", "export", str(switch_run), "--task", "add", "--out", str(out), "--dtype", "float32"]
    )
    assert result.exit_code == 0, result.output
    model, tok = tiny_model("llama")
    inject(model)
    batch = tok(["add 2 and 3", "x"], return_tensors="pt", padding=True)
    from hyperadapt.core import conditioned

    with torch.no_grad(), conditioned(model, lora=load_peft(stored)):
        ours = model(**batch).logits
    base = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    with torch.no_grad():
        theirs = PeftModel.from_pretrained(base, out).eval()(**batch).logits
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    bad(["continual", "export", str(switch_run), "--task", "add", "--out", str(out)], "exists")
    bad(["continual", "export", str(switch_run), "--task", "ad[d]", "--out", str(tmp_path / "x")], "'ad[d]'", "'add'")
    bad(
        ["continual", "export", str(switch_run), "--task", "add", "--out", str(tmp_path / "y"), "--dtype", "int8"],
        "--dtype",
    )
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    bounds = tmp_path / "bound"  # the multi-task bound keeps one adapter for all tasks: exported by its own name
    run_stream(tiny_config(str(tiny_dir)), bounds, "multitask")
    bad(["continual", "export", str(bounds), "--task", "add", "--out", str(tmp_path / "z")], "'add'", "'all-tasks'")
    result = runner.invoke(
        app, ["continual", "export", str(bounds), "--task", "all-tasks", "--out", str(tmp_path / "z")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "z" / "adapter_model.safetensors").exists()


def test_split_file_names_are_not_paths(tmp_path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "test_tasks.txt").write_text("../../secret\n")
    with pytest.raises(ValueError, match="not a plain name"):
        load_sni(tmp_path, "test")


def test_stream_order_names_are_not_paths(tmp_path):
    (tmp_path / "orders.json").write_text(json.dumps({"order1": ["../outside"]}))
    with pytest.raises(ValueError, match="not a plain name"):
        load_cl_stream(tmp_path, 1)


# ---------------------------------------------------------------------------------------------------------
# One clear line instead of a traceback


def test_yaml_config_with_a_tab(here):
    (here / "cfg.yaml").write_text("train:\n\tsteps: 3\n")
    bad(["train", "multitask-lora", "--config", "cfg.yaml", "--out", "run"], "cfg.yaml", "line 2", "tab")
    assert _files(here) == {"cfg.yaml"}


def test_yaml_config_that_is_not_a_mapping(here):
    (here / "cfg.yaml").write_text("- 1\n- 2\n")
    bad(["train", "multitask-lora", "--config", "cfg.yaml", "--out", "run"], "mapping")


@pytest.mark.parametrize("text", ["- a\n", "hello\n"])
@pytest.mark.parametrize("command", [["train", "tagi"], ["continual"]])
def test_yaml_config_that_is_not_a_mapping_with_overrides(here, text, command):
    (here / "cfg.yaml").write_text(text)
    key = "n_tasks=2" if command == ["continual"] else "rank=4"
    bad([*command, "--config", "cfg.yaml", "--set", key, "--out", "run"], "cfg.yaml", "mapping")
    assert _files(here) == {"cfg.yaml"}


def test_bare_overrides_of_continual_say_how_overrides_are_written(here):
    bad(["continual", "train.steps=2", "n_tasks=3"], "--set KEY=VALUE (--set train.steps=2 --set n_tasks=3)")
    assert _files(here) == set()


def test_missing_config_file(here):
    bad(["continual", "--config", "nope.yaml", "--out", "run"], "nope.yaml")
    assert _files(here) == set()


def test_model_folder_that_does_not_exist(here, jsonl_data):
    line = bad(eval_args(jsonl_data, "--model", "./no/such/model", out="res.json"), "./no/such/model", "not found")
    assert "repo id" not in line.lower()


def test_model_folder_without_config(here, jsonl_data):
    (here / "empty").mkdir()
    bad(eval_args(jsonl_data, "--model", "empty", out="r.json"), "config.json")


def test_model_that_is_a_file(here, jsonl_data, a_file):
    bad(eval_args(jsonl_data, "--model", str(a_file), out="r.json"), "is a file")


def test_hub_id_while_offline(here, jsonl_data, monkeypatch):
    import hyperadapt.models as models

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nCheck your connection.")

    monkeypatch.setattr(models.AutoConfig, "from_pretrained", offline)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bad(eval_args(jsonl_data, "--model", "someorg/some-model", out="r.json"), "someorg/some-model", "offline")
    assert not (here / "r.json").exists()


@pytest.mark.parametrize(
    "option,value",
    [
        ("--limit", "0"),
        ("--limit", "-1"),
        ("--batch-size", "0"),
        ("--max-new-tokens", "0"),
        ("--max-prompt-tokens", "0"),
    ],
)
def test_eval_numbers_out_of_range(here, jsonl_data, option, value):
    bad(eval_args(jsonl_data, option, value), option, "greater than")
    assert _files(here) == {"tasks.jsonl"}


def test_eval_out_that_cannot_be_written_is_refused_before_the_work(here, jsonl_data, a_file):
    # the data spec is bad too: the output is checked first, before any data or model is read
    bad(["eval", "--data", "jsonl:missing.jsonl", "--out", str(a_file / "res.json")], "--out", "a_file")


def test_eval_results_survive_an_output_error(here, tiny_dir, jsonl_data, monkeypatch):
    import hyperadapt.evaluation.harness as harness

    real = harness.write_results

    def flaky(result, out):
        if "hyperadapt-" not in str(out):
            raise OSError(28, "No space left on device", str(out))
        return real(result, out)

    monkeypatch.setattr(harness, "write_results", flaky)
    args = eval_args(jsonl_data, "--model", str(tiny_dir), limit=1, max_new_tokens=2, out="res.json")
    line = bad(args, "no space left", "saved to")
    rescued = __import__("pathlib").Path(line.rsplit("saved to ", 1)[1].strip())
    assert json.loads(rescued.read_text())["method"] == "zero-shot"


def test_train_out_that_cannot_be_written(here, a_file):
    bad(["train", "multitask-lora", "--set", "train.steps=2", "--out", str(a_file / "run")], "a_file")


def test_adapter_out_that_cannot_be_written(here, a_file):
    bad(["adapter", "runs/none", "--instruction", "Do it.", "--out", str(a_file / "x")], "a_file")


def test_continual_out_that_cannot_be_written(here, a_file):
    bad(["continual", "--out", str(a_file / "run")], "a_file")


def test_unknown_train_method(here):
    bad(["train", "magic"], "magic")
    assert _files(here) == set()


def test_override_without_equals(here):
    bad(["train", "multitask-lora", "--set", "train.steps", "--out", "run"], "key=value")
    assert _files(here) == set()


def test_adapter_from_a_missing_run(here):
    bad(["adapter", "runs/none", "--instruction", "Do it.", "--out", "adapters/x"], "runs/none")
    assert _files(here) == set()


def test_continual_add_to_a_folder_that_is_no_run(here):
    (here / "plain").mkdir()
    bad(["continual", "add", "plain", "--task", "synthetic:plural"], "plain", "run.json")


def test_continual_add_unreadable_task(here, run_copy):
    bad(["continual", "add", str(run_copy), "--task", "nonsense.txt"], "nonsense.txt")


def test_generate_from_a_missing_run(here):
    bad(["generate", "nowhere", "--input", "x"], "nowhere")


def test_bench_unknown(here):
    bad(["bench", "nope"], "nope")


def test_missing_required_option_is_one_line(here):
    bad(["generate", "nowhere"], "--input")


@pytest.mark.parametrize("error", [KeyError("a bug"), ValueError("a library bug's ValueError")])
def test_real_bugs_say_so_in_one_line_and_show_their_traceback_with_the_debug_switch(here, monkeypatch, error):
    import hyperadapt.registry

    def broken(name):
        raise error

    monkeypatch.setattr(hyperadapt.registry, "method_entry", broken)
    result = runner.invoke(app, ["eval"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert type(error).__name__ in lines[0] and "bug in hyperadapt" in lines[0] and "HYPERADAPT_DEBUG=1" in lines[0]
    shown = runner.invoke(app, ["eval"], env={"HYPERADAPT_DEBUG": "1"})
    assert shown.exit_code == 1 and shown.exception is error  # the traceback is the bug's own


def test_a_users_mistake_is_one_line_even_when_the_library_raises_it_deep_down(here, monkeypatch):
    from hyperadapt.errors import UserError

    def refuse(*args, **kwargs):
        raise UserError("--limit must be at least 1, got 0")

    monkeypatch.setattr("hyperadapt.data.load_tasks", refuse)
    bad(["eval", "--out", "r.json"], "--limit must be at least 1")


# ---------------------------------------------------------------------------------------------------------
# Numbers: validated with the key named; 5e-4 is a number


@pytest.mark.parametrize(
    "override,words",
    [
        ("train.steps=1.5", ("train.steps", "integer", "1.5")),
        ("train.steps=-3", ("train.steps", "at least 1")),
        ("train.lr=abc", ("train.lr", "number", "abc")),
        ("train.lr=-5e-4", ("train.lr", "positive")),
        ("rank=true", ("rank", "integer")),
        ("train=5", ("train", "mapping")),
        ("target_modules=q_proj", ("target_modules", "list")),
    ],
)
def test_train_override_values(here, override, words):
    bad(["train", "multitask-lora", "--set", override, "--out", "run"], *words)
    assert _files(here) == set()


@pytest.mark.parametrize("override", ["fusion=true", "pretrain.enabled=true", "losses.kl_weight=5"])
def test_hypter_refuses_what_would_make_it_tagi(here, override):
    bad(["train", "hypter", "--set", override, "--out", "run"], override.split("=")[0], "Hypter-style")
    assert _files(here) == set()


def test_continual_set_value(here):
    bad(["continual", "--set", "n_tasks=two", "--out", "run"], "n_tasks", "integer")


@pytest.mark.parametrize(
    "override,words",
    [("train_steps=1.5", ("train_steps", "integer")), ("limit=0", ("limit",)), ("megan_steps=0", ("megan_steps",))],
)
def test_demo_values(here, override, words):
    bad(["demo", "--set", override], *words)
    assert _files(here) == set()


def test_numbers_written_as_people_write_them(tmp_path):
    cfg = load_config(MultiTaskLoraConfig, None, ["train.lr=5e-4", "alpha=1e1"])
    assert cfg.train.lr == 5e-4 and cfg.alpha == 10.0
    path = tmp_path / "cfg.yaml"
    path.write_text("train:\n  lr: 1e-3\n  steps: 20\n")
    assert load_config(MultiTaskLoraConfig, path).train.lr == 1e-3


@pytest.mark.parametrize("limit", [0, -1, 1.5, True])
def test_eval_config_limit(limit):
    with pytest.raises(ValueError, match="limit"):
        EvalConfig(limit=limit)


# ---------------------------------------------------------------------------------------------------------
# eval --run --model: the run's own model, recorded truthfully


def _fake_run(path, model: str):
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"method": "multitask-lora", "config": {"model": model}}))
    return path


def test_eval_run_with_another_model_is_refused(here, tiny_dir, jsonl_data):
    run = _fake_run(here / "run", str(tiny_dir))
    args = eval_args(jsonl_data, "--method", "multitask-lora", "--run", str(run), "--model", "default", out="r.json")
    bad(args, "--model", "does not match")
    assert not (here / "r.json").exists()


def test_zero_shot_takes_no_run(here, tiny_dir):
    run = _fake_run(here / "run", str(tiny_dir))
    bad(["eval", "--method", "zero-shot", "--run", str(run)], "--run")


def test_eval_run_records_the_runs_model(here, tiny_dir, jsonl_data):
    run = here / "mtl"
    overrides = ("rank=2", "train.steps=2", "train.batch_size=2")
    train = runner.invoke(app, train_args("multitask-lora", tiny_dir, jsonl_data, run, *overrides))
    assert train.exit_code == 0, train.output
    for extra in ([], ["--model", str(tiny_dir)]):
        options = ("--method", "multitask-lora", "--run", str(run), *extra)
        result = runner.invoke(app, eval_args(jsonl_data, *options, limit=1, max_new_tokens=2, out="r.json"))
        assert result.exit_code == 0, result.output
        assert json.loads((here / "r.json").read_text())["model"] == str(tiny_dir)


# ---------------------------------------------------------------------------------------------------------
# SNI data


def _sni(path, outputs: list[list[str]]):
    record = {
        "Definition": ["Say it."],
        "Instances": [{"id": f"i{k}", "input": "x", "output": o} for k, o in enumerate(outputs)],
    }
    path.write_text(json.dumps(record))
    return path


def test_sni_instance_with_only_an_empty_reference_is_skipped(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        task = load_task_file(_sni(tmp_path / "t.json", [["a"], [""], ["b", "c"]]))
    assert [i.id for i in task.instances] == ["i0", "i2"]
    assert "t.json" in caplog.text and "'i1'" in caplog.text and "empty" in caplog.text


def test_sni_task_whose_references_are_all_empty_is_refused(tmp_path):
    with pytest.raises(TaskDataError, match="t.json.*non-empty reference"):
        load_task_file(_sni(tmp_path / "t.json", [[""], ["  "]]))


# ---------------------------------------------------------------------------------------------------------
# What is printed is what was given


def test_generate_prints_markup_literally(here, monkeypatch):
    import hyperadapt.methods.inputs as generate_cli

    monkeypatch.setattr(
        generate_cli,
        "answer_inputs",
        lambda run, inputs, conds, n, budget=None, model_and_tokenizer=None: [
            (inputs[0], "[bold]answer[/] [/x]", f"condition: {conds[0]}")
        ],
    )
    (here / "run").mkdir()
    (here / "run" / "run.json").write_text('{"method": "tagi", "config": {}}')
    result = runner.invoke(app, ["generate", "run", "--condition", "Use [red]red[/red].", "--input", "see [/x] here"])
    assert result.exit_code == 0, result.output
    assert "see [/x] here  [condition: Use [red]red[/red].] -> [bold]answer[/] [/x]" in result.output


# ---------------------------------------------------------------------------------------------------------
# Adapters other tools can load


def _peft_folder(tmp_path, model, **config_changes):
    inject(model, gating=False)
    torch.manual_seed(0)
    factors = {"model.layers.0.self_attn.q_proj": (torch.randn(1, 2, 32), torch.randn(1, 32, 2))}
    path = export_peft(model, LoraConditioning(factors, 2.0), tmp_path / "ad")
    config = json.loads((path / "adapter_config.json").read_text())
    for key, value in config_changes.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    (path / "adapter_config.json").write_text(json.dumps(config))
    return path


def test_missing_lora_alpha_takes_peft_default(tmp_path):
    path = _peft_folder(tmp_path, tiny_model("llama")[0], lora_alpha=None)
    assert load_peft(path).scale == pytest.approx(8 / 2)


@pytest.mark.parametrize(
    "changes,match", [({"lora_alpha": "16"}, "lora_alpha"), ({"r": 4}, "rank 2"), ({"r": None}, "rank 2")]
)
def test_bad_adapter_config_is_refused(tmp_path, changes, match):
    with pytest.raises(ValueError, match=match):
        load_peft(_peft_folder(tmp_path, tiny_model("llama")[0], **changes))


def test_misshaped_lora_pair_is_refused(tmp_path):
    path = _peft_folder(tmp_path, tiny_model("llama")[0])
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_"
    save_file(
        {f"{key}A.weight": torch.zeros(2, 32), f"{key}B.weight": torch.zeros(32, 3)}, path / "adapter_model.safetensors"
    )
    with pytest.raises(ValueError, match="LoRA pair"):
        load_peft(path)


def test_export_is_byte_identical_with_sorted_targets(tmp_path):
    model = inject(tiny_model("llama")[0], gating=False)
    torch.manual_seed(0)
    factors = {
        f"model.layers.{i}.{m}": (torch.randn(1, 2, 32), torch.randn(1, 32 if "q" in m else 8, 2))
        for i in range(2)
        for m in ("self_attn.v_proj", "self_attn.q_proj")
    }
    lora = LoraConditioning(factors, 2.0)
    a = export_peft(model, lora, tmp_path / "a") / "adapter_config.json"
    b = export_peft(model, lora, tmp_path / "b") / "adapter_config.json"
    assert a.read_bytes() == b.read_bytes()
    assert json.loads(a.read_text())["target_modules"] == ["q_proj", "v_proj"]


def test_gguf_source_id_is_read_from_metadata(tmp_path):
    gguf = pytest.importorskip("gguf")
    from hyperadapt.models import gguf_repo_id

    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_string("general.source.url", "https://huggingface.co/SomeOrg/Some-Model-1B")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert gguf_repo_id(path) == "SomeOrg/Some-Model-1B"


# ---------------------------------------------------------------------------------------------------------
# API


def test_api_missing_model_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        load_base_model(str(tmp_path / "nope"))


@pytest.mark.parametrize(
    "value, words",
    [
        (float("nan"), ["net.safetensors", "weight", "1 NaN or infinite"]),
        (float("inf"), ["net.safetensors", "weight", "1 NaN or infinite"]),
        (None, ["net.safetensors", "weight", "torch.int32"]),
    ],
)
def test_weights_with_nan_inf_or_integers_are_refused_not_served(tmp_path, value, words):
    from hyperadapt.io import load_state_strict, load_tensors

    module = torch.nn.Linear(2, 2)
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    if value is None:
        state["weight"] = state["weight"].to(torch.int32)
    else:
        state["weight"].view(-1)[0] = value
    save_file(state, tmp_path / "net.safetensors")
    with pytest.raises(ValueError) as err:
        load_state_strict(module, load_tensors(tmp_path / "net.safetensors"), tmp_path / "net.safetensors")
    assert all(word in str(err.value) for word in words), str(err.value)


def test_check_writable_under_a_file(a_file):
    with pytest.raises(ValueError, match="is a file"):
        check_writable(a_file / "out" / "r.json")


def test_unknown_metric_language_is_one_line(here):
    bad(["eval", "--data", "synthetic", "--split", "unseen", "--metric-lang", "fr"], "metric language", "fr")
    assert _files(here) == set()


def test_release_refuses_a_folder_that_is_not_a_run_and_a_bad_dtype(here):
    bad(["release", str(here / "nothing"), "--out", str(here / "ckpt")], "does not exist")
    (here / "nothing").mkdir()
    bad(["release", str(here / "nothing"), "--out", str(here / "ckpt")], "run.json")
    (here / "run").mkdir()
    (here / "run" / "run.json").write_text('{"method": "tagi", "config": {}}')
    bad(["release", str(here / "run"), "--out", str(here / "ckpt"), "--dtype", "int8"], "dtype", "int8")
    assert not (here / "ckpt").exists()


def test_release_with_a_card_that_is_not_text_is_one_line(here):
    (here / "run").mkdir()
    (here / "run" / "run.json").write_text('{"method": "tagi", "config": {}}')
    (here / "card.md").write_bytes(b"\xff\xfe# card")
    bad(["release", str(here / "run"), "--out", str(here / "ckpt"), "--card", str(here / "card.md")], "--card", "UTF-8")
    assert not (here / "ckpt").exists()


def test_eval_of_a_folder_that_is_not_a_run_is_one_line(here):
    (here / "empty").mkdir()
    bad(["eval", "--run", str(here / "empty"), "--data", "synthetic"], "not a run directory")


def test_eval_of_a_run_path_that_is_missing_a_file_or_a_run_json_folder_names_it(here):
    bad(["eval", "--run", str(here / "nowhere"), "--data", "synthetic"], "does not exist")
    (here / "file").write_text("x")
    bad(["eval", "--run", str(here / "file"), "--data", "synthetic"], "is a file, not a run directory")
    (here / "odd" / "run.json").mkdir(parents=True)
    bad(["eval", "--run", str(here / "odd"), "--data", "synthetic"], "run.json", "is a folder, not a file")


def test_eval_of_a_continual_run_that_cannot_be_loaded_says_why(here):
    (here / "oracle").mkdir()
    (here / "oracle" / "run.json").write_text('{"kind": "continual", "method": "oracle", "config": {}}')
    line = bad(
        ["eval", "--run", str(here / "oracle"), "--data", "synthetic"],
        "a 'oracle' run",
        "cannot be loaded for evaluation",
    )
    assert "unknown method" not in line


def test_continual_messages_name_commands_not_functions(here, tiny_dir):
    from hyperadapt.methods.continual.runner import check_run_dir

    with pytest.raises(FileNotFoundError) as err:
        check_run_dir(here / "nothing")
    assert "run_stream" not in str(err.value) and "`hyperadapt continual --config" in str(err.value)


# ---------------------------------------------------------------------------------------------------------
# Outputs never replace or mix into what is not theirs, and are checked before the work


def _snapshot(root) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}


def test_release_never_replaces_the_run_or_a_users_files(here):
    run = here / "par" / "run"
    (run / "hypernet").mkdir(parents=True)
    (run / "run.json").write_text('{"method": "tagi", "config": {}}')
    (run / "hypernet" / "hypernet.safetensors").write_text("weights")
    (here / "mine").mkdir()
    (here / "mine" / "notes.txt").write_text("my notes")
    (here / "file.txt").write_text("a file")
    before = _snapshot(here)
    for out, words in [
        (run, ["would overwrite"]),
        (here / "par", ["would overwrite"]),
        (run / "ckpt", ["would overwrite"]),
        (here / "mine", ["other files", "checkpoint"]),
        (here / "file.txt", ["is a file"]),
    ]:
        bad(["release", str(run), "--out", str(out)], "--out", *words)
        assert _snapshot(here) == before, out
    assert not (run / "ckpt").exists()


def test_folder_outputs_refuse_an_existing_file(here, a_file):
    for args in (
        ["demo", "--quick"],
        ["train", "multitask-lora"],
        ["continual"],
        ["adapter", "runs/none", "--instruction", "Do it."],
    ):
        bad([*args, "--out", str(a_file)], "--out", "is a file")
        assert a_file.read_text() == "not a folder"
    assert _files(here) == {"a_file"}


def test_adapter_refuses_a_folder_that_is_not_an_adapter(here):
    (here / "run").mkdir()
    (here / "run" / "run.json").write_text('{"method": "tagi"}')
    bad(["adapter", "run", "--instruction", "Do it.", "--out", "run"], "--out", "adapter_config.json")
    assert _files(here) == {"run", "run/run.json"}
    (here / "old").mkdir()  # a previous adapter may be written anew: the check passes, the missing run is next
    (here / "old" / "adapter_config.json").write_text("{}")
    bad(["adapter", "runs/none", "--instruction", "Do it.", "--out", "old"], "runs/none")


@pytest.mark.parametrize("bench", ["core", "tagi", "megan", "serve", "truncation", "spread"])
def test_benchmarks_check_their_out_before_the_work(here, a_file, bench):
    extra = (
        ["--model", "tiny", "--quick"]
        if bench == "serve"
        else ["--data", "synthetic", "--limit", "1"]
        if bench == "truncation"
        else ["--quick"]
        if bench in ("tagi", "megan")
        else ["runs/none"]
        if bench == "spread"
        else []
    )
    bad(["bench", bench, *extra, "--out", str(a_file / "r.json")], "--out", "a_file", "is a file")
    (here / "folder").mkdir()
    bad(["bench", bench, *extra, "--out", "folder"], "--out", "is a folder")
    assert _files(here) == {"a_file", "folder"}


def test_bench_continual_checks_its_out_before_the_work(here, a_file):
    config = __import__("pathlib").Path(__file__).parents[1] / "configs" / "switch_synthetic.yaml"
    bad(["bench", "continual", "--config", str(config), "--out", str(a_file)], "--out", "is a file")
    assert _files(here) == {"a_file"}


@pytest.mark.parametrize("override, words", [("nosuch=1", ["nosuch"]), ("train.lr=abc", ["train.lr", "abc"])])
def test_bench_megan_checks_its_overrides_before_the_work(here, monkeypatch, override, words):
    import hyperadapt.benchmarks.megan as megan

    (here / "configs").symlink_to(__import__("pathlib").Path(__file__).parents[1] / "configs")
    monkeypatch.setattr(megan, "load_tasks", lambda *a: pytest.fail("work started before the overrides were checked"))
    bad(["bench", "megan", "--quick", "--set", override], *words)
    bad(["bench", "megan", "--methods", "zero-shot", "--set", override], "--set", "megan")
    assert _files(here) == {"configs"}


def test_a_json_file_that_holds_no_object_is_named(tmp_path):
    from hyperadapt.io import load_json

    (tmp_path / "state.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"stream state .*state\.json must hold a JSON object, got list"):
        load_json(tmp_path / "state.json", "stream state")


def test_serve_on_a_taken_port_fails_before_any_model_loads(monkeypatch):
    import socket

    import hyperadapt.serve as serve

    monkeypatch.setattr(serve, "build_server", lambda *a, **k: pytest.fail("the model loaded before the port check"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        bad(["serve", "--port", str(port)], f"127.0.0.1:{port}", "--port")
    bad(["serve", "--host", "no-such-host.invalid"], "--host", "no-such-host.invalid")


def test_a_reader_that_stops_reading_is_not_an_error(monkeypatch):
    """`hyperadapt config tagi | head -3`: the pipe closes under the command; no `error:` line, exit 141."""
    import hyperadapt.config

    def closed(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(hyperadapt.config, "settings_help", closed)
    result = runner.invoke(app, ["config", "tagi"])
    assert result.exit_code == 141 and "error" not in result.output, result.output


def test_a_folder_that_cannot_be_made_is_named_as_given(tmp_path, monkeypatch):
    """A read-only mount (or /proc, even as root) fails naming the user's folder, not the temporary one."""
    import errno
    import tempfile

    from hyperadapt.io import write_dir_atomic

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / ".out.tmp-abc"))

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(OSError, match="Read-only") as caught:
        write_dir_atomic(tmp_path / "out", lambda tmp: None)
    assert caught.value.filename == str(tmp_path / "out")


def test_a_folder_written_through_a_link_keeps_the_link_and_leaves_nothing_beside_it(tmp_path):
    """--out naming a link (to a previous adapter, or to a folder not made yet) writes the folder it names."""
    from hyperadapt.io import write_dir_atomic

    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "old.txt").write_text("previous")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "dangling").symlink_to(tmp_path / "later")
    for name in ("link", "dangling"):
        write_dir_atomic(tmp_path / name, lambda tmp: (tmp / "new.txt").write_text("new"))
        assert (tmp_path / name).is_symlink() and [p.name for p in (tmp_path / name).iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "later", "link", "real"]


def test_an_output_folder_that_is_a_link_loop_is_one_line(here):
    (here / "loop").symlink_to(here / "loop")
    bad(["adapter", str(here / "run"), "--instruction", "x", "--out", str(here / "loop")], "--out", "loop")
    assert (here / "loop").is_symlink() and _files(here) == {"loop"}


def test_an_atomic_write_that_fails_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "out.json"
    target.mkdir()  # a folder where the file goes: os.replace fails after the temporary file is written
    with pytest.raises(OSError):
        atomic_write_text(target, "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    assert target.is_dir() and not any(target.iterdir())
