"""MeGan on tiny models: exactness when untrained, β bounds, padding, mixed batches, save/load, training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hyperadapt.config import load_config
from hyperadapt.core import conditioned, inject
from hyperadapt.data import load_tasks
from hyperadapt.evaluation.generate import encode_left_padded, generate_batch
from hyperadapt.evaluation.harness import EvalConfig, evaluate
from hyperadapt.methods.inputs import answer_texts
from hyperadapt.methods.megan import (
    BetaHypernetwork,
    HypernetSpec,
    MeganConfig,
    MeganMethod,
    beta_plot_and_cost,
    beta_summary,
    collect_betas,
    embed_conditions,
    load_hypernetwork,
    load_megan,
    save_hypernetwork,
    train_megan,
)
from hyperadapt.methods.megan.train import condition_batcher, encode_conditioned, megan_loss
from hyperadapt.testing import tiny_model
from hyperadapt.training import TrainConfig

CONDITIONS = ["Answer in capitals.", "Reverse the order of the words in the input, then answer"]
PROMPTS = ["the answer is", "a b c d e f g h"]


def generate(method, conditions, prompts, max_new_tokens=32):
    """Greedy answers through the one free-form path, each prompt under its own condition."""
    return [a.answer for a in answer_texts(method, prompts, conditions, max_new_tokens=max_new_tokens)]


def hypernet_for(model, per_token: bool = True, shared: bool = True, std: float = 0.0, seed: int = 0):
    """A hypernetwork for ``model``; ``std`` > 0 gives its output layer random weights (β ≠ 1)."""
    torch.manual_seed(seed)
    hyper = BetaHypernetwork(HypernetSpec.for_model(model, bottleneck=16, per_token=per_token, shared=shared))
    if std:
        with torch.no_grad():
            for head in hyper.heads:
                head.out_proj.weight.normal_(std=std)
                head.out_proj.bias.normal_(std=std)
    return hyper.eval()


def method_for(arch: str = "llama", std: float = 2.0, **kw) -> MeganMethod:
    model, tok = tiny_model(arch)
    return MeganMethod(model, tok, hypernet_for(model, std=std, **kw))


def logits_of(method: MeganMethod, prompts, conditions) -> tuple[torch.Tensor, torch.Tensor]:
    batch = encode_left_padded(method.tokenizer, prompts, method.model.device)
    with torch.no_grad(), method.condition(conditions):
        return method.model(**batch).logits, batch["attention_mask"]


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize(("per_token", "shared"), [(True, True), (True, False), (False, True), (False, False)])
def test_untrained_hypernetwork_reproduces_the_base_model_exactly(arch, per_token, shared):
    model, tok = tiny_model(arch)
    batch = encode_left_padded(tok, PROMPTS, model.device)
    ref = model(**batch).logits
    method = MeganMethod(model, tok, hypernet_for(model, per_token=per_token, shared=shared))
    with method.condition(CONDITIONS):
        out = model(**batch).logits  # with gradients enabled: the training path
    assert torch.equal(out, ref)
    assert generate(method, CONDITIONS, PROMPTS, max_new_tokens=6) == generate_batch(
        model,
        tok,
        [
            method.tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
            )
            for p in PROMPTS
        ],
        6,
    )


@pytest.mark.parametrize("per_token", [True, False])
def test_spread_separates_how_far_beta_moved_from_how_much_it_depends_on_the_condition(per_token):
    untrained = method_for(std=0.0, per_token=per_token).spread(CONDITIONS, PROMPTS)  # β ≡ 1
    assert untrained["deviation"] == untrained["condition"] == untrained["condition_share"] == 0.0
    method = method_for(std=2.0, per_token=per_token)
    moved = method.spread(CONDITIONS, PROMPTS)
    assert moved["deviation"] > 0 and 0 < moved["condition"] <= moved["deviation"]
    assert moved["n"] == 2 and moved["prompts"] == 2
    same = method.spread([CONDITIONS[0]] * 3, PROMPTS)  # one condition three times: nothing tells them apart
    assert same["deviation"] > 0 and same["condition"] < 1e-4 * same["deviation"]
    with pytest.raises(ValueError, match="at least 2 conditions"):
        method.spread(CONDITIONS[:1], PROMPTS)


@pytest.mark.parametrize("per_token", [True, False])
def test_beta_stays_within_its_bounds(per_token):
    model, tok = tiny_model("llama")
    hyper = hypernet_for(model, per_token=per_token, std=50.0)
    cond = embed_conditions(model, tok, CONDITIONS)
    x = torch.randn(2, 5, model.config.hidden_size) * 10
    s = hyper.spec.beta_scale
    for layer in range(hyper.spec.num_layers):
        beta = hyper.beta_fn(cond)(layer, x)
        assert beta.min() >= 1 - s and beta.max() <= 1 + s  # tanh saturates to ±1 in fp32: closed bounds
        assert beta.min() < 1 - 0.9 * s and beta.max() > 1 + 0.9 * s  # the whole range is reachable
        assert beta.shape == ((2, 5, 64) if per_token else (2, 1, 64))


@pytest.mark.parametrize("per_token", [True, False])
def test_padding_in_the_condition_does_not_change_beta(per_token):
    model, tok = tiny_model("llama")
    hyper = hypernet_for(model, per_token=per_token, std=1.0)
    x = torch.randn(1, 4, model.config.hidden_size)
    alone = hyper.beta_fn(embed_conditions(model, tok, CONDITIONS[:1]))
    padded_cond = embed_conditions(model, tok, CONDITIONS)  # the first is padded to the second's length
    assert not padded_cond.mask[0].all()
    padded = hyper.beta_fn(padded_cond)
    for layer in range(hyper.spec.num_layers):
        torch.testing.assert_close(padded(layer, x.expand(2, -1, -1))[:1], alone(layer, x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("arch", ["llama", "mistral"])
@pytest.mark.parametrize("per_token", [True, False])
def test_two_conditions_in_one_batch_match_each_alone(arch, per_token):
    method = method_for(arch, per_token=per_token)
    both, mask = logits_of(method, PROMPTS, CONDITIONS)
    for i in range(2):
        alone, _ = logits_of(method, PROMPTS[i : i + 1], CONDITIONS[i : i + 1])
        real = mask[i].bool()
        torch.testing.assert_close(both[i, real], alone[0], atol=1e-5, rtol=0)
    swapped, _ = logits_of(method, PROMPTS, CONDITIONS[::-1])
    assert (swapped[0, mask[0].bool()] - both[0, mask[0].bool()]).abs().max() > 1e-4  # the condition matters
    together = generate(method, CONDITIONS, PROMPTS, max_new_tokens=8)
    alone = [generate(method, [c], [p], max_new_tokens=8)[0] for c, p in zip(CONDITIONS, PROMPTS, strict=True)]
    assert together == alone


def test_per_channel_beta_is_cached_per_condition_and_has_the_per_token_shape_contract(monkeypatch):
    method = method_for(per_token=False)
    calls = []
    original = method.hypernet.channel_betas
    monkeypatch.setattr(method.hypernet, "channel_betas", lambda cond: calls.append(len(cond)) or original(cond))
    x = torch.randn(3, 5, method.model.config.hidden_size)
    fn = method.beta_fn([CONDITIONS[0], CONDITIONS[1], CONDITIONS[0]])
    assert calls == [2]  # each distinct condition once
    method.beta_fn(CONDITIONS[::-1])
    generate(method, CONDITIONS, PROMPTS, max_new_tokens=4)  # every decoding step reuses the cache
    assert calls == [2]
    for layer in range(2):
        assert fn(layer, x).shape == (3, 1, 64)  # broadcasts to [B, T, I], so KV-cache decoding works
    per_token = MeganMethod(method.model, method.tokenizer, hypernet_for(method.model, std=2.0))
    assert per_token.beta_fn(CONDITIONS + CONDITIONS[:1])(0, x).shape == (3, 5, 64)
    method.clear_cache()
    method.beta_fn(CONDITIONS[:1])
    assert calls == [2, 1]


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    method = method_for("qwen2", per_token=True, shared=False)
    save_hypernetwork(method.hypernet, method.model, tmp_path / "h")
    meta = json.loads((tmp_path / "h" / "hypernetwork.json").read_text())
    assert meta["base_model"]["hidden_size"] == 32 and meta["num_parameters"] == method.hypernet.num_parameters()
    model, tok = tiny_model("qwen2")
    loaded = MeganMethod(model, tok, load_hypernetwork(tmp_path / "h", model))
    want, _ = logits_of(method, PROMPTS, CONDITIONS)
    got, _ = logits_of(loaded, PROMPTS, CONDITIONS)
    assert torch.equal(got, want)
    assert generate(loaded, CONDITIONS, PROMPTS, 6) == generate(method, CONDITIONS, PROMPTS, 6)


def test_loading_onto_a_different_base_model_is_an_error(tmp_path):
    model, _ = tiny_model("llama")
    save_hypernetwork(hypernet_for(model), model, tmp_path / "h")
    wider, _ = tiny_model("llama", hidden=48)
    with pytest.raises(ValueError, match=r"trained for base model .*hidden_size: trained for 32, given 48"):
        load_hypernetwork(tmp_path / "h", wider)
    other, _ = tiny_model("llama")
    other.config._name_or_path = "someone/other-model"
    with pytest.raises(ValueError, match="name_or_path: trained for '', given 'someone/other-model'"):
        load_hypernetwork(tmp_path / "h", other)
    qwen, _ = tiny_model("qwen2")
    with pytest.raises(ValueError, match="model_type"):
        load_hypernetwork(tmp_path / "h", qwen)
    load_hypernetwork(tmp_path / "h", other, by_name=False)  # a run that checked the weights: any name of them
    with pytest.raises(ValueError, match="hidden_size"):
        load_hypernetwork(tmp_path / "h", wider, by_name=False)


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda meta: meta.pop("base_model"), ["needs the objects 'base_model' and 'spec'"]),
        (lambda meta: meta.update(spec=[1]), ["needs the objects 'base_model' and 'spec'"]),
        (lambda meta: meta["spec"].update(extra=1), ["unknown config key(s) ['spec.extra']"]),
        (lambda meta: meta["spec"].update(bottleneck="wide"), ["spec.bottleneck"]),
        (lambda meta: meta["base_model"].update(hidden_size=1), ["hidden_size: trained for 1, given 32"]),
    ],
)
def test_a_damaged_hypernetwork_config_is_a_user_error_naming_the_file(tmp_path, change, words):
    from hyperadapt.errors import UserError

    model, _ = tiny_model("llama")
    save_hypernetwork(hypernet_for(model), model, tmp_path / "h")
    config = tmp_path / "h" / "hypernetwork.json"
    meta = json.loads(config.read_text())
    change(meta)
    config.write_text(json.dumps(meta))
    with pytest.raises(UserError) as err:
        load_hypernetwork(tmp_path / "h", model)
    assert all(word in str(err.value) for word in [str(tmp_path / "h"), *words]), str(err.value)


def tiny_cfg(jsonl_data, **kw) -> MeganConfig:
    train = TrainConfig(
        steps=kw.pop("steps", 4), batch_size=4, lr=kw.pop("lr", 1e-2), max_length=48, save_every=2, log_every=1
    )
    return MeganConfig(data=f"jsonl:{jsonl_data}", split="train", bottleneck=16, train=train, **kw)


def strong_gates(model):
    """Scale the gate projections so that gates leave SiLU's near-linear range, as in trained models: a random
    tiny model's gates are so small that β hardly matters."""
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.gate_proj.weight.mul_(50)
    return model


def test_training_reduces_the_loss_and_leaves_the_base_model_alone(tmp_path, jsonl_data):
    cfg = tiny_cfg(jsonl_data, steps=12, lr=3e-2)
    model, tok = tiny_model("llama")
    strong_gates(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    examples = encode_conditioned(tok, load_tasks(cfg.data, "train"), cfg.setting, 48)
    batch = condition_batcher(examples, tok, 16, model.device)(list(range(len(examples))))
    method = train_megan(cfg, tmp_path / "run", model_and_tokenizer=(model, tok))
    with torch.no_grad():
        trained = megan_loss(model, method.hypernet, batch, 0.0).item()
        untrained = megan_loss(model, hypernet_for(model), batch, 0.0).item()
    assert trained < untrained - 0.005  # a random tiny model's logits are tiny: any method moves CE a little
    after = {k.replace(".base_layer", ""): v for k, v in model.state_dict().items()}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in model.parameters())
    assert (tmp_path / "run" / "hypernetwork" / "hypernetwork.safetensors").exists()


def test_train_resume_and_load_megan(tmp_path, jsonl_data):
    cfg = tiny_cfg(jsonl_data)
    full = train_megan(cfg, tmp_path / "full", model_and_tokenizer=tiny_model("llama"))
    train_megan(cfg, tmp_path / "cut", model_and_tokenizer=tiny_model("llama"), stop_at=2)
    resumed = train_megan(cfg, tmp_path / "cut", model_and_tokenizer=tiny_model("llama"))
    for (name, a), b in zip(full.hypernet.state_dict().items(), resumed.hypernet.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    loaded = load_megan(tmp_path / "full", model_and_tokenizer=tiny_model("llama"))
    assert loaded.setting == "none" and loaded.info["hypernetwork_parameters"] == full.hypernet.num_parameters()
    assert generate(loaded, CONDITIONS, PROMPTS, 5) == generate(full, CONDITIONS, PROMPTS, 5)
    result = evaluate(loaded, load_tasks(cfg.data, "test"), EvalConfig(limit=2, max_new_tokens=4))
    assert result["setting"] == "none" and set(result["tasks"]) == {"copy", "yesno"}


def test_l1_penalty_adds_to_the_loss(jsonl_data):
    model, tok = tiny_model("llama")
    inject(model, targets=(), gating=True)
    examples = encode_conditioned(tok, load_tasks(f"jsonl:{jsonl_data}", "train"), "def", 48)
    batch = condition_batcher(examples, tok, 16, model.device)([0, 1, 2])
    hyper = hypernet_for(model, std=1.0)
    with torch.no_grad():
        plain = megan_loss(model, hyper, batch, 0.0)
        penalised = megan_loss(model, hyper, batch, 0.5)
    assert penalised > plain
    assert batch["condition_ids"].shape == batch["condition_mask"].shape


def test_beta_plot_and_collected_betas(tmp_path):
    pytest.importorskip("matplotlib")
    from hyperadapt.report.plots import plot_beta_distribution

    method = method_for()
    betas = collect_betas(method, CONDITIONS, PROMPTS, max_values=100)
    assert list(betas) == CONDITIONS and len(betas[CONDITIONS[0]]) == 2
    assert all(0 < v.size <= 100 for v in betas[CONDITIONS[0]])
    path = plot_beta_distribution(betas, tmp_path / "beta.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    cost = beta_plot_and_cost(method, tmp_path, n_inputs=1)
    assert (tmp_path / "megan_beta.png").exists() and set(cost) == {"per_token", "per_channel", "beta"}
    assert all(0 <= v["saturated"] <= 1 for v in cost["beta"].values())
    assert cost["per_token"]["hypernetwork_parameters"] == method.hypernet.num_parameters()


def test_beta_summary_counts_saturated_gates():
    betas = {"c": [np.array([1.0, 1.5, 0.5]), np.array([1.2, 1.495])]}
    summary = beta_summary(betas, beta_scale=0.5)["c"]
    assert summary["saturated"] == pytest.approx(3 / 5)  # 1.5, 0.5 and 1.495 (within 2 % of s)
    assert summary["mean_abs_dev"] == pytest.approx((0 + 0.5 + 0.5 + 0.2 + 0.495) / 5)
    untrained = collect_betas(method_for(std=0.0), CONDITIONS, PROMPTS)
    assert all(v == {"mean_abs_dev": 0.0, "saturated": 0.0} for v in beta_summary(untrained, 0.5).values())


def test_clear_errors():
    method = method_for()
    with pytest.raises(ValueError, match="one --condition for all inputs or one per input"):
        generate(method, CONDITIONS, PROMPTS + ["x"])
    with pytest.raises(ValueError, match="has no tokens"):
        method.beta_fn([""])
    fn = method.beta_fn(CONDITIONS)
    with pytest.raises(ValueError, match="2 conditions for a batch of 3"), conditioned(method.model, beta=fn):
        method.model(**encode_left_padded(method.tokenizer, PROMPTS + ["x"], method.model.device))
    for bad, match in [
        ({"beta_scale": 1.0}, "beta_scale"),
        ({"bottleneck": 0}, "bottleneck"),
        ({"l1_weight": -1.0}, "l1_weight"),
        ({"condition_max_tokens": 0}, "condition_max_tokens"),
    ]:
        with pytest.raises(ValueError, match=match):
            MeganConfig(**bad)
    with pytest.raises(ValueError, match="unknown config key"):
        load_config(MeganConfig, None, ["rank=8"])
    assert MeganConfig(condition_in_prompt=True).setting == "def"


@pytest.mark.parametrize("name", ["megan", "megan_def", "megan_sni"])
def test_shipped_configs_load(name):
    cfg = load_config(MeganConfig, Path(__file__).parents[2] / "configs" / f"{name}.yaml", ["per_token=false"])
    assert cfg.train.lr == 1e-4 and not cfg.per_token
