import json

import pytest
import torch

from hyperadapt.data import load_tasks
from hyperadapt.evaluation.generate import generate_batch, option_logprobs
from hyperadapt.evaluation.harness import EvalConfig, PromptMethod, evaluate, write_results


def test_batched_left_padded_generation_matches_one_by_one(tiny):
    model, tok = tiny
    prompts = [
        "<|im_start|>user\nab<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>user\na much longer prompt 1 2 3<|im_end|>\n<|im_start|>assistant\n",
    ]
    together = generate_batch(model, tok, prompts, max_new_tokens=6)
    alone = [generate_batch(model, tok, [p], max_new_tokens=6)[0] for p in prompts]
    assert together == alone


def test_option_logprobs_equal_the_sum_of_token_logprobs(tiny):
    model, tok = tiny
    scores = option_logprobs(model, tok, ["x", "y"], [["a", "b c"], ["d"]])
    assert [len(s) for s in scores] == [2, 1]
    ids = tok("y", add_special_tokens=False).input_ids
    target = tok("d", add_special_tokens=False).input_ids + [tok.convert_tokens_to_ids("<|im_end|>")]
    logp = model(input_ids=torch.tensor([ids + target])).logits.log_softmax(-1)[0]
    expected = sum(logp[len(ids) - 1 + i, t].item() for i, t in enumerate(target))
    assert scores[1][0] == pytest.approx(expected, abs=1e-5)


def test_evaluate_writes_the_documented_schema(tiny, jsonl_data, tmp_path):
    model, tok = tiny
    method = PromptMethod("zero-shot", model, tok)
    tasks = load_tasks(f"jsonl:{jsonl_data}", "test")
    result = evaluate(
        method, tasks, EvalConfig(limit=3, max_new_tokens=4, batch_size=4), model="tiny", data="jsonl", split="test"
    )
    path = write_results(result, tmp_path / "out.json")
    saved = json.loads(path.read_text())
    assert {"method", "model", "data", "setting", "tasks", "mean", "seconds", "config"} <= set(saved)
    assert set(saved["tasks"]) == {"copy", "yesno"}
    assert all({"rougeL", "em", "n", "category"} <= set(v) for v in saved["tasks"].values())
    assert saved["tasks"]["copy"]["n"] == 3
    assert "accuracy" in saved["tasks"]["yesno"] and "accuracy" not in saved["tasks"]["copy"]
    assert len(path.with_suffix(".predictions.jsonl").read_text().splitlines()) == 6
    table = path.with_suffix(".md").read_text()
    assert "| **instance mean** (official) |  | 6 |" in table and "| task mean |" in table


def test_rank_mode_picks_an_option(tiny, jsonl_data):
    model, tok = tiny
    tasks = [t for t in load_tasks(f"jsonl:{jsonl_data}", "test") if t.name == "yesno"]
    result = evaluate(PromptMethod("zero-shot", model, tok), tasks, EvalConfig(mode="rank"))
    assert {p["prediction"] for p in result["predictions"]} <= {"yes", "no"}
    no_options = load_tasks(f"jsonl:{jsonl_data}", "test")
    with pytest.raises(ValueError, match="has no options"):
        evaluate(PromptMethod("zero-shot", model, tok), no_options, EvalConfig(mode="rank"))


def test_eval_config_errors():
    with pytest.raises(ValueError, match="unknown eval mode"):
        EvalConfig(mode="beam")
    with pytest.raises(ValueError, match="unknown prompt setting"):
        EvalConfig(setting="zero")


def test_every_markdown_table_has_as_many_columns_in_each_line():
    from hyperadapt.benchmarks.common import markdown
    from hyperadapt.report.tables import markdown_table

    table = markdown_table(["a", "b"], [[1, "x|y\nz"], ["", None]])
    assert table == "| a | b |\n|---|---|\n| 1 | x\\|y z |\n|  | None |"
    # a benchmark whose rows have no split (only training seconds) gave a header of three cells over two
    table = [
        line
        for line in markdown({"results": {"tagi": {}}, "train_s": {"tagi": 12.3}}).splitlines()
        if line.startswith("|")
    ]
    assert table == ["| method | train s |", "|---|---|", "| tagi | 12 |"]


def test_a_method_of_ones_own_answers_free_form_inputs_through_the_one_path():
    import contextlib

    from hyperadapt.evaluation.generate import generate_batch
    from hyperadapt.methods.inputs import answer_texts
    from hyperadapt.testing import tiny_model

    class Own:  # the harness's Method protocol, not registered
        name, setting = "my-own-method", "def"

        def __init__(self) -> None:
            self.model, self.tokenizer = tiny_model()

        def conditioning(self, queries):
            return contextlib.nullcontext()

    method = Own()
    got = answer_texts(method, ["a b", "c"], ["Copy the input."], max_new_tokens=3)
    assert [a.route for a in got] == ["condition: Copy the input."] * 2
    from hyperadapt.data.prompts import render, user_message

    prompts = [render(method.tokenizer, user_message("Copy the input.", x, "def")) for x in ("a b", "c")]
    assert [a.answer for a in got] == generate_batch(method.model, method.tokenizer, prompts, 3)
