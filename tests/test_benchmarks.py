"""The benchmarks: their own logic (equal budgets across methods, the instruction-sensitivity variants) and how
they run (`hyperadapt bench NAME`, `python -m hyperadapt.benchmarks.NAME`, the command their results record)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re

import pytest
import torch

from hyperadapt.benchmarks import megan, tagi
from hyperadapt.config import load_config
from hyperadapt.data import load_tasks
from hyperadapt.errors import UserError
from hyperadapt.methods.tagi.instructions import random_instructions, with_instructions


def test_megan_benchmark_gives_every_method_the_same_number_of_training_examples():
    args = megan.parse_args(["--steps", "120", "--set", "train.lr=0.001"])
    cfgs = {name: megan.method_config(name, args) for name in megan.CONFIGS}
    for name in ("multitask-lora", "metaicl", "megan", "megan-def"):
        assert cfgs[name].train.steps == 120 and cfgs[name].train.batch_size == 8
    reptile = cfgs["reptile"]
    assert reptile.train.steps * reptile.inner_steps * reptile.support_size == 120 * 8
    # --set reaches the two MeGan configs only
    assert cfgs["megan"].train.lr == cfgs["megan-def"].train.lr == 0.001
    assert cfgs["metaicl"].train.lr == cfgs["multitask-lora"].train.lr == 0.001  # their files' own lr
    assert not cfgs["megan"].condition_in_prompt and cfgs["megan-def"].condition_in_prompt


def test_megan_benchmark_quick_budget():
    args = megan.parse_args(["--quick"])
    cfg = megan.method_config("megan", args)
    assert cfg.train.steps == 4 and cfg.train.save_every == 0


def test_tagi_sensitivity_variants_change_every_instruction():
    tasks = load_tasks("synthetic", "unseen")
    shuffled = tagi.shuffled(tasks, seed=0)
    assert sorted(t.instruction for t in shuffled) == sorted(t.instruction for t in tasks)
    assert all(a.instruction != b.instruction for a, b in zip(tasks, shuffled, strict=True))
    assert [t.name for t in shuffled] == [t.name for t in tasks]  # same tasks, same instances
    noise = random_instructions(tasks, seed=0)
    for a, b in zip(tasks, noise, strict=True):
        assert a.instruction != b.instruction
        assert [len(w) for w in a.instruction.split()] == [len(w) for w in b.instruction.split()]
        assert b.positive_examples == [] and b.paraphrases == []
    assert with_instructions(tasks, "shuffled", 0) == shuffled and with_instructions(tasks, "own") is tasks
    with pytest.raises(UserError, match="need at least two tasks to swap, got 1"):
        with_instructions(tasks[:1], "shuffled")


def test_result_table_lists_methods_and_sensitivity_variants(tmp_path):
    from hyperadapt.benchmarks.common import save

    mean = {"mean": {"rougeL": 41.234, "em": 10.0}}
    result = {
        "command": "hyperadapt bench tagi",
        "results": {"tagi": {"unseen": mean}},
        "sensitivity": {"tagi": {"shuffled": {"unseen": {"mean": {"rougeL": 12.5, "em": 0.0}}}}},
        "train_s": {"tagi": 61.7},
    }
    save(result, str(tmp_path / "r.json"))
    table = (tmp_path / "r.md").read_text()
    assert "| tagi | 41.23 / 10.00 | 62 |" in table
    assert "| tagi (shuffled instruction) | 12.50 / 0.00 |  |" in table
    # a run resumed in a later session: its optimiser steps' seconds over every session get their own column
    save({**result, "train_steps_s": {"tagi": 5400.4}}, str(tmp_path / "resumed.json"))
    resumed = (tmp_path / "resumed.md").read_text()
    assert "| method | unseen ROUGE-L / EM | train s | steps s, all sessions |" in resumed
    assert "| tagi | 41.23 / 10.00 | 62 | 5400 |" in resumed


def test_tagi_baselines_get_tagis_total_budget(tmp_path):
    from hyperadapt.methods.tagi import TagiConfig

    shipped = load_config(TagiConfig, "configs/tagi_sni.yaml")  # SNI-CPU v1: 2,400 examples in all
    assert tagi.tagi_examples(shipped) == {"teachers": 800, "stage1": 0, "stage2": 1600, "total": 2400}
    cfg = load_config(
        TagiConfig,
        "configs/tagi_sni.yaml",
        ["teachers.train.steps=100", "pretrain.enabled=true", "pretrain.train.steps=50", "train.steps=150"],
    )
    assert tagi.tagi_examples(cfg) == {"teachers": 800, "stage1": 400, "stage2": 1200, "total": 2400}
    assert tagi.baseline_train(cfg, "total").steps == 300 and tagi.baseline_train(cfg, "stage2").steps == 150
    # reused teachers are spent on this TAGI too: their own record counts, else the config's teachers.train
    no_record = load_config(TagiConfig, "configs/tagi_sni.yaml", [f"teachers.path={tmp_path / 'none'}"])
    assert tagi.tagi_examples(no_record) == tagi.tagi_examples(shipped)
    (tmp_path / "teachers.json").write_text(json.dumps({"groups": [], "train": {"steps": 30, "batch_size": 4}}))
    reused = load_config(TagiConfig, "configs/tagi_sni.yaml", [f"teachers.path={tmp_path}"])
    assert tagi.tagi_examples(reused) == {"teachers": 120, "stage1": 0, "stage2": 1600, "total": 1720}
    assert tagi.baseline_train(reused, "total").steps == 215  # ceil(1720 / 8)


def test_every_benchmark_is_a_listed_module_of_the_installed_package_with_a_main():
    import importlib
    import pkgutil

    import hyperadapt.benchmarks as package

    modules = {m.name for m in pkgutil.iter_modules(package.__path__)} - {"common"}
    assert modules == set(package.BENCHMARKS)
    for name in package.BENCHMARKS:
        assert callable(importlib.import_module(f"hyperadapt.benchmarks.{name}").main), name


def test_results_record_the_bench_command():
    from hyperadapt.benchmarks import command

    assert command("tagi", ["--quick", "--set", "lr=0.1"]) == "hyperadapt bench tagi --quick --set lr=0.1"
    assert command("megan", ["--out", "my results/m.json"]) == "hyperadapt bench megan --out 'my results/m.json'"


def test_results_record_where_and_when_they_ran(tmp_path, monkeypatch):
    import re
    import subprocess

    from hyperadapt import benchmarks

    info = benchmarks.machine()
    assert {"started_utc", "commit", "hyperadapt", "torch", "threads", "cpus", "load_average"} <= set(info)
    assert info["commit"] is None or re.fullmatch(r"[0-9a-f]{7,}(\+dirty)?", info["commit"]), info["commit"]
    assert info["started_utc"].endswith("+00:00")

    # outside a git checkout of this source (a wheel in site-packages) there is no commit to report, and no error
    def no_git(*_a: object, **_k: object) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert benchmarks.source_commit() is None
    monkeypatch.setattr(
        subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 128, "", "fatal: not a git repository")
    )
    assert benchmarks.source_commit() is None


def test_bench_passes_options_and_help_to_the_benchmark_and_python_m_runs_it_too():
    import subprocess
    import sys

    from tests.cli_helpers import runner

    from hyperadapt.cli import app

    result = runner.invoke(app, ["bench", "truncation", "--help"])
    assert result.exit_code == 0 and "usage: hyperadapt bench truncation" in result.output
    assert "--budgets" in result.output
    run = subprocess.run(
        [sys.executable, "-m", "hyperadapt.benchmarks.truncation", "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: hyperadapt bench truncation" in run.stdout


def test_tagi_efficiency_spreads_answers_over_tasks_within_the_prompt_budget():
    from hyperadapt.evaluation.harness import EvalConfig, PromptMethod
    from hyperadapt.testing import tiny_model

    tasks = load_tasks("synthetic", "unseen")
    chosen = tagi.spread(tasks, 15)
    assert [len(t.instances) for t in chosen] == [2] * 5 + [1] * 5  # round-robin over the 10 tasks
    assert all(c.instances == t.instances[: len(c.instances)] for c, t in zip(chosen, tasks, strict=False))
    model, tok = tiny_model()
    pair = {"a": PromptMethod("a", model, tok), "b": PromptMethod("b", model, tok, setting="none")}
    out = tagi.efficiency(pair, tasks, 6, EvalConfig(max_new_tokens=2, max_prompt_tokens=48))
    assert out["tasks"] == 6 and out["instances"] == 6
    assert out["a"]["flops"] > out["b"]["flops"] > 0  # the instruction in the prompt costs
    assert out["a"]["prompt_tokens"] <= 6 * 48 and out["ratio"]["of"] == ["a", "b"]
    assert out["a"]["setup_flops"] == 0 and out["a"]["amortized"]["20"]["flops"] == out["a"]["flops"]  # no caches

    @dataclasses.dataclass
    class Cached(PromptMethod):  # pays a forward per task the first time it sees it, like generating an adapter
        seen: set = dataclasses.field(default_factory=set)

        def clear_cache(self):
            self.seen.clear()

        def conditioning(self, queries):
            for q in queries:
                if q.task.name not in self.seen:
                    self.seen.add(q.task.name)
                    self.model(torch.ones(1, 16, dtype=torch.long))
            return contextlib.nullcontext()

    pair = {"cached": Cached("cached", model, tok, setting="none"), "b": pair["b"]}
    out = tagi.efficiency(pair, tasks, 12, EvalConfig(max_new_tokens=2, max_prompt_tokens=48), per_task=(1, 20))
    cached, plain = out["cached"], out["b"]
    assert out["tasks"] == 10 and cached["answer_flops"] == plain["flops"]  # warm: the same answers as b
    assert cached["setup_flops"] == cached["flops"] - cached["answer_flops"] > 0
    per_task = cached["setup_flops"] / 10
    assert cached["amortized"]["1"]["flops"] == pytest.approx(cached["answer_flops"] + 12 * per_task)
    assert cached["amortized"]["20"]["flops"] == pytest.approx(cached["answer_flops"] + 12 / 20 * per_task)
    ratio = out["ratio"]
    assert ratio["amortized"]["1"]["flops"] > ratio["flops"] > ratio["amortized"]["20"]["flops"] > 1.0
    assert ratio["answers_only"]["flops"] == 1.0
    with pytest.raises(ValueError, match="answers per task must be at least 1"):
        tagi.efficiency(pair, tasks, 12, EvalConfig(max_new_tokens=2), per_task=(0,))


def test_tagi_collect_merges_rows_of_separate_runs_with_their_commands(tmp_path):
    import json

    def row(r: float, n: int) -> dict:
        return {"test": {"mean": {"rougeL": r, "em": 1.0, "n": n}, "tasks": {}}}

    a = {
        "command": "hyperadapt bench tagi --methods tagi",
        "results": {"tagi": row(30.0, 1240)},
        "train_s": {"tagi": 9},
        "train_steps_s": {"tagi": 7000.0},
        "sensitivity": {"tagi": {"shuffled": row(20.0, 620)}},
    }
    b = {
        "command": "hyperadapt bench tagi --methods multitask-lora tagi-no-fusion --no-eval",
        "results": {},
        "efficiency": {
            "instances": 100,
            "ratio": {"flops": 0.4, "wall": 0.5, "of": ["tagi-no-fusion", "multitask-lora"]},
        },
    }
    c = {
        "command": "hyperadapt bench tagi --methods multitask-lora",
        "results": {"multitask-lora": row(28.5, 1240)},
        "sensitivity": {"tagi": {"random": row(18.0, 620)}},
    }
    paths = []
    for name, part in {"a": a, "b": b, "c": c}.items():
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(part))
    out = tmp_path / "table.json"
    merged = tagi.main(["--collect", *map(str, paths), "--out", str(out), "--runs", str(tmp_path / "runs")])
    assert list(merged["results"]) == ["tagi", "multitask-lora"]
    assert merged["row_commands"]["multitask-lora"] == c["command"] and merged["efficiency"] == b["efficiency"]
    assert set(merged["sensitivity"]["tagi"]) == {"shuffled", "random"}
    table = out.with_suffix(".md").read_text()
    assert "| tagi | 30.00 / 1.00 (1240) | 9 | 7000 |" in table
    assert "| multitask-lora | 28.50 / 1.00 (1240) |  |  |" in table  # c recorded no seconds
    assert "| tagi (random instruction) | 18.00 / 1.00 (620) |" in table
    assert "tagi-no-fusion / multitask-lora FLOPs 0.400, wall time 0.500" in table
    # PATH=LABEL keeps a second variant of one method as its own row (unlabelled, it would replace the first)
    variant = tmp_path / "variant=D.json"  # a '=' in a file that exists stays part of its path
    variant.write_text(json.dumps({**a, "results": {"tagi": row(33.0, 1240)}}))
    both = tagi.collect([str(paths[0]), f"{variant}=shared teachers", str(variant)])
    assert both["results"]["tagi (shared teachers)"]["test"]["mean"]["rougeL"] == 33.0
    assert both["results"]["tagi"]["test"]["mean"]["rougeL"] == 33.0  # the later unlabelled file replaced a's row
    assert set(both["sensitivity"]) == {"tagi", "tagi (shared teachers)"}
    assert both["train_s"]["tagi (shared teachers)"] == 9
    assert both["train_steps_s"] == {"tagi": 7000.0, "tagi (shared teachers)": 7000.0}
    assert [c["label"] for c in both["collected_from"]] == [None, "shared teachers", None]
    assert tagi.table_means(merged)["ROUGE-L"] == {
        "tagi": 30.0,
        "multitask-lora": 28.5,
        "tagi (shuffled)": 20.0,
        "tagi (random)": 18.0,
    }
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert merged["comparisons"] == {
        "reference": "multitask-lora",
        "method": tagi.comparisons(merged)["method"],
        "rows": {},
    }  # these rows hold no per-task scores: nothing to pair
    tasks = {f"t{i}": {"rougeL": 30.0 + i, "em": 1.0, "n": 20} for i in range(4)}
    paired = {
        "results": {
            "multitask-lora": {"test": {"tasks": tasks}},
            "tagi": {"test": {"tasks": {t: {**v, "rougeL": v["rougeL"] + 2} for t, v in tasks.items()}}},
            "tagi-no-kl": {"test": {"tasks": {t: {**v, "n": 10} for t, v in tasks.items()}}},
        }
    }
    comp = tagi.comparisons(paired)
    assert list(comp["rows"]) == ["tagi"]  # the row on 10 instances per task is not paired with 20
    assert comp["rows"]["tagi"]["test"]["rougeL"]["diff"] == pytest.approx(2.0)
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="bad.json must hold a JSON object, got list"):
        tagi.main(["--collect", str(tmp_path / "bad.json"), "--out", str(out), "--runs", str(tmp_path / "runs")])
    (tmp_path / "bad.json").write_text('{"tasks": {}}')
    with pytest.raises(ValueError, match="not a result of hyperadapt bench tagi"):
        tagi.main(["--collect", str(tmp_path / "bad.json"), "--out", str(out), "--runs", str(tmp_path / "runs")])


def test_tagi_collect_by_budget_pairs_each_row_with_the_lora_of_its_budget_and_plots_the_curves(tmp_path):
    def scored(offset: float) -> dict:
        return {
            "test": {
                "mean": {"rougeL": 0.0, "em": 0.0},
                "tasks": {f"t{i}": {"rougeL": 10.0 * i + offset, "em": 1.0, "n": 20} for i in range(5)},
            }
        }

    one = {"command": "v1", "results": {"multitask-lora": scored(0.0), "tagi": scored(1.0)}}
    four = {"command": "x4", "results": {"multitask-lora": scored(5.0), "tagi": scored(9.0)}}
    paths = [tmp_path / "v1.json", tmp_path / "x4.json"]
    for path, part in zip(paths, (one, four), strict=True):
        path.write_text(json.dumps(part))
    out = tmp_path / "budget.json"
    merged = tagi.main(
        ["--collect", f"{paths[0]}=1x", f"{paths[1]}=4x", "--out", str(out), "--runs", str(tmp_path / "r")]
    )
    rows = merged["comparisons"]["rows"]
    # each budget's TAGI against the LoRA trained on the same budget, not against another budget's
    assert rows["tagi (1x)"]["test"]["against"] == "multitask-lora (1x)"
    assert rows["tagi (1x)"]["test"]["rougeL"]["diff"] == pytest.approx(1.0)
    assert rows["tagi (4x)"]["test"]["against"] == "multitask-lora (4x)"
    assert rows["tagi (4x)"]["test"]["rougeL"]["diff"] == pytest.approx(4.0)
    assert "multitask-lora (4x)" not in rows  # the reference of its own budget
    curves = merged["budget_curves"]
    assert [p["x"] for p in curves["tagi"]] == [1.0, 4.0]
    assert [p["mean"] for p in curves["tagi"]] == pytest.approx([21.0, 29.0])  # instance means over the 5 tasks
    assert all(p["low"] < p["mean"] < p["high"] for p in curves["tagi"] + curves["multitask-lora"])
    assert out.with_suffix(".budget.png").read_bytes()[:4] == b"\x89PNG"
    assert "| tagi (4x) vs multitask-lora (4x) | test | +4.00 [+4.00, +4.00] |" in out.with_suffix(".md").read_text()
    # what 4x bought each method: its 4x row paired with its own 1x row, task by task
    gains = merged["budget_gains"]["rows"]
    assert set(gains) == {"tagi (4x)", "multitask-lora (4x)"}
    assert gains["tagi (4x)"]["test"]["against"] == "tagi (1x)"
    assert gains["tagi (4x)"]["test"]["rougeL"]["diff"] == pytest.approx(8.0)
    assert gains["multitask-lora (4x)"]["test"]["rougeL"]["diff"] == pytest.approx(5.0)
    assert gains["tagi (4x)"]["test"]["rougeL"]["wins"] == 5
    assert "| tagi (4x) vs tagi (1x) | test | +8.00 [+8.00, +8.00] |" in out.with_suffix(".md").read_text()
    unlabelled = tagi.collect([str(paths[0])])
    assert tagi.budget_curves(unlabelled) == {} and tagi.budget_gains(unlabelled) is None
    # a label that ends in "x" but is no budget ("max") is a plain label: no budget pairs, no error
    other = tagi.collect([f"{paths[0]}=max", f"{paths[1]}=x"])
    assert tagi.budget_curves(other) == {} and tagi.budget_gains(other) is None
    # a method at one budget only (Hypter at 1x) has nothing to pair
    one["results"]["hypter"] = scored(2.0)
    paths[0].write_text(json.dumps(one))
    assert "hypter (1x)" not in tagi.budget_gains(tagi.collect([f"{paths[0]}=1x", f"{paths[1]}=4x"]))["rows"]


def test_bootstrap_mean_is_the_instance_mean_with_an_interval_over_tasks():
    from hyperadapt.evaluation.metrics import bootstrap_mean, paired_bootstrap

    tasks = {"a": {"rougeL": 10.0, "n": 30}, "b": {"rougeL": 40.0, "n": 10}, "c": {"rougeL": 20.0, "n": 20}}
    got = bootstrap_mean(tasks, resamples=2000)
    assert got["mean"] == pytest.approx((300 + 400 + 400) / 60)  # weighted by instances, not a task mean
    assert 10.0 <= got["low"] < got["mean"] < got["high"] <= 40.0 and got["n_tasks"] == 3
    flat = bootstrap_mean({t: {"rougeL": 7.0, "n": 5} for t in "xyz"})
    assert flat["low"] == flat["mean"] == flat["high"] == 7.0
    zero = {t: {**v, "rougeL": 0.0} for t, v in tasks.items()}  # the paired test against zeros: the same interval
    paired = paired_bootstrap(tasks, zero, resamples=2000)
    assert (paired["diff"], paired["low"], paired["high"]) == (got["mean"], got["low"], got["high"])
    with pytest.raises(ValueError, match="no tasks"):
        bootstrap_mean({})
    with pytest.raises(ValueError, match="positive instance count"):
        bootstrap_mean({"a": {"rougeL": 1.0, "n": 0}})


def test_budget_curves_plot_refuses_an_interval_that_misses_its_mean(tmp_path):
    from hyperadapt.report.plots import plot_budget_curves

    with pytest.raises(ValueError, match="low <= mean <= high"):
        plot_budget_curves({"tagi": [{"x": 1, "mean": 5.0, "low": 6.0, "high": 7.0}]}, tmp_path / "p.png", "x", "y")
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_budget_curves({}, tmp_path / "p.png", "x", "y")


def test_tagi_ablation_rows_are_scored_under_their_own_names(tmp_path, jsonl_data, monkeypatch):
    """An ablation is a TAGI run (its run.json says tagi) but its answers and row are its own: TAGI's answer
    log must not receive them (it refused them, which stopped the SNI ablations once)."""
    import json

    from hyperadapt.testing import tiny_model

    monkeypatch.setattr(tagi, "fresh", lambda cfg: tiny_model())
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        f"model: tiny\ndata: jsonl:{jsonl_data}\nrank: 2\nmax_instruction_tokens: 16\n"
        "hypernet: {hidden: 16, blocks: 1}\nteachers: {rank: 2}\n"
        "pretrain: {a_tokens: 8, b_tokens: 4, c_tokens: 4}\n"
    )
    runs = tmp_path / "runs"
    result = tagi.main(
        [
            "--config",
            str(cfg),
            "--quick",
            "--eval-splits",
            "test",
            "--methods",
            "tagi-no-kl",
            "--no-sensitivity",
            "--efficiency-instances",
            "0",
            "--max-new-tokens",
            "2",
            "--runs",
            str(runs),
            "--out",
            str(tmp_path / "out.json"),
        ]
    )
    assert list(result["results"]) == ["tagi", "tagi-no-kl"]  # TAGI first: the ablation reuses its teachers
    assert sorted(p.name for p in (runs / "answers").iterdir()) == [
        "tagi-no-kl.test.answers.jsonl",
        "tagi.test.answers.jsonl",
    ]
    assert json.loads((runs / "tagi-no-kl" / "run.json").read_text())["method"] == "tagi"


def test_hypter_gets_the_shuffled_instruction_rows_of_every_hypernetwork(tmp_path, jsonl_data, monkeypatch):
    """Hypter-style generates its adapter from the instruction too: the benchmark asks it, as it asks TAGI,
    whether another task's instruction changes its answers; the run's training seconds are recorded."""
    from hyperadapt.testing import tiny_model

    monkeypatch.setattr(tagi, "fresh", lambda cfg: tiny_model())
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        f"model: tiny\ndata: jsonl:{jsonl_data}\nrank: 2\nmax_instruction_tokens: 16\n"
        "hypernet: {hidden: 16, blocks: 1}\nteachers: {rank: 2}\n"
    )
    runs = tmp_path / "runs"
    args = ["--config", str(cfg), "--quick", "--eval-splits", "test", "--methods", "hypter"]
    args += ["--efficiency-instances", "0", "--max-new-tokens", "2", "--runs", str(runs)]
    result = tagi.main([*args, "--out", str(tmp_path / "out.json")])
    assert set(result["sensitivity"]) == {"hypter"}
    assert set(result["sensitivity"]["hypter"]) == {"shuffled", "random"}
    assert sorted(p.name for p in (runs / "answers" / "shuffled").iterdir()) == ["hypter.test.answers.jsonl"]
    assert result["train_steps_s"]["hypter"] > 0.0  # from the run's last checkpoint
    # asked again (as benchmarks/sni_v2_followup.sh asks the lanes' finished 4x run): loaded, not trained again,
    # and every answer read back from the logs
    again = tagi.main([*args, "--out", str(tmp_path / "again.json")])
    assert again["train_steps_s"] == result["train_steps_s"]
    assert again["sensitivity"] == result["sensitivity"] and again["results"] == result["results"]


def test_tagi_collect_refuses_damaged_rows_and_never_writes_over_what_it_collects(tmp_path):
    """A collected file whose rows are not this benchmark's is one user error; --out (or its table or plots) may not
    be a collected file, nor a folder where a plot goes; either way nothing is written."""
    good = {"command": "c", "results": {"tagi": {"test": {"mean": {"rougeL": 1.0, "em": 0.0}, "tasks": {}}}}}
    part = tmp_path / "part.json"
    part.write_text(json.dumps(good))
    runs = ["--runs", str(tmp_path / "runs")]
    bad_rows = {
        "[1]": "row 'tagi' is not an object of splits (got list)",
        '{"test": 5}': "row 'tagi' on 'test' has no 'mean' scores",
        '{"test": {"mean": {"rougeL": "x", "em": 0}, "tasks": {}}}': "its mean has no rougeL and em scores",
        '{"test": {"mean": {"rougeL": 1, "em": 0}, "tasks": {"a": {"rougeL": 1, "em": 0, "n": null}}}}': (
            "its task 'a' has n None, not a positive instance count"
        ),
    }
    for row, expected in bad_rows.items():
        (tmp_path / "bad.json").write_text(f'{{"results": {{"tagi": {row}}}}}')
        with pytest.raises(UserError, match=re.escape(expected)):
            tagi.main(["--collect", str(tmp_path / "bad.json"), "--out", str(tmp_path / "o.json"), *runs])
    (tmp_path / "bad.json").write_text(json.dumps({**good, "train_s": [1]}))
    with pytest.raises(UserError, match=re.escape("its 'train_s' is not an object (got list)")):
        tagi.main(["--collect", str(tmp_path / "bad.json"), "--out", str(tmp_path / "o.json"), *runs])
    with pytest.raises(UserError, match="would overwrite a result it collects"):
        tagi.main(["--collect", str(part), "--out", str(part), *runs])
    assert json.loads(part.read_text()) == good
    (tmp_path / "o.png").mkdir()
    with pytest.raises(UserError, match="o.png is a folder"):
        tagi.main(["--collect", str(part), "--out", str(tmp_path / "o.json"), *runs])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "o.png", "part.json"]
