import pytest
import torch
from core_helpers import batch_of, random_bank
from peft import LoraConfig, get_peft_model

from hyperadapt.core import ConditionedLinear, GatedMLP, conditioned, inject, is_injected, remove
from hyperadapt.errors import UserError
from hyperadapt.testing import TINY_ARCHITECTURES, tiny_model


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_remove_restores_the_original_modules(arch):
    model, _ = tiny_model(arch)
    before = dict(model.named_modules())
    keys = list(model.state_dict())
    inject(model)
    inject(model)  # idempotent
    layer = model.model.layers[0]
    assert isinstance(layer.mlp, GatedMLP) and isinstance(layer.self_attn.q_proj, ConditionedLinear)
    assert isinstance(layer.mlp.base_layer.gate_proj, ConditionedLinear)
    remove(model)
    after = dict(model.named_modules())
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    assert list(model.state_dict()) == keys and not is_injected(model)


def test_inject_is_additive_and_checks_targets():
    model, _ = tiny_model("llama")
    inject(model, targets=["q_proj"], gating=False)
    inject(model, targets=["v_proj"], gating=False)
    wrapped = sorted({m.name.rsplit(".", 1)[-1] for m in model.modules() if isinstance(m, ConditionedLinear)})
    assert wrapped == ["q_proj", "v_proj"] and not any(isinstance(m, GatedMLP) for m in model.modules())
    with pytest.raises(UserError, match="unsupported target modules.*choose from"):  # one line in the CLI
        inject(model, targets=["lm_head"])


def test_unsupported_module_type_is_refused():
    model, _ = tiny_model("llama")
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    with pytest.raises(ValueError, match="only torch.nn.Linear is supported"):
        inject(peft_model.base_model.model, targets=["q_proj"])


def test_state_is_cleared_after_an_error_and_nesting_restores():
    model, tok = tiny_model("llama")
    inject(model)
    bank = random_bank(model, 2)
    batch = batch_of(tok, 2)
    base = model(**batch).logits
    with pytest.raises(RuntimeError), conditioned(model, lora=bank.conditioning([0, 1])):
        raise RuntimeError("boom")
    assert torch.equal(model(**batch).logits, base)
    with conditioned(model, lora=bank.adapter(0)):
        outer = model(**batch).logits
        with conditioned(model, lora=bank.adapter(1), beta=torch.full((2, 1, 1), 1.2)):
            model(**batch)
        assert torch.equal(model(**batch).logits, outer)
    assert torch.equal(model(**batch).logits, base)


def generate(model, tok, prompts, **kw):
    batch = tok(prompts, return_tensors="pt", padding=True)
    out = model.generate(
        **batch, max_new_tokens=6, do_sample=False, output_scores=True, return_dict_in_generate=True, **kw
    )
    return out.sequences[:, batch.input_ids.shape[1] :], torch.stack(out.scores, 1)


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_generate_left_padded_batch_matches_each_example_alone(arch):
    model, tok = tiny_model(arch)
    inject(model)
    bank = random_bank(model, 3)
    prompts = ["hello world", "a b c d e f g h i j", "the"]
    index = [2, 0, 1]
    beta = torch.tensor([1.2, 0.8, 1.0]).reshape(3, 1, 1)
    with conditioned(model, lora=bank.conditioning(index), beta=beta):
        tokens, scores = generate(model, tok, prompts)
    for row, (prompt, i) in enumerate(zip(prompts, index, strict=True)):
        with conditioned(model, lora=bank.conditioning([i]), beta=beta[row : row + 1]):
            alone_tokens, alone_scores = generate(model, tok, [prompt])
        assert torch.equal(tokens[row], alone_tokens[0])
        torch.testing.assert_close(scores[row], alone_scores[0], atol=1e-4, rtol=1e-4)


def test_generate_with_beams_is_refused():
    model, tok = tiny_model("llama")
    inject(model)
    bank = random_bank(model, 2)
    with pytest.raises(ValueError, match="num_beams>1"), conditioned(model, lora=bank.conditioning([0, 1])):
        generate(model, tok, ["hello", "the answer"], num_beams=2)
