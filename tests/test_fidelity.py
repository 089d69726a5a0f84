"""Real-task fidelity: the one truncation rule, rank mode under per-example conditioning, the official
instance mean, cross-lingual ROUGE, and training labels that are the tokens evaluation compares."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re

import pytest
import torch
from tests.core.core_helpers import random_bank

from hyperadapt.core import LoraConditioning, conditioned, inject
from hyperadapt.data.loaders import load_sni
from hyperadapt.data.prompts import (
    CUT_MARKER,
    PromptTooLong,
    TruncationStats,
    answer_ids,
    build_prompt,
    encode_instance,
    encode_tasks,
    fit_prompt,
)
from hyperadapt.data.schema import Example, Instance, Task
from hyperadapt.evaluation import metrics
from hyperadapt.evaluation.generate import option_logprobs
from hyperadapt.evaluation.harness import AnswerLog, EvalConfig, PromptMethod, Query, evaluate, make_queries
from hyperadapt.evaluation.metrics import XLingualTokenizer, aggregate, by_category, normalize_answer, rouge_l
from hyperadapt.methods.megan import MeganMethod
from hyperadapt.testing import random_tagi_method, tiny_model, tiny_tokenizer

WORDS = "the answer of a task is in the input word output that it for on with as are this be".split()


def words(n: int, seed: int) -> str:
    g = torch.Generator().manual_seed(seed)
    return " ".join(WORDS[i] for i in torch.randint(len(WORDS), (n,), generator=g).tolist())


def sni_record(seed: int, def_words: int, input_words: int) -> dict:
    """A task file in the official SNI schema with a long definition and long inputs; outputs with trailing
    spaces and newlines, and several references."""
    return {
        "Definition": [f"Task {seed}: {words(def_words, seed)}"],
        "Positive Examples": [
            {"input": words(60, seed + 1), "output": "yes", "explanation": "."},
            {"input": words(60, seed + 2), "output": "no", "explanation": "."},
        ],
        "Categories": ["Answer Verification" if seed % 2 else "Text Completion"],
        "Output_language": ["English"],
        "Instances": [
            {
                "id": f"t{seed}-{i}",
                "input": words(input_words * (i + 1), seed + 10 + i),
                "output": [f" answer {i} is this \n", f"answer {i}"],
            }
            for i in range(3)
        ],
    }


@pytest.fixture
def sni_dir(tmp_path):
    root = tmp_path / "sni"
    (root / "tasks").mkdir(parents=True)
    (root / "splits").mkdir()
    shapes = [(20, 10), (400, 10), (30, 500), (300, 300), (1200, 900)]  # definition words, input words
    names = []
    for seed, (d, n) in enumerate(shapes):
        name = f"task{seed:03d}_fixture"
        (root / "tasks" / f"{name}.json").write_text(json.dumps(sni_record(seed, d, n)))
        names.append(name)
    (root / "splits" / "train_tasks.txt").write_text("\n".join(names[:3]) + "\n")
    (root / "splits" / "test_tasks.txt").write_text("\n".join(names[3:]) + "\n")
    return root


# ------------------------------------------------------------------ 1. truncation keeps the condition


@pytest.mark.parametrize("setting", ["def", "def2pos"])
@pytest.mark.parametrize("budget", [128, 256, 384])
def test_training_sequences_keep_the_definition_and_the_whole_answer(sni_dir, budget, setting):
    tok = tiny_tokenizer()
    for task in load_sni(sni_dir, "all"):
        first_words = " ".join(task.instruction.split()[:3])
        for inst in task.instances:
            ids, labels = encode_instance(tok, task, inst, setting, budget)
            assert len(ids) <= budget
            text = tok.decode(ids)
            assert f"Definition: {first_words}" in text
            assert "<|im_start|>assistant\n" in text and "\n\nInput: " in text  # template kept
            target = [t for t in labels if t != -100]
            assert target == answer_ids(tok, inst.outputs[0])  # the whole answer, end of turn included


def test_evaluation_prompts_are_cut_by_the_same_rule(sni_dir):
    tok = tiny_tokenizer()
    task = load_sni(sni_dir, "all")[4]  # the longest definition and inputs
    inst = task.instances[2]
    ids, labels = encode_instance(tok, task, inst, "def", 256)
    n_answer = sum(t != -100 for t in labels)
    train_prompt = tok.decode(ids[: len(ids) - n_answer])
    eval_prompt = build_prompt(tok, task, inst, "def", max_tokens=256 - n_answer)
    assert train_prompt == eval_prompt
    model, _ = tiny_model()
    queries = make_queries(PromptMethod("zero-shot", model, tok), [task], "def", None, max_prompt_tokens=200)
    assert all(len(tok(q.prompt, add_special_tokens=False).input_ids) <= 200 for q in queries)


def test_the_cut_order_is_input_then_examples_then_definition():
    tok = tiny_tokenizer()
    definition, long_input = words(40, 1), words(300, 2)
    demos = [Example(words(80, 3), "yes"), Example(words(80, 4), "no")]
    full = fit_prompt(tok, definition, long_input, "def2pos", demos)
    n_full = len(tok(full, add_special_tokens=False).input_ids)
    stats = TruncationStats()
    # a budget that the examples fit in once the input is cut: only the input loses its tail
    cut_input = fit_prompt(tok, definition, long_input, "def2pos", demos, n_full - 200, stats)
    assert CUT_MARKER in cut_input.split("Input: ")[-1] and "Positive Example 2" in cut_input
    assert definition in cut_input
    # tighter: the examples go, the definition stays whole
    no_demos = fit_prompt(tok, definition, long_input, "def2pos", demos, 125, stats)
    assert "Positive Example" not in no_demos and "following example" not in no_demos and definition in no_demos
    # tighter still: the definition's tail goes, its first words stay
    tight = fit_prompt(tok, definition, long_input, "def2pos", demos, 75, stats)
    assert " ".join(definition.split()[:2]) in tight and definition not in tight
    assert stats.as_dict() == {"prompts": 3, "affected": 3, "input_cut": 3, "examples_dropped": 2, "definition_cut": 1}
    with pytest.raises(PromptTooLong, match="budget of 20 tokens cannot hold the chat template"):
        fit_prompt(tok, definition, long_input, "def", (), 20)


def test_one_warning_per_run_with_the_right_counts(sni_dir, caplog):
    tok = tiny_tokenizer()
    tasks = load_sni(sni_dir, "all")
    expected = TruncationStats()
    for task in tasks:
        for inst in task.instances:
            encode_instance(tok, task, inst, "def", 256, stats=expected)
    assert 0 < expected.affected < expected.prompts
    with caplog.at_level(logging.WARNING, logger="hyperadapt.data.prompts"):
        encode_tasks(tok, tasks, "def", 256)
    warnings = [r.getMessage() for r in caplog.records if "did not fit" in r.getMessage()]
    assert warnings == [
        f"{expected.affected} of {expected.prompts} training examples did not fit in "
        f"256 tokens and were cut: {expected.input_cut} lost the tail of their input, "
        f"{expected.examples_dropped} positive examples, {expected.definition_cut} the tail "
        "of their definition"
    ]


def test_evaluation_records_its_prompt_budget_and_cuts(sni_dir):
    model, tok = tiny_model()
    tasks = load_sni(sni_dir, "test")
    result = evaluate(PromptMethod("zero-shot", model, tok), tasks, EvalConfig(max_new_tokens=2, batch_size=8))
    assert result["truncation"]["max_prompt_tokens"] == 512 - 2  # the tiny model's context minus the answer
    assert result["truncation"]["affected"] > 0
    with pytest.raises(ValueError, match="exceed the model's context of 512"):
        evaluate(PromptMethod("zero-shot", model, tok), tasks, EvalConfig(max_prompt_tokens=600))


# ------------------------------------------------------------------ 2. rank mode for every conditioning


def _queries(tok, n_tasks: int = 3) -> list[Query]:
    tasks = [
        Task(
            f"t{i}",
            f"Answer for task {i}.",
            [Instance(f"{i}", words(5 + 3 * i, i), ("yes",))],
            options=["yes", "no", "the answer is"][: 2 + i % 2],
        )
        for i in range(n_tasks)
    ]
    return make_queries(PromptMethod("x", None, tok), tasks, "def", None)


class _Conditioned:
    """A method-shaped object whose conditioning is given per query by ``make(queries)``."""

    def __init__(self, model, tok, make):
        self.name, self.setting, self.model, self.tokenizer, self.make = "cond", "def", model, tok, make

    def conditioning(self, queries):
        return self.make(queries)


def _methods():
    model, tok = tiny_model()
    inject(model)
    bank = random_bank(model, 3)
    yield (
        "bank",
        _Conditioned(
            model, tok, lambda qs: conditioned(model, lora=bank.conditioning([int(q.task.name[1:]) for q in qs]))
        ),
    )
    torch.manual_seed(3)
    generated = {
        f"t{i}": {
            name: (a[i : i + 1] * 0 + torch.randn_like(a[i : i + 1]), torch.randn_like(b[i : i + 1]))
            for name, (a, b) in bank.factors([0, 1, 2]).items()
        }
        for i in range(3)
    }

    def per_example(qs):
        factors = {
            name: (
                torch.cat([generated[q.task.name][name][0] for q in qs]),
                torch.cat([generated[q.task.name][name][1] for q in qs]),
            )
            for name in bank.module_names
        }
        return conditioned(model, lora=LoraConditioning(factors, 0.5))

    yield "generated", _Conditioned(model, tok, per_example)
    m_model, m_tok = tiny_model()
    from tests.methods.test_megan import hypernet_for

    megan = MeganMethod(m_model, m_tok, hypernet_for(m_model, std=2.0))
    yield "beta", _Conditioned(m_model, m_tok, lambda qs: megan.condition([q.task.instruction for q in qs]))


@pytest.mark.parametrize("kind", ["bank", "generated", "beta"])
def test_rank_scores_under_per_example_conditioning_equal_scoring_each_alone(kind):
    method = dict(_methods())[kind]
    queries = _queries(method.tokenizer)
    options = [q.task.options for q in queries]
    with method.conditioning(queries):
        together = option_logprobs(method.model, method.tokenizer, [q.prompt for q in queries], options)
    for q, opts, row in zip(queries, options, together, strict=True):
        with method.conditioning([q]):
            alone = option_logprobs(method.model, method.tokenizer, [q.prompt], [opts])[0]
        assert row == pytest.approx(alone, abs=2e-5)
    plain = option_logprobs(method.model, method.tokenizer, [q.prompt for q in queries], options)
    flat = [v for row in together for v in row]
    assert [v for row in plain for v in row] != pytest.approx(flat, abs=1e-4)  # the conditioning is applied
    result = evaluate(method, [q.task for q in queries], EvalConfig(mode="rank", batch_size=3))
    assert len(result["predictions"]) == 3


def test_rank_mode_picks_the_forced_answer():
    model, tok = tiny_model()
    forced = tok("no", add_special_tokens=False).input_ids[0]

    def force(module, args, out):
        out = out.clone()
        out[..., forced] += 30.0  # this model always says "no"
        return out

    handle = model.lm_head.register_forward_hook(force)
    tasks = [
        Task(f"t{i}", "Answer yes or no.", [Instance(f"{i}", words(6, i), ("no",))], options=["yes", "no"])
        for i in range(4)
    ]
    try:
        result = evaluate(PromptMethod("zero-shot", model, tok), tasks, EvalConfig(mode="rank", batch_size=4))
    finally:
        handle.remove()
    assert [p["prediction"] for p in result["predictions"]] == ["no"] * 4
    assert result["mean"]["em"] == 100.0


def test_tagi_runs_in_rank_mode(jsonl_data, tmp_path):
    from tests.methods.test_tagi_pipeline import tiny_cfg

    from hyperadapt.data import load_tasks
    from hyperadapt.methods.tagi import LossConfig, PretrainConfig, train_tagi

    cfg = tiny_cfg(jsonl_data, pretrain=PretrainConfig(enabled=False), losses=LossConfig(kl_weight=0, align_weight=0))
    method = train_tagi(cfg, tmp_path / "run", model_and_tokenizer=tiny_model(), stop_at=1)
    tasks = [t for t in load_tasks(f"jsonl:{jsonl_data}", "test") if t.options]
    result = evaluate(method, tasks, EvalConfig(mode="rank", batch_size=4, limit=4))
    assert {p["prediction"] for p in result["predictions"]} <= {"yes", "no"} and result["mean"]["n"] == 4


# ------------------------------------------------------------------ 3. the official numbers


def test_the_headline_is_the_instance_mean_with_the_task_mean_beside_it():
    per_task = {
        "a": {"rougeL": 100.0, "em": 100.0, "n": 1, "category": "x"},
        "b": {"rougeL": 0.0, "em": 0.0, "n": 3, "category": "x"},
        "c": {"rougeL": 50.0, "em": 0.0, "n": 4, "category": "y"},
    }
    mean = aggregate(per_task)
    assert mean["rougeL"] == pytest.approx((100 + 0 + 50 * 4) / 8)  # 37.5: every instance weighs the same
    assert mean["em"] == pytest.approx(100 / 8)
    assert mean["task_mean"] == pytest.approx({"rougeL": 50.0, "em": 100 / 3})
    assert mean["aggregation"] == "instance_mean" and mean["n"] == 8 and mean["n_tasks"] == 3
    cats = by_category(per_task)
    assert cats["x"]["rougeL"] == pytest.approx(25.0) and cats["x"]["task_mean"]["rougeL"] == pytest.approx(50.0)
    assert cats["y"]["n"] == 4


@pytest.fixture
def tiny_xlingual(monkeypatch):
    tok = XLingualTokenizer(tiny_tokenizer(), "tiny byte-level BPE")
    monkeypatch.setattr(metrics, "xlingual_tokenizer", lambda: tok)
    return tok


def test_cross_lingual_rouge_scores_non_latin_answers(tiny_xlingual):
    assert rouge_l("北京是首都", ["北京是首都"]) == 0.0  # the English tokenizer drops every non-Latin character
    assert rouge_l("北京是首都", ["北京是首都"], tiny_xlingual) == pytest.approx(100.0)
    assert rouge_l("القاهرة", ["بغداد"], tiny_xlingual) < 100.0
    assert metrics.metric_tokenizer("auto", "Chinese") is tiny_xlingual
    assert metrics.metric_tokenizer("auto", "English") is None and metrics.metric_tokenizer("en", "Chinese") is None
    with pytest.raises(ValueError, match="unknown metric language 'fr'"):
        metrics.metric_tokenizer("fr")


def test_auto_metric_follows_the_output_language_and_english_on_non_latin_warns(tiny_xlingual, caplog):
    model, tok = tiny_model()
    zh = Task("zh", "Translate.", [Instance("1", "capital", ("北京",))], output_language="Chinese")
    ar = Task("ar", "Translate.", [Instance("1", "capital", ("بغداد",))])  # language unknown: English scoring
    with caplog.at_level(logging.WARNING):
        result = evaluate(PromptMethod("zero-shot", model, tok), [zh, ar], EvalConfig(max_new_tokens=2))
    assert result["tasks"]["zh"]["metric"] == "xlingual" and result["tasks"]["ar"]["metric"] == "en"
    assert result["metric"]["xlingual_tasks"] == ["zh"]
    assert any("non-Latin references (ar)" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ 4. train and answer on the same tokens


def test_training_labels_are_the_tokens_evaluation_compares(sni_dir):
    tok = tiny_tokenizer()
    task = load_sni(sni_dir, "all")[0]
    for inst in task.instances:
        ids, labels = encode_instance(tok, task, inst, "def", 384)
        target = [t for t in labels if t != -100]
        assert target[-1] == tok.convert_tokens_to_ids("<|im_end|>")
        # what generation would decode from exactly these tokens (generate_batch: skip specials, strip)
        decoded = tok.batch_decode([target], skip_special_tokens=True)[0].strip()
        assert decoded == inst.outputs[0].strip()  # no trailing space or newline is trained
        assert metrics.exact_match(decoded, list(inst.outputs)) == 100.0
        assert metrics.rouge_l(decoded, list(inst.outputs)) == pytest.approx(100.0)
        prompt_ids = ids[: len(ids) - len(target)]
        eval_prompt = build_prompt(tok, task, inst, "def", max_tokens=384 - len(target))
        assert prompt_ids == tok(eval_prompt, add_special_tokens=False).input_ids


# ------------------------------------------------------------------ resumable evaluation


def test_an_interrupted_evaluation_resumes_from_its_answer_log(jsonl_data, tmp_path):
    from hyperadapt.data import load_tasks

    model, tok = tiny_model()
    tasks = load_tasks(f"jsonl:{jsonl_data}", "test")
    cfg = EvalConfig(max_new_tokens=3, batch_size=4)
    full = evaluate(PromptMethod("zero-shot", model, tok), tasks, cfg)

    class Interrupted(PromptMethod):
        calls = 0

        def conditioning(self, queries):
            Interrupted.calls += 1
            if Interrupted.calls == 3:
                raise KeyboardInterrupt
            return contextlib.nullcontext()

    log_path = tmp_path / "answers.jsonl"
    with pytest.raises(KeyboardInterrupt):
        evaluate(Interrupted("zero-shot", model, tok), tasks, cfg, answers_path=log_path)
    assert len(log_path.read_text().splitlines()) == 1 + 8  # header + two batches of four
    calls = []

    class Counting(PromptMethod):
        def conditioning(self, queries):
            calls.append(len(queries))
            return contextlib.nullcontext()

    logged = AnswerLog.logged_seconds(log_path)  # the interrupted run's two batches
    assert logged > 0.0 and all("seconds" in json.loads(line) for line in log_path.read_text().splitlines()[1:])
    resumed = evaluate(Counting("zero-shot", model, tok), tasks, cfg, answers_path=log_path)
    assert sum(calls) == 12 - 8
    assert resumed["predictions"] == full["predictions"] and resumed["mean"] == full["mean"]
    assert resumed["seconds"] >= logged  # the time reported includes what the reused answers took
    with pytest.raises(ValueError, match="answers of another method or setting"):
        evaluate(PromptMethod("zero-shot", model, tok), tasks, EvalConfig(max_new_tokens=5), answers_path=log_path)
    assert AnswerLog(tmp_path / "new.jsonl", "f", {"model": "m", "weights": "0", "trained": None}).answers == {}


def test_an_answer_log_that_is_not_utf8_is_refused_naming_the_file(tmp_path):
    log_path = tmp_path / "r.answers.jsonl"
    log_path.write_bytes(b'\xff\xfe{"fingerprint": "f"}\n')
    with pytest.raises(ValueError) as err:
        AnswerLog(log_path, "f", {"model": "m", "weights": "0", "trained": None})
    assert f"{log_path} is not UTF-8 text (byte 0)" in str(err.value) and "delete it" in str(err.value)
    assert log_path.read_bytes().startswith(b"\xff\xfe")  # left as it was


def test_an_evaluation_resumed_with_another_model_answers_again(jsonl_data, tmp_path, caplog):
    # issue 33: the log's fingerprint held no model identity, so a zero-shot evaluation interrupted with one
    # --model and run again with another reused the first model's answers under the second one's name
    from hyperadapt.data import load_tasks

    tasks = load_tasks(f"jsonl:{jsonl_data}", "test")
    cfg = EvalConfig(max_new_tokens=3, batch_size=4)
    first, second = tiny_model(seed=0), tiny_model(seed=1)  # the same name and config, other weights
    log_path = tmp_path / "zero-shot.test.answers.jsonl"
    answered = []

    class Counting(PromptMethod):
        def conditioning(self, queries):
            answered.extend(queries)
            return contextlib.nullcontext()

    evaluate(Counting("zero-shot", *first), tasks, cfg, answers_path=log_path)  # stopped before its results
    assert len(answered) == 12
    own = evaluate(PromptMethod("zero-shot", *second), tasks, cfg, answers_path=tmp_path / "own.answers.jsonl")
    answered.clear()
    with caplog.at_level(logging.WARNING):
        resumed = evaluate(Counting("zero-shot", *second), tasks, cfg, answers_path=log_path)
    assert len(answered) == 12 and resumed["predictions"] == own["predictions"]  # none of the first model's
    assert "holds answers of another model (model '(built in code)', weights " in caplog.text
    caplog.clear()
    # wrapping the model for conditioning adds no weight: its identity stays
    from hyperadapt.core import inject
    from hyperadapt.evaluation.harness import answer_identity

    plain = answer_identity(PromptMethod("zero-shot", *tiny_model(seed=0)))
    wrapped = tiny_model(seed=0)
    inject(wrapped[0])
    assert answer_identity(PromptMethod("zero-shot", *wrapped)) == plain
    # a trained method's own weights count too: the same name, info and base model, another hypernetwork
    torch.manual_seed(0)
    trained = random_tagi_method(*tiny_model(seed=0))
    evaluate(trained, tasks, cfg, answers_path=tmp_path / "tagi.answers.jsonl")
    torch.manual_seed(0)
    retrained = random_tagi_method(*tiny_model(seed=0))
    calls = []
    conditioning = retrained.conditioning
    retrained.conditioning = lambda queries: calls.append(queries) or conditioning(queries)
    evaluate(retrained, tasks, cfg, answers_path=tmp_path / "tagi.answers.jsonl")  # the same weights: reused
    assert calls == []
    with torch.no_grad():
        next(iter(retrained.hypernet.parameters())).add_(1.0)
    with caplog.at_level(logging.WARNING):
        evaluate(retrained, tasks, cfg, answers_path=tmp_path / "tagi.answers.jsonl")
    assert calls and re.search(r"weights \w+, trained weights \w+\), not of this one", caplog.text)
    # a log written before logs recorded the identity is answered again, with a warning
    caplog.clear()
    old = log_path.read_text().splitlines()
    header = json.loads(old[0])
    log_path.write_text("\n".join([json.dumps({"fingerprint": header["fingerprint"]}), *old[1:]]) + "\n")
    answered.clear()
    with caplog.at_level(logging.WARNING):
        again = evaluate(Counting("zero-shot", *second), tasks, cfg, answers_path=log_path)
    assert "written before answer logs recorded whose answers they are" in caplog.text and len(answered) == 12
    assert again["predictions"] == own["predictions"]
    assert json.loads(log_path.read_text().splitlines()[0]) == header  # the header of this model, again


@pytest.mark.parametrize(
    "older, newer, changed",
    [
        # a renamed key (targets -> target_modules)
        (
            {"rank": 8, "targets": ["q_proj"]},
            {"rank": 8, "target_modules": ["q_proj"]},
            {"rank": 8, "target_modules": ["v_proj"]},
        ),
        # renamed and added at once (teachers.shared at its default reads as before; turned on it does not)
        (
            {"rank": 8, "targets": ["q_proj"], "teachers": {"rank": 8}},
            {"rank": 8, "target_modules": ["q_proj"], "teachers": {"rank": 8, "shared": False}},
            {"rank": 8, "target_modules": ["q_proj"], "teachers": {"rank": 8, "shared": True}},
        ),
        # activation checkpointing, added to every training section (off: the same answers)
        (
            {"train": {"steps": 4}, "teachers": {"train": {"steps": 2}}},
            {
                "train": {"steps": 4, "gradient_checkpointing": False},
                "teachers": {"train": {"steps": 2, "gradient_checkpointing": False}},
            },
            {
                "train": {"steps": 5, "gradient_checkpointing": False},
                "teachers": {"train": {"steps": 2, "gradient_checkpointing": False}},
            },
        ),
    ],
)
def test_answers_logged_before_a_key_rename_or_addition_are_reused(tmp_path, jsonl_data, older, newer, changed):
    from hyperadapt.data import load_tasks

    model, tok = tiny_model()
    tasks = load_tasks(f"jsonl:{jsonl_data}", "test")
    cfg = EvalConfig(max_new_tokens=3, batch_size=4)
    log_path = tmp_path / "answers.jsonl"
    before = evaluate(PromptMethod("m", model, tok, info=older), tasks, cfg, answers_path=log_path)  # as saved then
    calls = []

    class Counting(PromptMethod):
        def conditioning(self, queries):
            calls.append(len(queries))
            return contextlib.nullcontext()

    after = evaluate(Counting("m", model, tok, info=newer), tasks, cfg, answers_path=log_path)
    assert calls == [] and after["predictions"] == before["predictions"]
    with pytest.raises(ValueError, match="answers of another method or setting"):
        evaluate(PromptMethod("m", model, tok, info=changed), tasks, cfg, answers_path=log_path)


def test_an_answer_log_is_rescored_without_the_model_on_fewer_instances(tmp_path, jsonl_data):
    from hyperadapt.data import load_tasks
    from hyperadapt.evaluation.harness import score_answer_log

    model, tok = tiny_model()
    tasks = load_tasks(f"jsonl:{jsonl_data}", "test")
    log_path = tmp_path / "answers.jsonl"
    full = evaluate(
        PromptMethod("m", model, tok), tasks, EvalConfig(max_new_tokens=3, batch_size=4), answers_path=log_path
    )
    again = score_answer_log(log_path, tasks)
    for name, scores in full["tasks"].items():
        assert {k: again[name][k] for k in ("rougeL", "em", "n")} == {k: scores[k] for k in ("rougeL", "em", "n")}
    first = score_answer_log(log_path, tasks, limit=1)
    by_id = {(p["task"], p["id"]): p for p in full["predictions"]}
    for task in tasks:
        pred = by_id[(task.name, task.instances[0].id)]
        assert first[task.name]["n"] == 1
        assert first[task.name]["em"] == 100.0 * (
            normalize_answer(pred["prediction"]) in {normalize_answer(r) for r in pred["references"]}
        )
    bigger = [t.with_instances([*t.instances, dataclasses.replace(t.instances[0], id="new")]) for t in tasks]
    with pytest.raises(ValueError, match="has no answer for .* instance new"):
        score_answer_log(log_path, bigger)
    with pytest.raises(FileNotFoundError, match="no answer log"):
        score_answer_log(tmp_path / "missing.jsonl", tasks)
