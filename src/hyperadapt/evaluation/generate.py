"""Batched greedy generation and rank classification on a (possibly conditioned) causal LM."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt.models import end_of_turn_ids


def encode_left_padded(tokenizer: Tokenizer, prompts: list[str], device: torch.device) -> dict:
    """Tokenise ``prompts`` (already rendered, special tokens included) with left padding."""
    if not prompts:
        raise ValueError("no prompts to encode")
    ids = [tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=device)
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
    return {"input_ids": input_ids, "attention_mask": mask}


@torch.inference_mode()
def generate_batch(
    model: PreTrainedModel, tokenizer: Tokenizer, prompts: list[str], max_new_tokens: int = 32
) -> list[str]:
    """Greedy answers to ``prompts`` (one batch), stopping at the end of the assistant's turn."""
    batch = encode_left_padded(tokenizer, prompts, model.device)
    out = model.generate(
        **batch,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=end_of_turn_ids(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
    )
    new_tokens = out[:, batch["input_ids"].shape[1]:]  # [B, new]
    return [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


@torch.inference_mode()
def option_logprobs(
    model: PreTrainedModel, tokenizer: Tokenizer, prompts: list[str], options: list[list[str]]
) -> list[list[float]]:
    """Sum of token log-probabilities of each option (plus end of turn) after its prompt."""
    eot = end_of_turn_ids(tokenizer)[:1]
    pairs = [(p, o) for p, opts in zip(prompts, options, strict=True) for o in opts]
    seqs, starts = [], []
    for prompt, option in pairs:
        p_ids = tokenizer(prompt, add_special_tokens=False).input_ids
        o_ids = tokenizer(option, add_special_tokens=False).input_ids + eot
        seqs.append(p_ids + o_ids)
        starts.append(len(p_ids))
    width = max(len(s) for s in seqs)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=model.device)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=model.device)
    logp = F.log_softmax(model(input_ids=input_ids, attention_mask=mask).logits.float(), -1)  # [N, T, V]
    scores = []
    for i, (seq, start) in enumerate(zip(seqs, starts, strict=True)):
        targets = torch.tensor(seq[start:], device=model.device)
        scores.append(logp[i, start - 1 : len(seq) - 1].gather(-1, targets[:, None]).sum().item())
    flat = iter(scores)
    return [[next(flat) for _ in opts] for opts in options]
