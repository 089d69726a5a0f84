"""The meta-learning baselines of the MeGan issue (MetaICL, Reptile, FOMAML on a LoRA), on a tiny model."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from hyperadapt.data import Example, load_tasks
from hyperadapt.evaluation.harness import EvalConfig, evaluate, make_queries
from hyperadapt.methods.baselines.meta import (
    MetaICLConfig,
    ReptileConfig,
    load_meta,
    metaicl_examples,
    reptile_loss,
    train_metaicl,
    train_reptile,
)
from hyperadapt.testing import tiny_model
from hyperadapt.training import TrainConfig


def train_cfg(steps: int = 3) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=2, lr=1e-2, max_length=64, save_every=0, log_every=1)


def logits(method, queries):
    batch = method.tokenizer([q.prompt for q in queries], return_tensors="pt", padding=True)
    with torch.no_grad(), method.conditioning(queries):
        return method.model(**batch).logits, batch["attention_mask"]


def test_metaicl_trains_on_fresh_demonstrations_and_round_trips(tmp_path, jsonl_data):
    cfg = MetaICLConfig(data=f"jsonl:{jsonl_data}", rank=2, train=train_cfg())
    model, tok = tiny_model("llama")
    tasks = load_tasks(cfg.data, "train")
    examples = metaicl_examples(tok, tasks, 256)
    prompt = tok.decode(examples[0][0])
    assert "Positive Example 2" in prompt and tasks[0].instances[0].input in prompt
    method = train_metaicl(cfg, tmp_path / "run", model_and_tokenizer=(model, tok))
    assert method.setting == "def2pos" and any(b.abs().sum() > 0 for b in method.bank.lora_B)
    result = evaluate(method, load_tasks(cfg.data, "test"), EvalConfig(limit=2, max_new_tokens=4))
    assert set(result["tasks"]) == {"copy", "yesno"}
    loaded = load_meta(tmp_path / "run", model_and_tokenizer=tiny_model("llama"))
    queries = make_queries(method, load_tasks(cfg.data, "test"), "def2pos", 2)
    assert torch.equal(logits(loaded, queries)[0], logits(method, queries)[0])


@pytest.mark.parametrize("algorithm", ["reptile", "fomaml"])
def test_reptile_and_fomaml_adapt_each_task_and_route_per_example(tmp_path, jsonl_data, algorithm):
    cfg = ReptileConfig(
        data=f"jsonl:{jsonl_data}",
        rank=2,
        algorithm=algorithm,
        inner_steps=2,
        support_size=2,
        query_size=2,
        adapt_steps=2,
        train=train_cfg(),
    )
    method = train_reptile(cfg, tmp_path / "run", model_and_tokenizer=tiny_model("qwen2"))
    assert any(b.abs().sum() > 0 for b in method.bank.lora_B)
    tasks = [
        replace(t, positive_examples=[Example(i.input, i.outputs[0]) for i in t.instances[-2:]])
        for t in load_tasks(cfg.data, "test")
    ]
    queries = make_queries(method, tasks, "def", 2)  # two tasks, mixed in one batch
    both, mask = logits(method, queries)
    assert len(method._adapted) == 2  # one adapted LoRA per task, by module name: A [r, in], B [out, r]
    for weights in method._adapted.values():
        assert {n: (a.shape, b.shape) for n, (a, b) in weights.items()} == {
            n: (a.shape[1:], b.shape[1:])
            for n, a, b in zip(method.bank.module_names, method.bank.lora_A, method.bank.lora_B, strict=True)
        }
    for i, q in enumerate(queries):
        alone, _ = logits(method, [q])
        torch.testing.assert_close(both[i, mask[i].bool()], alone[0, -int(mask[i].sum()) :], atol=1e-5, rtol=0)
    loaded = load_meta(tmp_path / "run", model_and_tokenizer=tiny_model("qwen2"))
    torch.testing.assert_close(logits(loaded, queries)[0], both, atol=1e-6, rtol=0)


def test_reptile_gradient_is_the_mean_inner_step(jsonl_data):
    from hyperadapt.methods.baselines.meta import _init, _setup, adapt, episode_batcher

    cfg = ReptileConfig(
        data=f"jsonl:{jsonl_data}", rank=2, inner_steps=2, support_size=2, query_size=2, train=train_cfg()
    )
    model, tok, tasks, bank = _setup(cfg, tiny_model("llama"))
    with torch.no_grad():
        for b in bank.lora_B:
            b.normal_(std=0.1)
    make_batch, _ = episode_batcher(cfg, tok, tasks, model.device)
    batch = make_batch([0, 1])
    reptile_loss(model, bank, cfg, batch).backward()
    support = [{k.split(".", 1)[1]: v for k, v in batch.items() if k.startswith(f"support{s}.")} for s in range(2)]
    init = _init(bank)
    fast = adapt(model, bank, init, support, cfg.inner_lr)
    assert list(fast) == list(init)
    for name in init:
        for w, f in zip(init[name], fast[name], strict=True):
            torch.testing.assert_close(w.grad, (w - f).detach() / (cfg.inner_lr * 2), atol=1e-6, rtol=1e-4)


def test_fast_weights_are_keyed_by_the_models_lora_module_names(jsonl_data):
    """The fast weights name each module's own (A, B): the names and shapes of the model's wrapped linears,
    and the loss with them is the loss with the bank's adapter (a pairing by offset would break both)."""
    from hyperadapt.core import conditioned
    from hyperadapt.core.inject import target_linears
    from hyperadapt.methods.baselines.meta import _init, _setup, adapt, episode_batcher, lora_loss
    from hyperadapt.training import answer_loss

    cfg = ReptileConfig(
        data=f"jsonl:{jsonl_data}",
        rank=2,
        target_modules=["q_proj", "v_proj", "down_proj"],
        inner_steps=1,
        support_size=2,
        query_size=2,
        train=train_cfg(),
    )
    model, tok, tasks, bank = _setup(cfg, tiny_model("llama"))
    with torch.no_grad():
        for b in bank.lora_B:
            b.normal_(std=0.1)
    linears = target_linears(model, cfg.target_modules)
    init = _init(bank)
    assert list(init) == list(linears) and len(init) == 2 * 3  # 2 layers x 3 module types
    for name, (a, b) in init.items():
        assert a.shape == (1, 2, linears[name].in_features) and b.shape == (1, linears[name].out_features, 2)
    batch = episode_batcher(cfg, tok, tasks, model.device)[0]([0, 1])
    with torch.no_grad(), conditioned(model, lora=bank.adapter(0)):
        expected = answer_loss(model, batch)
    torch.testing.assert_close(lora_loss(model, bank, init, batch), expected, atol=0, rtol=0)
    fast = adapt(model, bank, init, [batch], cfg.inner_lr)
    shapes = {n: (a.shape, b.shape) for n, (a, b) in init.items()}
    assert {n: (a.shape, b.shape) for n, (a, b) in fast.items()} == shapes
    assert all(not torch.equal(fast[n][0], init[n][0]) for n in init)  # every module's own A moved


def test_meta_configs_refuse_bad_values():
    with pytest.raises(ValueError, match="algorithm"):
        ReptileConfig(algorithm="maml")
    with pytest.raises(ValueError, match="inner_steps"):
        ReptileConfig(inner_steps=0)
    with pytest.raises(ValueError, match="target_modules"):
        MetaICLConfig(target_modules=["lm_head"])
    with pytest.raises(ValueError, match="setting must be def2pos"):
        MetaICLConfig(setting="def")


def test_meta_configs_extend_the_multitask_lora_config():
    """One config base for the LoRA-training baselines (as Hypter's is a preset of TAGI's); a MetaICL run
    saved before MetaICL had a `setting` key loads with its only setting."""
    from hyperadapt.config import from_dict, to_dict
    from hyperadapt.methods.baselines.lora_config import LoraTrainingConfig
    from hyperadapt.methods.baselines.multitask_lora import MultiTaskLoraConfig

    base = set(to_dict(LoraTrainingConfig()))
    for cls in (MultiTaskLoraConfig, MetaICLConfig, ReptileConfig):
        assert issubclass(cls, LoraTrainingConfig) and base <= set(to_dict(cls()))
    assert (MetaICLConfig().setting, ReptileConfig().setting, ReptileConfig().train.steps) == ("def2pos", "def", 200)
    saved = {k: v for k, v in to_dict(MetaICLConfig()).items() if k != "setting"}
    assert from_dict(MetaICLConfig, saved) == MetaICLConfig()


def test_shipped_meta_configs_load():
    from pathlib import Path

    from hyperadapt.config import load_config

    root = Path(__file__).parents[2] / "configs"
    assert load_config(MetaICLConfig, root / "megan_metaicl.yaml").setting == "def2pos"
    assert load_config(ReptileConfig, root / "megan_reptile.yaml", ["algorithm=fomaml"]).algorithm == "fomaml"
