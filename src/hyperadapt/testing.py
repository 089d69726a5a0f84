"""Tiny randomly initialised Llama-family models with a real tokenizer, built in code, for tests.

They load in milliseconds and exercise the same code paths as the default model: chat template,
SwiGLU MLPs, grouped-query attention, KV-cache generation.
"""

from __future__ import annotations

import string
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    PreTrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from hyperadapt.models import prepare

if TYPE_CHECKING:
    from hyperadapt.methods.tagi.method import TagiMethod

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TINY_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3")


def _corpus() -> list[str]:
    words = "the a of to and is in that it for on with as are this be answer input output task word " * 4
    return [
        words,
        string.ascii_lowercase * 4,
        string.ascii_uppercase * 4,
        " ".join(str(i) for i in range(200)),
        "user assistant system Definition: Input: Output: Example positive negative yes no",
    ]


@lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return tok.to_str()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (vocabulary ~400) with a ChatML chat template."""
    tok = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # transformers leaves its __init__ unannotated
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def tiny_config(arch: str = "llama", vocab_size: int = 400, layers: int = 2, hidden: int = 32) -> PreTrainedConfig:
    if arch not in TINY_ARCHITECTURES:
        raise ValueError(f"unknown tiny architecture {arch!r}: use one of {TINY_ARCHITECTURES}")
    return AutoConfig.for_model(
        arch,
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden // 4,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        hidden_act="silu",
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )


def tiny_model(
    arch: str = "llama", seed: int = 0, layers: int = 2, hidden: int = 32
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A randomly initialised, frozen, fp32 CPU model of ``arch`` and the tiny tokenizer."""
    tokenizer = tiny_tokenizer()
    config = tiny_config(arch, vocab_size=len(tokenizer), layers=layers, hidden=hidden)
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.bos_token_id = tokenizer.bos_token_id
    torch.manual_seed(seed)
    model: PreTrainedModel = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]  # unannotated
        config, dtype=torch.float32
    )
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return prepare(model, tokenizer, torch.device("cpu"))


def save_tiny_model(path: str | Path, arch: str = "llama", seed: int = 0) -> Path:
    """Write a tiny model and its tokenizer to ``path`` so that ``load_base_model(path)`` loads it."""
    model, tokenizer = tiny_model(arch, seed)
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def random_tagi_method(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    rank: int = 2,
    hidden: int = 16,
    blocks: int = 1,
    std: float = 0.5,
    max_instruction_tokens: int = 16,
    run: str = "in-memory",
) -> TagiMethod:
    """A TAGI method on ``model`` with an untrained hypernetwork whose B heads are random (``std``), so that
    different instructions give different, non-zero adapters (an untrained one gives ΔW = 0)."""
    from hyperadapt.core import inject
    from hyperadapt.methods.tagi.config import HypernetConfig, TagiConfig
    from hyperadapt.methods.tagi.method import build_hypernet, build_vectors, make_method

    cfg = TagiConfig(
        model=run,
        rank=rank,
        max_instruction_tokens=max_instruction_tokens,
        hypernet=HypernetConfig(hidden=hidden, blocks=blocks),
    )
    inject(model, cfg.target_modules, gating=False)
    vectors = build_vectors(cfg, model, tokenizer)
    net = build_hypernet(cfg, model, vectors.dim)
    with torch.no_grad():
        for head in net.head_b.values():
            cast(torch.nn.Linear, head).weight.normal_(std=std)  # ModuleDict types its values as Module
    return make_method("tagi", cfg, model, tokenizer, net, vectors, run)
