"""Scores as Super-NaturalInstructions computes them, plus continual-learning metrics.

Follows the official ``eval/automatic/evaluation.py`` of allenai/natural-instructions:

* ``normalize_answer``: lowercase, drop ASCII punctuation, collapse whitespace. The official script keeps
  articles ("adapted from Squad v1.1 evaluation, without removing the articles"); SQuAD-style article
  removal is available with ``remove_articles=True`` but is not the SNI default.
* exact match on normalised text; ROUGE-L F-measure from ``rouge_score`` with its default tokenizer and
  the Porter stemmer (``RougeScorer(['rougeL'], use_stemmer=True)``, the official English track). A
  different tokenizer (e.g. for other languages) can be passed in.
* each metric is the max over the references, averaged over instances, reported x100. The headline is
  the **instance mean** (every instance of every task weighs the same, as the official script averages);
  the task mean (the mean of per-task means) is reported beside it.
* the official cross-lingual track (``xlingual``) scores ROUGE-L on the tokens of GPT-2's byte-level BPE
  tokenizer (leading "Ġ" stripped, no stemming), because the English tokenizer drops every non-Latin
  character: an answer equal to a Chinese reference would score 0. :func:`xlingual_tokenizer` loads
  ``gpt2`` when it is available and falls back to the default model's byte-level BPE tokenizer (same
  scheme, a different vocabulary), saying which in its ``name``.
"""

from __future__ import annotations

import logging
import random
import re
import string
import unicodedata
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, Protocol

from rouge_score import rouge_scorer

from hyperadapt.errors import InputNotFound, UserError

log = logging.getLogger(__name__)
METRIC_LANGS: tuple[str, ...] = ("auto", "en", "xlingual")

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


class Tokenizer(Protocol):
    """Anything ``rouge_score`` accepts as a tokenizer (hashable: scorers are cached per tokenizer)."""

    def tokenize(self, text: str) -> list[str]: ...

    def __hash__(self) -> int: ...


class XLingualTokenizer:
    """The official SNI cross-lingual tokenizer: a byte-level BPE tokenizer's tokens, leading "Ġ" removed.

    ``hf_tokenizer``: a GPT-2-style (byte-level BPE) Hugging Face tokenizer; ``name`` says which.
    """

    def __init__(self, hf_tokenizer: Any, name: str) -> None:
        self.hf_tokenizer = hf_tokenizer
        self.name = name

    def tokenize(self, text: str) -> list[str]:
        return [t.lstrip("Ġ") for t in self.hf_tokenizer.tokenize(text)]


@lru_cache(maxsize=1)
def xlingual_tokenizer() -> XLingualTokenizer:
    """GPT-2's tokenizer as the official script uses it, else the default model's (offline machines).

    Raises ``FileNotFoundError`` when neither is available.
    """
    from transformers import AutoTokenizer

    try:
        return XLingualTokenizer(AutoTokenizer.from_pretrained("gpt2"), "gpt2")
    except (OSError, ValueError):
        pass
    from hyperadapt.models import default_model_dir

    path = default_model_dir()
    if not (path / "tokenizer.json").exists():
        raise InputNotFound(
            "cross-lingual ROUGE needs GPT-2's tokenizer (not reachable) or the default model's "
            f"(not converted yet at {path}: load the default model once)"
        )
    log.warning(
        "cross-lingual ROUGE: gpt2's tokenizer is not available offline; using the default "
        "model's byte-level BPE tokenizer instead (scores close to, not equal to, the official ones)"
    )
    return XLingualTokenizer(AutoTokenizer.from_pretrained(path), f"byte-level BPE of {path.name}")


def has_non_latin(text: str) -> bool:
    """True when ``text`` has a letter outside the Latin script (which English ROUGE would drop)."""
    return any(ch.isalpha() and not unicodedata.name(ch, "").startswith("LATIN") for ch in text)


def metric_tokenizer(metric_lang: str, output_language: str = "") -> Tokenizer | None:
    """The ROUGE tokenizer for a task: None (English, official default) or the cross-lingual one.

    ``metric_lang``: ``en``, ``xlingual``, or ``auto`` (cross-lingual when ``output_language`` is given
    and is not English). Raises ``ValueError`` for another value.
    """
    if metric_lang not in METRIC_LANGS:
        raise UserError(f"unknown metric language {metric_lang!r}: use one of {', '.join(METRIC_LANGS)}")
    english = not output_language or output_language.strip().lower() == "english"
    if metric_lang == "xlingual" or (metric_lang == "auto" and not english):
        return xlingual_tokenizer()
    return None


def normalize_answer(text: str, remove_articles: bool = False) -> str:
    """Lowercase, remove punctuation (and, if asked, the articles a/an/the), collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    if remove_articles:
        text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _check_references(references: Sequence[str]) -> None:
    if isinstance(references, str) or not references:
        raise ValueError(f"references must be a non-empty list of strings, got {references!r}")


def exact_match(prediction: str, references: Sequence[str], remove_articles: bool = False) -> float:
    """100 if the normalised prediction equals any normalised reference, else 0."""
    _check_references(references)
    pred = normalize_answer(prediction, remove_articles)
    return 100.0 if any(pred == normalize_answer(r, remove_articles) for r in references) else 0.0


@lru_cache(maxsize=8)
def _scorer(tokenizer: Tokenizer | None) -> rouge_scorer.RougeScorer:
    if tokenizer is None:
        return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=tokenizer)


def rouge_l(prediction: str, references: Sequence[str], tokenizer: Tokenizer | None = None) -> float:
    """ROUGE-L F-measure x100, max over references (default: rouge_score tokenizer with stemming)."""
    _check_references(references)
    scorer = _scorer(tokenizer)
    return 100.0 * max(float(scorer.score(target=r, prediction=prediction)["rougeL"].fmeasure) for r in references)


def accuracy(predictions: Sequence[Any], labels: Sequence[Any]) -> float:
    """Percentage of predictions equal to their label (e.g. options picked by rank classification)."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
    if not labels:
        raise ValueError("accuracy of no predictions")
    return 100.0 * sum(bool(p == y) for p, y in zip(predictions, labels, strict=True)) / len(labels)


def score_predictions(
    predictions: Sequence[str], references: Sequence[Sequence[str]], tokenizer: Tokenizer | None = None
) -> dict[str, float]:
    """Mean ``rougeL`` and ``em`` (x100) over instances, and ``n`` (the number of instances)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if not predictions:
        raise ValueError("no predictions to score")
    n = len(predictions)
    rouge = sum(rouge_l(p, refs, tokenizer) for p, refs in zip(predictions, references, strict=True))
    em = sum(exact_match(p, refs) for p, refs in zip(predictions, references, strict=True))
    return {"rougeL": rouge / n, "em": em / n, "n": n}


_KEYS = ("rougeL", "em")


def task_mean(scores: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Unweighted mean over tasks of their ``rougeL`` and ``em`` (each task weighs the same)."""
    return {key: sum(float(s[key]) for s in scores) / len(scores) for key in _KEYS}


def instance_mean(scores: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Mean over all instances of all tasks (the official SNI average): per-task means weighted by ``n``.

    Raises ``ValueError`` when a task has no positive ``n``.
    """
    counts = [int(s.get("n", 0)) for s in scores]
    if min(counts) < 1:
        raise ValueError("the instance mean needs every task's instance count 'n' (at least 1)")
    total = sum(counts)
    return {key: sum(float(s[key]) * n for s, n in zip(scores, counts, strict=True)) / total for key in _KEYS}


def aggregate(per_task: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The headline scores of a task set.

    ``rougeL`` and ``em`` are the **instance mean** (official SNI); ``task_mean`` holds the unweighted mean
    over tasks; ``n_tasks`` and ``n`` (total instances) count what was scored.
    """
    if not per_task:
        raise ValueError("no task scores to aggregate")
    scores = list(per_task.values())
    return {
        **instance_mean(scores),
        "aggregation": "instance_mean",
        "task_mean": task_mean(scores),
        "n_tasks": len(scores),
        "n": sum(int(s.get("n", 0)) for s in scores),
    }


def by_category(per_task: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per ``category`` (sorted): the instance mean of its tasks' ``rougeL``/``em`` (official), its task mean
    and ``n_tasks``."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for name, scores in per_task.items():
        if "category" not in scores:
            raise ValueError(f"scores of task {name!r} have no 'category'")
        groups.setdefault(str(scores["category"]), []).append(scores)
    return {
        cat: {**instance_mean(s), "task_mean": task_mean(s), "n_tasks": len(s), "n": sum(int(x.get("n", 0)) for x in s)}
        for cat, s in sorted(groups.items())
    }


def paired_bootstrap(
    a: Mapping[str, Mapping[str, Any]],
    b: Mapping[str, Mapping[str, Any]],
    key: str = "rougeL",
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """The instance-mean difference ``a − b`` of ``key`` and its bootstrap confidence interval over tasks.

    ``a`` and ``b`` map task name → per-task scores (``key`` and ``n``) of two methods on the *same*
    instances. Tasks are resampled with replacement (``resamples`` times, ``random.Random(seed)``); each
    resample's difference is the instance mean (per-task means weighted by ``n``) of ``a`` minus that of
    ``b``; the interval is its percentile interval at ``confidence``. Resampling tasks rather than
    instances keeps the answers of one task together (they share an instruction, so they are not
    independent). Returns ``diff``, ``low``, ``high``, ``confidence``, ``resamples``, ``n_tasks`` and the
    tasks where ``a`` is ahead / behind / equal (``wins``, ``losses``, ``ties``). Raises ``ValueError``
    when the two cover different tasks or different instance counts, or have no task.
    """
    if set(a) != set(b):
        raise ValueError(f"paired comparison over different tasks: {sorted(set(a) ^ set(b))[:5]}")
    if not a:
        raise ValueError("paired comparison of no tasks")
    names = sorted(a)
    uneven = [t for t in names if int(a[t].get("n", 0)) != int(b[t].get("n", 0)) or int(a[t].get("n", 0)) < 1]
    if uneven:
        raise ValueError(f"paired comparison needs the same positive instance count per task: {uneven[:5]}")
    n = [int(a[t]["n"]) for t in names]
    diffs = [float(a[t][key]) - float(b[t][key]) for t in names]
    diff, low, high = _task_bootstrap(diffs, n, resamples, confidence, seed)
    return {
        "key": key,
        "diff": diff,
        "low": low,
        "high": high,
        "confidence": confidence,
        "resamples": resamples,
        "n_tasks": len(names),
        "wins": sum(x > 0 for x in diffs),
        "losses": sum(x < 0 for x in diffs),
        "ties": sum(x == 0 for x in diffs),
    }


def bootstrap_mean(
    a: Mapping[str, Mapping[str, Any]],
    key: str = "rougeL",
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """The instance mean of ``key`` over the tasks of ``a`` (task name → per-task scores with ``key`` and ``n``)
    and its bootstrap interval over tasks, resampled as :func:`paired_bootstrap` resamples them (the interval of
    one method's score, e.g. for a plot; to compare two methods on the same instances use the paired test,
    whose interval is narrower). Returns ``mean``, ``low``, ``high``, ``confidence``, ``resamples``,
    ``n_tasks``. Raises ``ValueError`` for no task or a task without a positive ``n``."""
    if not a:
        raise ValueError("a bootstrap interval of no tasks")
    names = sorted(a)
    if any(int(a[t].get("n", 0)) < 1 for t in names):
        raise ValueError(
            f"every task needs a positive instance count 'n': {[t for t in names if int(a[t].get('n', 0)) < 1][:5]}"
        )
    n = [int(a[t]["n"]) for t in names]
    mean, low, high = _task_bootstrap([float(a[t][key]) for t in names], n, resamples, confidence, seed)
    return {
        "key": key,
        "mean": mean,
        "low": low,
        "high": high,
        "confidence": confidence,
        "resamples": resamples,
        "n_tasks": len(names),
    }


def _task_bootstrap(
    values: Sequence[float], n: Sequence[int], resamples: int, confidence: float, seed: int
) -> tuple[float, float, float]:
    """(instance mean, low, high): per-task ``values`` weighted by their instance counts ``n``; tasks resampled
    with replacement ``resamples`` times (``random.Random(seed)``), the percentile interval at ``confidence``."""
    weighted = [v * k for v, k in zip(values, n, strict=True)]

    def mean(idx: Sequence[int]) -> float:
        return sum(weighted[i] for i in idx) / sum(n[i] for i in idx)

    rng = random.Random(seed)
    count = len(values)
    stats = sorted(mean([rng.randrange(count) for _ in range(count)]) for _ in range(resamples))
    tail = (1.0 - confidence) / 2
    low, high = stats[int(tail * (resamples - 1))], stats[int(round((1.0 - tail) * (resamples - 1)))]
    return mean(range(count)), low, high


def _check_matrix(acc: Sequence[Sequence[float]]) -> int:
    size = len(acc)
    if size == 0:
        raise ValueError("the accuracy matrix is empty")
    for j, row in enumerate(acc):
        if len(row) != size:
            raise ValueError(
                f"the accuracy matrix must be square ({size} rows, so {size} entries a row): "
                f"row {j} has {len(row)} entries"
            )
    return size


def continual_metrics(
    acc: Sequence[Sequence[float]], zero_shot: Sequence[float] | None = None
) -> dict[str, float | None]:
    """AP, BWT, Forgetting and FWT from ``acc[j][i]``: the score on task i after training through task j.

    With T tasks (0-based): AP = mean_i a[T-1][i]; BWT = mean_{i<T-1} (a[T-1][i] - a[i][i]);
    Forgetting = mean_{i<T-1} (max_{l<T-1} a[l][i] - a[T-1][i]); FWT = mean_{i>0} (a[i-1][i] - zero_shot[i]).
    BWT, Forgetting and FWT are None for a single task; FWT is None without ``zero_shot``.
    """
    size = _check_matrix(acc)
    last = size - 1
    if zero_shot is not None and len(zero_shot) != size:
        raise ValueError(f"zero_shot has {len(zero_shot)} scores for {size} tasks")
    if size == 1:
        return {"AP": float(acc[0][0]), "BWT": None, "Forgetting": None, "FWT": None}
    earlier = range(last)
    bwt = sum(acc[last][i] - acc[i][i] for i in earlier) / last
    forgetting = sum(max(acc[j][i] for j in earlier) - acc[last][i] for i in earlier) / last
    fwt = None if zero_shot is None else sum(acc[i - 1][i] - zero_shot[i] for i in range(1, size)) / last
    return {"AP": sum(acc[last]) / size, "BWT": bwt, "Forgetting": forgetting, "FWT": fwt}


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """Area under the ROC curve of a score that should be higher for ``positives`` than for ``negatives``:
    the probability that a random positive outscores a random negative, ties counting half (the Mann-Whitney
    U statistic over n_pos · n_neg, from average ranks). 1.0: every positive above every negative; 0.5:
    chance. Raises ``ValueError`` when either side is empty or a score is NaN.
    """
    if not positives or not negatives:
        raise ValueError(
            f"AUROC needs scores on both sides, got {len(positives)} positive and {len(negatives)} negative"
        )
    values = [float(v) for v in positives] + [float(v) for v in negatives]
    if any(v != v for v in values):
        raise ValueError("AUROC of NaN scores is undefined")
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):  # a run of equal scores shares the mean of its 1-based ranks
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start : end + 1]:
            ranks[i] = (start + end) / 2 + 1
        start = end + 1
    n_pos, n_neg = len(positives), len(negatives)
    u = sum(ranks[:n_pos]) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


__all__ = [
    "METRIC_LANGS",
    "Tokenizer",
    "XLingualTokenizer",
    "accuracy",
    "aggregate",
    "auroc",
    "by_category",
    "continual_metrics",
    "exact_match",
    "has_non_latin",
    "instance_mean",
    "metric_tokenizer",
    "normalize_answer",
    "rouge_l",
    "score_predictions",
    "task_mean",
    "xlingual_tokenizer",
]
