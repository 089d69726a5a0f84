import json
import re

import pytest
import torch
from core_helpers import batch_of, make_peft, peft_adapter, random_bank
from peft import PeftModel
from transformers import AutoModelForCausalLM

from hyperadapt.core import (
    LoraConditioning,
    bank_from_peft,
    conditioned,
    export_peft,
    inject,
    load_peft,
    merge,
    merged_count,
    unmerge,
)
from hyperadapt.models import DEFAULT_MODEL_ID
from hyperadapt.testing import save_tiny_model, tiny_model


@pytest.fixture(scope="module")
def saved_llama(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "llama", "llama")


def peft_logits(base_dir, adapter_dir, batch):
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        return peft_model(**batch).logits


@pytest.mark.parametrize("scale", [2.0, 0.37])  # alpha = scale·r is whole, or the scale is folded into B
def test_export_generated_adapter_loads_in_peft(saved_llama, tmp_path, scale):
    model, tok = tiny_model("llama")
    inject(model)
    per_example = random_bank(model, 3).conditioning([2, 0, 1])
    lora = LoraConditioning(per_example.factors, scale)
    batch = batch_of(tok, 3)
    with torch.no_grad(), conditioned(model, lora=lora.example(1)):
        ours = model(**batch).logits
    out = export_peft(model, lora, tmp_path / "adapter", example=1, base_model_name_or_path=str(saved_llama))
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM"
    assert config["r"] == 4 and config["lora_alpha"] == (8 if scale == 2.0 else 4)
    assert sorted(config["target_modules"]) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    torch.testing.assert_close(peft_logits(saved_llama, out, batch), ours, atol=1e-5, rtol=0)


def test_export_bank_adapter_names_the_base_model(saved_llama, tmp_path):
    model, tok = tiny_model("llama")
    model.config._name_or_path = DEFAULT_MODEL_ID
    bank = random_bank(model, 2, targets=["q_proj", "v_proj"])
    partial = LoraConditioning({k: v for k, v in bank.adapter(1).factors.items() if ".0." in k}, bank.scale)
    out = export_peft(model, bank.adapter(1), tmp_path / "full")
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == DEFAULT_MODEL_ID
    out = export_peft(model, partial, tmp_path / "partial", base_model_name_or_path=str(saved_llama))
    targets = json.loads((out / "adapter_config.json").read_text())["target_modules"]
    assert sorted(targets) == ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"]
    batch = batch_of(tok, 2)
    inject(model)
    with torch.no_grad(), conditioned(model, lora=partial):
        ours = model(**batch).logits
    torch.testing.assert_close(peft_logits(saved_llama, out, batch), ours, atol=1e-5, rtol=0)


def test_import_peft_folder_into_a_bank(tmp_path):
    model, tok = tiny_model("llama")
    peft_model = make_peft(tiny_model("llama")[0], rank=2, alpha=3)
    peft_model.save_pretrained(tmp_path / "peft")
    batch = batch_of(tok, 2)
    with torch.no_grad():
        want = peft_model(**batch).logits
    lora = load_peft(tmp_path / "peft")
    torch.testing.assert_close(
        lora.delta("model.layers.1.mlp.up_proj"), peft_adapter(peft_model).delta("model.layers.1.mlp.up_proj")
    )
    inject(model)
    bank = random_bank(model, 3)  # rank 4: the rank-2 adapter is zero-padded
    bank.set_adapter(1, lora)
    with torch.no_grad(), conditioned(model, lora=bank.conditioning([1, 1])):
        got = model(**batch).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    with pytest.raises(FileNotFoundError, match="not a PEFT adapter folder"):
        load_peft(tmp_path / "nothing")


def test_bank_from_peft_folders_routes_per_example(tmp_path):
    model, tok = tiny_model("llama")
    batch = batch_of(tok, 2)
    want = []
    for i, rank in enumerate((2, 4)):
        peft_model = make_peft(tiny_model("llama")[0], rank=rank, alpha=rank + i, targets=["q_proj", "v_proj"])
        peft_model.save_pretrained(tmp_path / f"task{i}")
        with torch.no_grad():
            want.append(peft_model(**batch).logits[i])
    bank = bank_from_peft(model, [tmp_path / "task0", tmp_path / "task1"])
    assert bank.num_adapters == 2 and bank.rank == 4
    inject(model)
    with torch.no_grad(), conditioned(model, lora=bank.conditioning([0, 1])):
        got = model(**batch).logits
    torch.testing.assert_close(got, torch.stack(want), atol=1e-5, rtol=0)


def test_merge_and_unmerge_round_trip():
    model, tok = tiny_model("llama")
    inject(model, targets=["q_proj", "v_proj", "down_proj"])
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    bank = random_bank(model, 2, targets=["q_proj", "v_proj", "down_proj"])
    batch = batch_of(tok, 2)
    with torch.no_grad(), conditioned(model, lora=bank.adapter(1)):
        conditioned_logits = model(**batch).logits
    merge(model, bank.conditioning([0, 1]), example=1)
    assert merged_count(model) == 1
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, conditioned_logits, atol=1e-5, rtol=0)
    assert unmerge(model) == 1 and merged_count(model) == 0
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, weights[k], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="example=i"):
        merge(model, bank.conditioning([0, 1]))


def broken_copy(src, dst, tensors=None, config=None):
    """A copy of the PEFT folder ``src`` with its tensors and/or config changed."""
    from safetensors.torch import load_file, save_file

    dst.mkdir()
    state = load_file(src / "adapter_model.safetensors")
    save_file(tensors(state) if tensors else state, dst / "adapter_model.safetensors")
    cfg = json.loads((src / "adapter_config.json").read_text())
    (dst / "adapter_config.json").write_text(json.dumps({**cfg, **(config or {})}))
    return dst


def test_adapters_that_cannot_run_are_refused_at_load_with_the_tensor_or_key_named(tmp_path):
    make_peft(tiny_model("llama")[0], rank=2, alpha=4).save_pretrained(tmp_path / "ok")
    ok = tmp_path / "ok"
    assert load_peft(ok).factors
    with pytest.raises(ValueError, match="holds no tensors"):  # was a StopIteration that hung the server
        load_peft(broken_copy(ok, tmp_path / "empty", tensors=lambda s: {}))
    for i, value in enumerate((float("nan"), float("inf"))):

        def poison(state, value=value):
            key = sorted(state)[3]
            state[key][0, 0] = value
            return state

        key = sorted(load_peft_state(ok))[3]
        with pytest.raises(ValueError, match=rf"{re.escape(key)}.*NaN or infinite"):
            load_peft(broken_copy(ok, tmp_path / f"poison{i}", tensors=poison))
    for i, alpha in enumerate((1e30, float("nan"), float("inf"), -1)):
        with pytest.raises(ValueError, match="lora_alpha must be a positive number up to 65504"):
            load_peft(broken_copy(ok, tmp_path / f"alpha{i}", config={"lora_alpha": alpha}))
    with pytest.raises(ValueError, match=r"alpha_pattern\['q_proj'\]"):
        load_peft(broken_copy(ok, tmp_path / "pattern", config={"alpha_pattern": {"q_proj": 1e30}}))


def load_peft_state(folder):
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


def test_wrapping_a_model_with_peft_prints_no_deprecation_warning():
    """PEFT reads transformers' deprecated ``is_gradient_checkpointing`` on every wrap: not shown to the user."""
    import warnings

    from peft import LoraConfig, get_peft_model

    from hyperadapt.core import peft_wrapping

    config = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])

    def probe_warnings(wrap) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            wrap()
        return [str(w.message) for w in caught if "is_gradient_checkpointing" in str(w.message)]

    if not probe_warnings(lambda: get_peft_model(tiny_model("llama")[0], config)):
        pytest.skip("PEFT no longer reads the deprecated property: peft_wrapping can go")

    def wrapped():
        with peft_wrapping():
            get_peft_model(tiny_model("llama")[0], config)

    assert probe_warnings(wrapped) == []


def test_an_int8_adapter_is_a_quarter_of_float32_within_its_rounding_and_dequantises_into_peft(saved_llama, tmp_path):
    from safetensors.torch import load_file

    from hyperadapt.core import dequantize_peft
    from hyperadapt.serve import vllm_problems

    model, tok = tiny_model("llama")
    inject(model)
    lora = random_bank(model, 2).adapter(1)
    fp32 = export_peft(model, lora, tmp_path / "fp32", base_model_name_or_path=str(saved_llama))
    int8 = export_peft(model, lora, tmp_path / "int8", dtype=torch.int8, base_model_name_or_path=str(saved_llama))
    assert not (int8 / "adapter_model.safetensors").exists()  # PEFT must not read int8 codes as weights
    stored = load_file(int8 / "adapter_model.int8.safetensors")
    codes = {k: v for k, v in stored.items() if not k.endswith("_scale")}
    assert {v.dtype for v in codes.values()} == {torch.int8} and len(stored) == 2 * len(codes)
    int8_bytes, fp32_bytes = (
        sum(v.numel() * v.element_size() for v in load_file(p).values())
        for p in (int8 / "adapter_model.int8.safetensors", fp32 / "adapter_model.safetensors")
    )
    assert int8_bytes < 0.3 * fp32_bytes
    back = load_peft(int8)
    assert back.scale == load_peft(fp32).scale
    for name, (a, b) in lora.factors.items():
        qa, qb = back.factors[name]
        # each element within half a step (max|row| / 127 / 2) of its row of A, its column of B
        assert ((qa - a).abs() <= a.abs().amax(dim=2, keepdim=True) / 254 + 1e-7).all()
        assert ((qb - b).abs() <= b.abs().amax(dim=1, keepdim=True) / 254 + 1e-7).all()
    assert vllm_problems(int8) and "dequantize_peft" in vllm_problems(int8)[0]
    plain = dequantize_peft(int8, tmp_path / "plain", dtype=torch.float32)
    assert vllm_problems(plain) == []
    batch = batch_of(tok, 2)
    with torch.no_grad(), conditioned(model, lora=back):
        ours = model(**batch).logits
    torch.testing.assert_close(peft_logits(saved_llama, plain, batch), ours, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="exists"):
        dequantize_peft(int8, plain)


def test_a_damaged_int8_adapter_is_refused_with_the_key_named(tmp_path):
    from safetensors.torch import load_file, save_file

    model, _ = tiny_model("llama")
    inject(model)
    good = export_peft(model, random_bank(model, 1).adapter(0), tmp_path / "good", dtype=torch.int8)
    stored = load_file(good / "adapter_model.int8.safetensors")
    key = sorted(k for k in stored if not k.endswith("_scale"))[0]
    for i, damage in enumerate(
        (
            lambda s: s.pop(key + "_scale"),  # a weight without its scale
            lambda s: s.pop(key),  # a scale without its weight
            lambda s: s.update({key + "_scale": torch.ones(3, 3)}),  # a scale of another shape
            lambda s: s.update({key + "_scale": s[key + "_scale"].T.contiguous()}),  # per column of A, not per row
            lambda s: s.update({key + "_scale": s[key + "_scale"].half()}),  # not float32
            lambda s: s.update({key + "_scale": s[key + "_scale"].clone().fill_(float("nan"))}),
            lambda s: s.update({key + "_scale": -s[key + "_scale"]}),  # not positive
            lambda s: s.update({key: s[key].float()}),  # codes that are not int8
        )
    ):
        bad = tmp_path / f"bad{i}"
        bad.mkdir()
        (bad / "adapter_config.json").write_text((good / "adapter_config.json").read_text())
        state = dict(stored)
        damage(state)
        save_file(state, bad / "adapter_model.int8.safetensors")
        with pytest.raises(ValueError, match=re.escape(key)):
            load_peft(bad)


def test_an_adapter_that_would_not_run_is_refused_at_export_and_a_new_export_replaces_the_old_weights(tmp_path):
    from hyperadapt.core import dequantize_peft

    model, _ = tiny_model("llama")
    inject(model)
    bank = random_bank(model, 2)
    first, second = bank.adapter(0), bank.adapter(1)
    for value in (float("nan"), float("inf")):
        broken = {n: (a.clone(), b) for n, (a, b) in first.factors.items()}
        next(iter(broken.values()))[0][0, 0, 0] = value
        for dtype in (torch.int8, None):
            with pytest.raises(ValueError, match="NaN or infinite"):
                export_peft(model, LoraConditioning(broken, first.scale), tmp_path / "broken", dtype=dtype)
    folder = export_peft(model, first, tmp_path / "a", dtype=torch.bfloat16)
    export_peft(model, second, folder, dtype=torch.int8)  # the same folder again: only the int8 file stays
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.int8.safetensors"]
    name = next(iter(second.factors))
    back = load_peft(folder).factors[name][0]
    assert (back - second.factors[name][0]).abs().max() <= second.factors[name][0].abs().max() / 254 + 1e-7
    export_peft(model, first, folder)  # and back: only PEFT's file
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    with pytest.raises(ValueError, match="floating-point"):
        dequantize_peft(folder, tmp_path / "ints", dtype=torch.int8)  # PEFT would load integer weights as zeros
    assert not (tmp_path / "ints").exists()
