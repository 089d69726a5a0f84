"""The README's Python snippet, run on the tiny model: training a method on the caller's model leaves that
model answering as the base model (the zero-shot row scores the base model, not the LoRA)."""

import torch
from scripts.readme_quickstart import readme_python  # the script that times the same block
from tests.cli_helpers import TINY_TAGI

from hyperadapt import load_base_model, load_tasks
from hyperadapt.config import apply_overrides, from_dict
from hyperadapt.evaluation import EvalConfig, evaluate, write_results
from hyperadapt.methods.baselines import MultiTaskLoraConfig, train_multitask_lora, zero_shot
from hyperadapt.methods.tagi import TagiConfig, export_adapter, train_tagi

TAGI = [*TINY_TAGI, "train.steps=2", "train.batch_size=2", "train.max_length=64"]


def _logits(model, tok) -> torch.Tensor:
    batch = tok(["Repeat the input. a b"], return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def test_readme_snippet_keeps_the_callers_model(tiny_dir, jsonl_data, tmp_path):
    data = f"jsonl:{jsonl_data}"
    model, tok = load_base_model(str(tiny_dir))
    tasks = load_tasks(data, "test")
    before = _logits(model, tok)
    first = evaluate(zero_shot(model_and_tokenizer=(model, tok)), tasks, EvalConfig(limit=2, max_new_tokens=3))

    lora_cfg = from_dict(
        MultiTaskLoraConfig,
        apply_overrides(
            {}, [f"model={tiny_dir}", f"data={data}", "rank=2", "train.steps=3", "train.batch_size=2", "train.lr=5e-2"]
        ),
    )
    lora = train_multitask_lora(lora_cfg, tmp_path / "runs" / "mtl", model_and_tokenizer=(model, tok))
    write_results(evaluate(lora, tasks, EvalConfig(limit=2, max_new_tokens=3)), tmp_path / "results" / "mtl.json")
    assert torch.equal(_logits(model, tok), before), "training the LoRA changed the caller's model"
    with lora.conditioning([None]):
        assert not torch.allclose(_logits(model, tok), before), "the LoRA does not apply inside its conditioning"
    again = evaluate(zero_shot(model_and_tokenizer=(model, tok)), tasks, EvalConfig(limit=2, max_new_tokens=3))
    assert again["predictions"] == first["predictions"] and again["mean"] == first["mean"]

    tagi_cfg = from_dict(TagiConfig, apply_overrides({}, [f"model={tiny_dir}", f"data={data}", *TAGI]))
    tagi = train_tagi(tagi_cfg, tmp_path / "runs" / "tagi", model_and_tokenizer=(model, tok))
    evaluate(tagi, tasks, EvalConfig(limit=2, max_new_tokens=3))
    out = export_adapter(tagi, "Write the singular form of each noun.", tmp_path / "adapters" / "singular")
    assert (out / "adapter_config.json").exists()
    assert torch.equal(_logits(model, tok), before), "training TAGI changed the caller's model"
    # the LoRA still works after TAGI wrapped the same model
    with lora.conditioning([None]):
        assert not torch.allclose(_logits(model, tok), before)


def test_lora_after_tagi_on_the_same_model(tiny_dir, jsonl_data, tmp_path):
    """PEFT cannot wrap our wrappers: training the LoRA takes them off and puts them back, TAGI still works."""
    data = f"jsonl:{jsonl_data}"
    model, tok = load_base_model(str(tiny_dir))
    tasks = load_tasks(data, "test")
    before = _logits(model, tok)
    tagi = train_tagi(
        from_dict(TagiConfig, apply_overrides({}, [f"model={tiny_dir}", f"data={data}", *TAGI])),
        tmp_path / "tagi",
        model_and_tokenizer=(model, tok),
    )
    first = evaluate(tagi, tasks, EvalConfig(limit=1, max_new_tokens=2))
    lora_cfg = from_dict(
        MultiTaskLoraConfig,
        apply_overrides({}, [f"model={tiny_dir}", f"data={data}", "rank=2", "train.steps=1", "train.batch_size=2"]),
    )
    train_multitask_lora(lora_cfg, tmp_path / "mtl", model_and_tokenizer=(model, tok))
    assert torch.equal(_logits(model, tok), before)
    assert evaluate(tagi, tasks, EvalConfig(limit=1, max_new_tokens=2))["predictions"] == first["predictions"]


def test_readme_quickstart_runs_as_written(tiny_dir, tmp_path, monkeypatch):
    """The README's quickstart itself, on the tiny model: only the model name and the budgets are swapped."""
    code = readme_python()
    tagi_sizes = ", ".join(repr(o) for o in TAGI if "steps" not in o and "max_length" not in o)
    swaps = {
        'load_base_model("default")': f"load_base_model({str(tiny_dir)!r})",
        "with_steps(MultiTaskLoraConfig(), 30)": f"with_steps(MultiTaskLoraConfig(model={str(tiny_dir)!r}), 2)",
        "with_steps(TagiConfig(), 20)": f"with_overrides(with_steps(TagiConfig(model={str(tiny_dir)!r}), 2), "
        f"{tagi_sizes})",
        "limit=5": "limit=1",
    }
    for old, new in swaps.items():
        assert old in code, f"the README's quickstart changed: {old!r} is gone; update this test"
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)
    exec(compile("from hyperadapt import with_overrides\n" + code, "README.md", "exec"), {})
    assert (tmp_path / "adapters" / "singular" / "adapter_config.json").exists()
    assert (tmp_path / "runs" / "tagi" / "run.json").exists() and (tmp_path / "runs" / "mtl" / "run.json").exists()
