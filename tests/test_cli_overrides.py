"""``--set`` reads the same through every command and every benchmark: one syntax (``config.expand_set_args``),
one parser of its items (``config.parse_override``)."""

from __future__ import annotations

import dataclasses

import pytest
from tests.cli_helpers import runner

import hyperadapt.config
from hyperadapt.cli import app
from hyperadapt.config import Word, expand_set_args, parse_override


class Captured(Exception):
    """Stops a command once its config is built (the CLI reports it as a bug: exit code 1)."""


@pytest.fixture
def built(monkeypatch):
    """The TagiConfig that a command builds from its config file and overrides, without training anything."""
    from hyperadapt.methods.tagi import TagiConfig

    configs = []
    original = hyperadapt.config.from_dict

    def capture(cls, data, *args, **kwargs):
        cfg = original(cls, data, *args, **kwargs)
        if cls is TagiConfig:
            configs.append(cfg)
            raise Captured
        return cfg

    monkeypatch.setattr(hyperadapt.config, "from_dict", capture)
    return configs


def _through(command: list[str], overrides: list[str], built: list) -> tuple[dict | None, str]:
    """The config ``command --set ...`` builds (as a dict), or None and the one ``error:`` line it ends with."""
    result = runner.invoke(app, [*command, "--set", *overrides])
    if built:
        return dataclasses.asdict(built.pop()), ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    return None, errors[0]


CASES = [
    ["train.lr=5e-4", "rank=4"],  # numbers: 5e-4 is a float, 4 an int
    ["target_modules=[q_proj, v_proj, o_proj]", "encoder_layers=[-1]"],  # lists
    ["teachers.path="],  # empty: null
    ["train.precision=no"],  # YAML's `no`: the text "no" for a setting typed str, the same everywhere
    ["unseen_key=1"],  # an unknown key: the same error
]


@pytest.mark.parametrize("overrides", CASES, ids=lambda o: " ".join(o))
def test_set_gives_the_same_values_through_train_and_bench(overrides, built, tmp_path):
    config = tmp_path / "tagi.yaml"
    config.write_text("rank: 8\n")
    train = ["train", "tagi", "--config", str(config), "--out", str(tmp_path / "run")]
    bench = [
        "bench",
        "tagi",
        "--config",
        str(config),
        "--runs",
        str(tmp_path / "runs"),
        "--out",
        str(tmp_path / "bench.json"),
    ]
    through_train, through_bench = _through(train, overrides, built), _through(bench, overrides, built)
    assert through_train == through_bench
    values, error = through_train
    if values is not None:
        for item in overrides:
            *section, leaf = parse_override(item)[0]
            node = values
            for part in section:
                node = node[part]
            parsed = parse_override(item)[1]  # a Word (YAML's yes/no/empty) is its text or its value, by the type
            assert node[leaf] in ((parsed.text, parsed.value) if isinstance(parsed, Word) else (parsed,)), item
    if overrides == CASES[0]:
        assert values["train"]["lr"] == 5e-4 and isinstance(values["rank"], int) and values["rank"] == 4
    if overrides == CASES[2]:
        assert values["teachers"]["path"] is None
    if overrides == CASES[3]:
        assert values["train"]["precision"] == "no"
    if overrides == CASES[-1]:
        assert "unseen_key" in error


def test_several_items_may_follow_one_set_and_a_bare_one_is_refused_the_same_way(tmp_path):
    assert expand_set_args(["--set", "a=1", "b=2", "--out", "x", "c=3"]) == [
        "--set",
        "a=1",
        "--set",
        "b=2",
        "--out",
        "x",
        "c=3",
    ]
    assert expand_set_args(["--set=a=1", "b=", "pos"]) == ["--set=a=1", "--set", "b=", "pos"]
    train = runner.invoke(app, ["train", "tagi", "--out", str(tmp_path / "r"), "rank=4"])
    bench = runner.invoke(app, ["bench", "tagi", "--out", str(tmp_path / "b.json"), "rank=4"])
    for result in (train, bench):
        assert result.exit_code == 2 and "--set KEY=VALUE (--set rank=4)" in result.output, result.output


def test_a_malformed_item_fails_before_any_work_with_one_message(tmp_path):
    train = runner.invoke(app, ["train", "tagi", "--set", "rank", "--out", str(tmp_path / "r")])
    bench = runner.invoke(app, ["bench", "tagi", "--set", "rank", "--out", str(tmp_path / "b.json")])
    message = "override 'rank' must look like key=value"
    assert train.exit_code == bench.exit_code == 2
    assert message in train.output and message in bench.output
    assert not (tmp_path / "r").exists() and not (tmp_path / "b.json").exists()
