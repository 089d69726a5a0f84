"""Metrics against values computed by hand (ROUGE-L via the longest common subsequence)."""

from __future__ import annotations

import pytest

from hyperadapt.evaluation.metrics import (
    accuracy,
    aggregate,
    by_category,
    continual_metrics,
    exact_match,
    normalize_answer,
    paired_bootstrap,
    rouge_l,
    score_predictions,
)


def test_normalize_answer() -> None:
    assert normalize_answer("  The  CAT, sat!\n") == "the cat sat"
    assert normalize_answer("U.S.A.") == "usa"
    assert normalize_answer("  ") == ""
    # SNI keeps articles; SQuAD-style removal is opt-in
    assert normalize_answer("An apple, the pear and a plum", remove_articles=True) == "apple pear and plum"
    assert normalize_answer("Theatre and another", remove_articles=True) == "theatre and another"


def test_exact_match() -> None:
    assert exact_match("The Cat.", ["the cat"]) == 100.0
    assert exact_match("the  cat!!", ["THE CAT"]) == 100.0
    assert exact_match("cat", ["the cat"]) == 0.0  # the official SNI metric does not drop articles
    assert exact_match("cat", ["the cat"], remove_articles=True) == 100.0
    assert exact_match("dog", ["cat", "Dog!"]) == 100.0  # max over references
    assert exact_match("dog", ["cat", "hot dog"]) == 0.0
    with pytest.raises(ValueError, match="non-empty list"):
        exact_match("x", [])
    with pytest.raises(ValueError, match="non-empty list"):
        exact_match("x", "x")


def test_rouge_l_by_hand() -> None:
    # pred: the cat sat on the mat (6) / ref: the cat on a mat (5); LCS = the cat on mat (4)
    # P = 4/6, R = 4/5, F = 2PR/(P+R) = 8/11
    assert rouge_l("the cat sat on the mat", ["the cat on a mat"]) == pytest.approx(800 / 11)
    # a b c d / a c e: LCS = a c; P = 1/2, R = 2/3, F = 4/7
    assert rouge_l("a b c d", ["a c e"]) == pytest.approx(400 / 7)
    # order matters: mat on cat / cat on mat has an LCS of one token, so P = R = F = 1/3
    assert rouge_l("mat on cat", ["cat on mat"]) == pytest.approx(100 / 3)
    assert rouge_l("dog", ["cat"]) == 0.0
    assert rouge_l("", ["cat"]) == 0.0


def test_rouge_l_max_over_references_case_punctuation_and_stemming() -> None:
    assert rouge_l("the cat sat on the mat", ["dog", "the cat on a mat"]) == pytest.approx(800 / 11)
    assert rouge_l("the cat sat on the mat", ["the cat on a mat", "The cat sat on the mat."]) == 100.0
    assert rouge_l("Hello, World!", ["hello world"]) == 100.0
    assert rouge_l("cats running", ["cat runs"]) == 100.0  # Porter stemmer, as in the official script


class CaseSensitiveSplit:
    def tokenize(self, text: str) -> list[str]:
        return text.split()


def test_rouge_l_pluggable_tokenizer() -> None:
    tokenizer = CaseSensitiveSplit()
    # Cat sat / cat sat: only "sat" matches, P = R = F = 1/2
    assert rouge_l("Cat sat", ["cat sat"], tokenizer=tokenizer) == pytest.approx(50.0)
    assert rouge_l("Cat sat", ["cat sat"]) == 100.0


def test_accuracy() -> None:
    assert accuracy(["a", "b", "c", "d"], ["a", "x", "c", "y"]) == 50.0
    assert accuracy([1, 2], [1, 2]) == 100.0
    with pytest.raises(ValueError, match="2 predictions but 1 labels"):
        accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError):
        accuracy([], [])


def test_score_predictions() -> None:
    scores = score_predictions(["the cat sat on the mat", "Dog."], [["the cat on a mat"], ["dog", "puppy"]])
    assert scores["rougeL"] == pytest.approx((800 / 11 + 100) / 2)
    assert scores["em"] == pytest.approx(50.0)
    assert scores["n"] == 2
    with pytest.raises(ValueError, match="1 predictions but 2 reference lists"):
        score_predictions(["a"], [["a"], ["b"]])
    with pytest.raises(ValueError, match="no predictions"):
        score_predictions([], [])


PER_TASK = {
    "t1": {"rougeL": 80.0, "em": 50.0, "n": 10, "category": "QA"},
    "t2": {"rougeL": 40.0, "em": 0.0, "n": 30, "category": "QA"},
    "t3": {"rougeL": 30.0, "em": 10.0, "n": 5, "category": "Summarization"},
}


def test_aggregate_headline_is_the_instance_mean_with_the_task_mean_beside_it() -> None:
    mean = aggregate(PER_TASK)
    assert mean["rougeL"] == pytest.approx((80 * 10 + 40 * 30 + 30 * 5) / 45)  # 47.78, not 50
    assert mean["em"] == pytest.approx((50 * 10 + 10 * 5) / 45)
    assert mean["task_mean"] == pytest.approx({"rougeL": 50.0, "em": 20.0})
    assert (mean["n_tasks"], mean["n"]) == (3, 45)
    with pytest.raises(ValueError):
        aggregate({})


def test_by_category() -> None:
    result = by_category(PER_TASK)
    assert list(result) == ["QA", "Summarization"]
    assert result["QA"]["rougeL"] == pytest.approx((80 * 10 + 40 * 30) / 40)
    assert result["QA"]["em"] == pytest.approx(50 * 10 / 40)
    assert result["QA"]["task_mean"] == pytest.approx({"rougeL": 60.0, "em": 25.0})
    assert (result["QA"]["n_tasks"], result["QA"]["n"]) == (2, 40)
    assert result["Summarization"]["rougeL"] == pytest.approx(30.0)
    with pytest.raises(ValueError, match="'t9'"):
        by_category({"t9": {"rougeL": 1.0, "em": 0.0}})


def test_continual_metrics_by_hand() -> None:
    acc = [
        [80.0, 10.0, 20.0],
        [85.0, 70.0, 30.0],
        [50.0, 40.0, 90.0],
    ]
    zero_shot = [5.0, 4.0, 25.0]
    result = continual_metrics(acc, zero_shot)
    assert result["AP"] == pytest.approx(60.0)  # (50 + 40 + 90) / 3
    assert result["BWT"] == pytest.approx(-30.0)  # ((50 - 80) + (40 - 70)) / 2
    assert result["Forgetting"] == pytest.approx(32.5)  # ((85 - 50) + (70 - 40)) / 2
    assert result["FWT"] == pytest.approx(5.5)  # ((10 - 4) + (30 - 25)) / 2
    assert continual_metrics(acc)["FWT"] is None


def test_forgetting_takes_the_max_over_all_earlier_rows() -> None:
    # per the formula max_{l<T-1} a[l][i]: for task 1 that includes row 0 (before task 1 was trained)
    acc = [[50.0, 90.0, 0.0], [50.0, 60.0, 0.0], [50.0, 30.0, 0.0]]
    assert continual_metrics(acc)["Forgetting"] == pytest.approx(30.0)  # (0 + (90 - 30)) / 2


def test_continual_metrics_single_task_and_errors() -> None:
    assert continual_metrics([[42.0]], [1.0]) == {"AP": 42.0, "BWT": None, "Forgetting": None, "FWT": None}
    with pytest.raises(ValueError, match="square.*row 1 has 1 entries"):
        continual_metrics([[1.0, 2.0], [3.0]])
    with pytest.raises(ValueError, match="square"):
        continual_metrics([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    with pytest.raises(ValueError, match="empty"):
        continual_metrics([])
    with pytest.raises(ValueError, match="zero_shot has 1 scores for 2 tasks"):
        continual_metrics([[1.0, 2.0], [3.0, 4.0]], [0.0])


def test_paired_bootstrap_difference_interval_and_errors() -> None:
    a = {
        "t1": {"rougeL": 50.0, "em": 10.0, "n": 30},
        "t2": {"rougeL": 20.0, "em": 0.0, "n": 10},
        "t3": {"rougeL": 40.0, "em": 5.0, "n": 20},
    }
    shifted = {t: {**v, "rougeL": v["rougeL"] - 5.0} for t, v in a.items()}
    same = paired_bootstrap(a, a)
    assert same["diff"] == same["low"] == same["high"] == 0.0 and same["ties"] == 3
    up = paired_bootstrap(a, shifted, resamples=200)
    assert up["diff"] == pytest.approx(5.0) and up["low"] == pytest.approx(5.0) and up["high"] == pytest.approx(5.0)
    assert (up["wins"], up["losses"], up["n_tasks"]) == (3, 0, 3)
    # the difference is the instance mean's: t1 (30 instances) +6, t2 (10) −6, t3 (20) 0 -> (180 - 60) / 60 = 2
    b = {"t1": {**a["t1"], "rougeL": 44.0}, "t2": {**a["t2"], "rougeL": 26.0}, "t3": a["t3"]}
    mixed = paired_bootstrap(a, b, resamples=2000, seed=1)
    assert mixed["diff"] == pytest.approx(2.0) and mixed["low"] < 2.0 < mixed["high"]
    assert mixed["low"] >= -6.0 and mixed["high"] <= 6.0
    assert (mixed["wins"], mixed["losses"], mixed["ties"]) == (1, 1, 1)
    assert paired_bootstrap(a, b, resamples=2000, seed=1) == mixed  # seeded: the same interval again
    with pytest.raises(ValueError, match="different tasks"):
        paired_bootstrap(a, {"t1": a["t1"]})
    with pytest.raises(ValueError, match="same positive instance count"):
        paired_bootstrap(a, {**a, "t2": {**a["t2"], "n": 5}})
