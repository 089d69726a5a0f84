"""Zero-shot: the frozen base model with the instruction in the prompt."""

from __future__ import annotations

from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt.evaluation.harness import PromptMethod
from hyperadapt.models import load_base_model

METHOD = "zero-shot"


def zero_shot(
    model: str = "default", setting: str = "def", model_and_tokenizer: tuple[PreTrainedModel, Tokenizer] | None = None
) -> PromptMethod:
    """The base model answering from its prompt alone."""
    base, tokenizer = model_and_tokenizer or load_base_model(model)
    return PromptMethod(METHOD, base, tokenizer, setting)
