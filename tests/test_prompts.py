import pytest

from hyperadapt.data.prompts import build_prompt, encode_example, encode_tasks, user_message
from hyperadapt.data.schema import Example, Instance, Task, TaskDataError


def _task():
    return Task("t", "Say it back.", [Instance("1", "abc", ("abc",))],
                positive_examples=[Example("x", "x"), Example("y", "y")], paraphrases=["Echo the input."])


def test_settings():
    t = _task()
    assert user_message(t.instruction, "abc", "none") == "abc"
    assert "Say it back." in user_message(t.instruction, "abc", "def")
    two = user_message(t.instruction, "abc", "def2pos", t.positive_examples)
    assert "Positive Example 2\nInput: y\nOutput: y" in two and two.endswith("Input: abc")
    with pytest.raises(ValueError, match="unknown prompt setting 'fewshot'"):
        user_message("i", "x", "fewshot")


def test_chat_template_and_masking(tiny):
    _, tok = tiny
    prompt = build_prompt(tok, _task(), _task().instances[0], "def")
    assert prompt.startswith("<|im_start|>user\n") and prompt.endswith("<|im_start|>assistant\n")
    ids, labels = encode_example(tok, "abc", 512, instruction="Say it back.", input_text="abc", setting="def")
    answer = [t for t in labels if t != -100]
    assert tok.decode(answer) == "abc<|im_end|>"
    assert len(ids) == len(labels) and tok.decode(ids[: len(ids) - len(answer)]) == prompt


def test_encode_tasks_uses_paraphrases(tiny):
    _, tok = tiny
    t = _task().with_instances([Instance(str(i), "abc", ("abc",)) for i in range(20)])
    texts = {tok.decode(e.input_ids) for e in encode_tasks(tok, [t], "def", 256, seed=0)}
    assert any("Echo the input." in x for x in texts) and any("Say it back." in x for x in texts)


def test_schema_errors():
    with pytest.raises(TaskDataError, match="'instances' is empty"):
        Task("t", "do", [])
    with pytest.raises(TaskDataError, match="'instruction'"):
        Task("t", "  ", [Instance("1", "a", ("b",))])
    with pytest.raises(TaskDataError, match="no outputs"):
        Instance("1", "a", ())
    with pytest.raises(TaskDataError, match="condition_type"):
        Task("t", "do", [Instance("1", "a", ("b",))], condition_type="mood")
