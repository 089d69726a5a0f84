"""The β hypernetwork of MeGan: condition text → per-layer, per-token Swish_β gates of a frozen model.

The condition is read through the frozen model's own token embeddings (``embed_conditions``), RMS-normalised
without parameters (the public code uses them raw, so the condition's pull depends on the model's embedding
scale); a one-head
cross-attention whose queries are a layer's FFN input (or, per channel, a learned query) and whose
keys/values are the condition tokens gives a bottleneck vector of width R; a trainable layer embedding is
added; a zero-initialised projection to the intermediate size gives ``β = 1 + s·tanh(·)``, so an untrained
hypernetwork leaves the model exactly as it was. Saving writes the hypernetwork alone, with the identity of
its base model; loading onto another base model is an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt.config import from_dict
from hyperadapt.core import BetaFn
from hyperadapt.core.rows import BetaSource
from hyperadapt.data.prompts import literal_ids
from hyperadapt.errors import UserError
from hyperadapt.io import load_json, load_state_strict, load_tensors, save_json, write_dir_atomic
from hyperadapt.models import decoder_layers

WEIGHTS_FILE = "hypernetwork.safetensors"
CONFIG_FILE = "hypernetwork.json"
BASE_MODEL_KEYS = ("name_or_path", "model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size")
LayerBeta = Callable[[int, Tensor], Tensor]  # a BetaFn that gives every layer a β: (layer index, MLP input) -> β


@dataclass(frozen=True)
class HypernetSpec:
    """Everything that fixes the hypernetwork's parameter shapes and its β (written beside its weights)."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    bottleneck: int = 512
    beta_scale: float = 0.5
    per_token: bool = True
    shared: bool = True
    condition_max_tokens: int = 16

    @classmethod
    def for_model(cls, model: PreTrainedModel, **options: Any) -> HypernetSpec:
        cfg = model.config
        return cls(cfg.hidden_size, cfg.intermediate_size, len(decoder_layers(model)), **options)


@dataclass
class ConditionBatch:
    """Condition texts of a batch as frozen token embeddings, right-padded, with their padding mask."""

    embeddings: Tensor  # [B, C, H]
    mask: Tensor  # [B, C] bool, True on real tokens

    def __len__(self) -> int:
        return self.embeddings.shape[0]


def tokenize_conditions(tokenizer: Tokenizer, texts: Sequence[str], max_tokens: int) -> tuple[Tensor, Tensor]:
    """Token ids [B, C] (right-padded, first ``max_tokens`` tokens of each text) and mask [B, C]."""
    if isinstance(texts, str) or not texts:
        raise ValueError("conditions must be a non-empty list of strings")
    ids = [literal_ids(tokenizer, t)[:max_tokens] for t in texts]
    empty = [t for t, x in zip(texts, ids, strict=True) if not x]
    if empty:
        raise ValueError(f"condition text {empty[0]!r} has no tokens: give every example a non-empty condition")
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id or 0
    id_rows = torch.tensor([x + [pad] * (width - len(x)) for x in ids])  # [B, C]
    mask = torch.tensor([[True] * len(x) + [False] * (width - len(x)) for x in ids])  # [B, C]
    return id_rows, mask


def input_embeddings(model: PreTrainedModel) -> nn.Embedding:
    """The frozen model's input embedding table."""
    return cast(nn.Embedding, model.get_input_embeddings())  # transformers types it as any Module


@torch.no_grad()
def embed_condition_ids(model: PreTrainedModel, ids: Tensor, mask: Tensor) -> ConditionBatch:
    """Look condition token ids up in the frozen model's input embedding table."""
    device = input_embeddings(model).weight.device
    emb = input_embeddings(model)(ids.to(device))  # [B, C, H]
    return ConditionBatch(emb, mask.to(device))


def embed_conditions(
    model: PreTrainedModel, tokenizer: Tokenizer, texts: Sequence[str], max_tokens: int = 16
) -> ConditionBatch:
    """Condition texts → their frozen token embeddings with a padding mask (see :class:`ConditionBatch`)."""
    return embed_condition_ids(model, *tokenize_conditions(tokenizer, texts, max_tokens))


class BetaHead(nn.Module):
    """Projections of one (shared or per-layer) hypernetwork: query, key, value to R; R → intermediate."""

    def __init__(self, spec: HypernetSpec) -> None:
        super().__init__()
        h, r = spec.hidden_size, spec.bottleneck
        if spec.per_token:
            self.query_proj = nn.Linear(h, r)
        else:
            self.query_vector = nn.Parameter(torch.randn(r) * 0.02)
        self.key_proj = nn.Linear(h, r)
        self.value_proj = nn.Linear(h, r)
        self.out_proj = nn.Linear(r, spec.intermediate_size)
        nn.init.zeros_(self.out_proj.weight)  # β ≡ 1 until trained: the model is exactly the original
        nn.init.zeros_(self.out_proj.bias)


class BetaHypernetwork(nn.Module):
    """MeGan's β hypernetwork (meta-gated SwiGLU, ICML 2026): condition embeddings → Swish_β gates per layer.

    Per token (``spec.per_token``): β [B, T, I] from each token's FFN input attending to the condition.
    Per channel: β [B, 1, I] from a learned query, the same for every token, computed once per condition.

    Example::

        hyper = BetaHypernetwork(HypernetSpec.for_model(model))
        cond = embed_conditions(model, tokenizer, ["Answer in capitals.", "Reverse the list."])
        with conditioned(inject(model, targets=()), beta=hyper.beta_fn(cond)):
            logits = model(**batch).logits
    """

    def __init__(self, spec: HypernetSpec) -> None:
        super().__init__()
        if not 0 < spec.beta_scale < 1:
            raise ValueError(f"beta_scale must be in (0, 1), got {spec.beta_scale}")
        self.spec = spec
        self.heads = nn.ModuleList(BetaHead(spec) for _ in range(1 if spec.shared else spec.num_layers))
        self.layer_embedding = nn.Parameter(torch.randn(spec.num_layers, spec.bottleneck) * 0.02)  # [L, R]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def head(self, layer: int) -> BetaHead:
        return cast(BetaHead, self.heads[0 if self.spec.shared else layer])  # ModuleList types its items as Module

    def _dtype(self) -> torch.dtype:
        return self.layer_embedding.dtype

    def keys_values(self, layer: int, cond: ConditionBatch) -> tuple[Tensor, Tensor]:
        head = self.head(layer)
        emb = cond.embeddings.to(self._dtype())  # [B, C, H]
        emb = F.rms_norm(emb, emb.shape[-1:])  # unit scale, whatever the base model's embedding scale
        return head.key_proj(emb), head.value_proj(emb)  # [B, C, R] each

    def layer_beta(self, layer: int, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor) -> Tensor:
        """β [B, Q, I] for queries [B, Q, R] attending to the condition (padding masked out)."""
        scores = query @ keys.transpose(1, 2) / math.sqrt(self.spec.bottleneck)  # [B, Q, C]
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        context = torch.softmax(scores, dim=-1) @ values  # [B, Q, R]
        hidden = context + self.layer_embedding[layer]  # [B, Q, R]
        return 1 + self.spec.beta_scale * torch.tanh(self.head(layer).out_proj(hidden))  # [B, Q, I]

    def token_beta(self, layer: int, x: Tensor, cond: ConditionBatch, kv: tuple[Tensor, Tensor]) -> Tensor:
        """Per-token β [B, T, I] of ``layer`` for its FFN input ``x`` [B, T, H]."""
        query = self.head(layer).query_proj(x.to(self._dtype()))  # [B, T, R]
        return self.layer_beta(layer, query, *kv, cond.mask)

    def channel_betas(self, cond: ConditionBatch) -> Tensor:
        """Per-channel β of every layer, one per condition: [B, L, I]."""
        if self.spec.per_token:
            raise ValueError("channel_betas needs a per-channel hypernetwork (per_token=False)")
        out, kv = [], None
        for layer in range(self.spec.num_layers):
            if kv is None or not self.spec.shared:
                kv = self.keys_values(layer, cond)  # [B, C, R] each, once when shared
            query = self.head(layer).query_vector.expand(len(cond), 1, -1)  # [B, 1, R]
            out.append(self.layer_beta(layer, query, *kv, cond.mask)[:, 0])  # [B, I]
        return torch.stack(out, dim=1)  # [B, L, I]

    def beta_fn(self, cond: ConditionBatch, on_beta: Callable[[int, Tensor], None] | None = None) -> LayerBeta:
        """A ``beta_fn(layer_idx, mlp_input) -> β`` for ``conditioned(model, beta=...)``, one condition per example.

        ``on_beta(layer, β)`` sees every β produced (for an L1 penalty or for plots).
        """
        if not self.spec.per_token:
            betas = self.channel_betas(cond)  # [B, L, I], once for the whole call (every decoding step)
            return channel_beta_fn(betas, on_beta)
        # the condition's keys and values of every head, once per call and before any layer runs (so that a
        # layer replayed by activation checkpointing computes exactly what its forward did)
        kv = [self.keys_values(head, cond) for head in range(len(self.heads))]

        def fn(layer: int, x: Tensor) -> Tensor:
            if x.shape[0] != len(cond):
                raise ValueError(f"{len(cond)} conditions for a batch of {x.shape[0]} examples: give one each")
            beta = self.token_beta(layer, x, cond, kv[0 if self.spec.shared else layer])  # [B, T, I]
            if on_beta is not None:
                on_beta(layer, beta)
            return beta

        return fn

    def group_beta_fn(self, sources: list[BetaSource]) -> BetaFn:
        """One ``beta_fn`` for the rows ``sources`` of a served batch (``hyperadapt.core.rows.BetaGroup``):
        per channel, their β [b, L, I] stacked; per token, their condition embeddings [C, H] padded to [b, C, H]."""
        if not self.spec.per_token:
            betas = torch.stack([_made(s.channel, "per-channel β") for s in sources])  # [b, L, I]
            return lambda layer, x: betas[:, layer, None, :]  # [b, 1, I]
        conditions = [_made(s.condition, "condition embeddings") for s in sources]  # [C, H] each
        width = max(c.shape[0] for c in conditions)
        emb = conditions[0].new_zeros(len(sources), width, conditions[0].shape[1])  # [b, C, H]
        mask = torch.zeros(len(sources), width, dtype=torch.bool, device=emb.device)  # [b, C]
        for i, c in enumerate(conditions):
            emb[i, : c.shape[0]] = c
            mask[i, : c.shape[0]] = True
        return self.beta_fn(ConditionBatch(emb, mask))


def _made(part: Tensor | None, what: str) -> Tensor:
    """A part of a β source that this hypernetwork's ``serve_row`` makes (the other stays None)."""
    if part is None:
        raise ValueError(f"a β source without {what}: make it with this hypernetwork's method's serve_row")
    return part


def channel_beta_fn(betas: Tensor, on_beta: Callable[[int, Tensor], None] | None = None) -> LayerBeta:
    """A beta_fn serving per-channel β [B, L, I] computed earlier (e.g. cached per condition) as [B, 1, I]."""

    def fn(layer: int, x: Tensor) -> Tensor:
        if x.shape[0] != betas.shape[0]:
            raise ValueError(f"{betas.shape[0]} conditions for a batch of {x.shape[0]} examples: give one each")
        beta = betas[:, layer, None, :]  # [B, 1, I]
        if on_beta is not None:
            on_beta(layer, beta)
        return beta

    return fn


# -- saving and loading ----------------------------------------------------------------------------------


def base_model_info(model: PreTrainedModel) -> dict[str, Any]:
    """What identifies a base model for a hypernetwork: its name and the dimensions β depends on."""
    cfg = model.config
    return {
        "name_or_path": getattr(cfg, "_name_or_path", "") or "",
        "model_type": cfg.model_type,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "vocab_size": cfg.vocab_size,
    }


def save_hypernetwork(hyper: BetaHypernetwork, model: PreTrainedModel, path: str | Path) -> Path:
    """Write ``hyper`` alone (safetensors + JSON naming its base model) to folder ``path``, atomically."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in hyper.state_dict().items()}

    def write(tmp: Path) -> None:
        save_file(tensors, tmp / WEIGHTS_FILE)
        save_json(
            {
                "spec": asdict(hyper.spec),
                "base_model": base_model_info(model),
                "num_parameters": hyper.num_parameters(),
            },
            tmp / CONFIG_FILE,
        )

    return write_dir_atomic(path, write)


def check_base_model(saved: dict[str, Any], model: PreTrainedModel, where: str | Path, by_name: bool = True) -> None:
    """Raise ``UserError`` if ``model`` is not the base model the hypernetwork in ``where`` was trained for: its
    shape, and its name unless ``by_name`` is False (a run whose weight fingerprint was checked, which any path to
    the same weights passes)."""
    have = base_model_info(model)
    keys = BASE_MODEL_KEYS if by_name else tuple(k for k in BASE_MODEL_KEYS if k != "name_or_path")
    diff = {k: (saved.get(k), have[k]) for k in keys if saved.get(k) != have[k]}
    if diff:
        what = ", ".join(f"{k}: trained for {a!r}, given {b!r}" for k, (a, b) in diff.items())
        raise UserError(
            f"the hypernetwork in {where} was trained for base model {saved.get('name_or_path')!r} and does not "
            f"fit the model given ({what}); load it with that base model"
        )


def load_hypernetwork(path: str | Path, model: PreTrainedModel, by_name: bool = True) -> BetaHypernetwork:
    """The hypernetwork saved in folder ``path``, checked against ``model`` and loaded strictly onto its device.

    Raises ``UserError`` naming the file when its ``hypernetwork.json`` lacks the objects ``base_model`` and
    ``spec`` or holds a spec of unknown keys or values of the wrong kind, and when ``model`` is not the base
    model it was trained for (by name too unless ``by_name`` is False: see :func:`check_base_model`)."""
    path = Path(path)
    meta = load_json(path / CONFIG_FILE, "hypernetwork config")
    if not isinstance(meta.get("base_model"), dict) or not isinstance(meta.get("spec"), dict):
        raise UserError(
            f"hypernetwork config {path / CONFIG_FILE} needs the objects 'base_model' and 'spec': it is damaged; "
            "copy or save it again"
        )
    check_base_model(meta["base_model"], model, path, by_name)
    try:
        spec = from_dict(HypernetSpec, meta["spec"], "spec.")
    except UserError as err:
        raise UserError(f"hypernetwork config {path / CONFIG_FILE}: {err}") from err
    hyper = BetaHypernetwork(spec)
    weights = path / WEIGHTS_FILE
    load_state_strict(hyper, load_tensors(weights, "hypernetwork weights"), weights, "hypernetwork weights")
    return hyper.to(input_embeddings(model).weight.device).eval()
