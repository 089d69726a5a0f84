"""Batched greedy generation and rank classification on a (possibly conditioned) causal LM."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from transformers import GenerationMixin, PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt.data.prompts import literal_ids, prompt_ids
from hyperadapt.models import end_of_turn_ids

if TYPE_CHECKING:
    from peft import PeftModel


def encode_left_padded(tokenizer: Tokenizer, prompts: list[str], device: torch.device) -> dict[str, torch.Tensor]:
    """Tokenise ``prompts`` (rendered: :func:`hyperadapt.data.prompts.prompt_ids`) with left padding."""
    if not prompts:
        raise ValueError("no prompts to encode")
    ids = [prompt_ids(tokenizer, p) for p in prompts]
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=device)
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
    return {"input_ids": input_ids, "attention_mask": mask}


@torch.inference_mode()
def generate_batch(
    model: PreTrainedModel | PeftModel, tokenizer: Tokenizer, prompts: list[str], max_new_tokens: int = 32
) -> list[str]:
    """Greedy answers to ``prompts`` (one batch), stopping at the end of the assistant's turn. ``model``: a causal
    LM, or PEFT's wrapper of one."""
    batch = encode_left_padded(tokenizer, prompts, model.device)
    # transformers 5 declares generate on GenerationMixin, which every causal LM class mixes in (and PEFT's
    # wrapper calls), not on PreTrainedModel
    out = cast(GenerationMixin, model).generate(
        **batch,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=end_of_turn_ids(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
    )
    new_tokens = out[:, batch["input_ids"].shape[1] :]  # [B, new]
    return [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


@torch.inference_mode()
def option_logprobs(
    model: PreTrainedModel, tokenizer: Tokenizer, prompts: list[str], options: list[list[str]]
) -> list[list[float]]:
    """Sum of token log-probabilities of each option (plus end of turn) after its prompt.

    ``prompts``: B rendered prompts; ``options``: the candidate answers of each (at least one). The
    options are scored option-major: forward k holds the k-th option of *every* prompt, so each forward
    has exactly B rows in the order of ``prompts`` and any per-example conditioning set up for the batch
    (``conditioned(model, ...)`` with one adapter or β per prompt) follows each prompt to each of its
    options. A prompt with fewer options repeats its last one (scored, then dropped). Returns B lists of
    scores (natural log, ≤ 0). Raises ``ValueError`` when a prompt has no options.
    """
    if len(prompts) != len(options):
        raise ValueError(f"{len(prompts)} prompts but {len(options)} option lists")
    if any(not opts for opts in options):
        raise ValueError("every prompt needs at least one option to rank")
    eot = end_of_turn_ids(tokenizer)[:1]
    prompt_tokens = [prompt_ids(tokenizer, p) for p in prompts]
    scores: list[list[float]] = [[] for _ in prompts]
    for k in range(max(len(opts) for opts in options)):
        picked = [opts[min(k, len(opts) - 1)] for opts in options]
        seqs = [p + literal_ids(tokenizer, o.strip()) + eot for p, o in zip(prompt_tokens, picked, strict=True)]
        width = max(len(s) for s in seqs)
        pad = tokenizer.pad_token_id
        # right padding: every real token keeps the positions it has alone, pads only follow it
        input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=model.device)  # [B, T]
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=model.device)
        logits = model(input_ids=input_ids, attention_mask=mask).logits  # [B, T, V]
        for i, (seq, p_ids) in enumerate(zip(seqs, prompt_tokens, strict=True)):
            if k >= len(options[i]):
                continue
            start = len(p_ids)  # first option token
            logp = F.log_softmax(logits[i, start - 1 : len(seq) - 1].float(), -1)  # [n_option_tokens, V]
            targets = torch.tensor(seq[len(p_ids) :], device=model.device)
            scores[i].append(logp.gather(-1, targets[:, None]).sum().item())
    return scores
