"""The demo's report: figures, ``report.md`` and a self-contained ``report.html`` from ``results.json``.

Everything here reads the results dict only (no model), so a report can be redrawn from a results file
and a partial run (some stages failed or not run yet) still gets a report for what exists::

    write_demo_report(json.loads(Path("results/demo/results.json").read_text()), Path("results/demo"))
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hyperadapt.report.document import Block, Code, Figure, Heading, Para, Table, write_report

TITLE = "hyperadapt demo: TAGI, SwitchCIT and MeGan on the synthetic suite"


def _f(v: float | None) -> str:
    """One decimal; a value that rounds to zero is 0.0, never −0.0."""
    if v is None:
        return "–"
    text = f"{v:.1f}"
    return "0.0" if text == "-0.0" else text


def _d(a: float, b: float) -> str:
    """``a − b`` with its sign."""
    d = a - b
    return f"+{d:.1f}" if d >= 0 else f"−{-d:.1f}"


def _rl(score: Mapping[str, Any]) -> float:
    return float(score["mean"]["rougeL"])


def _cell(score: Mapping[str, Any] | None) -> str:
    return "–" if score is None else f"{score['mean']['rougeL']:.1f} / {score['mean']['em']:.1f}"


def _missing(failed: Mapping[str, str], names: list[str], stages: Mapping[str, Any]) -> list[Block]:
    out: list[Block] = []
    for n in names:
        if n not in stages:
            why = f"failed: `{failed[n]}`" if n in failed else "has not run"
            out.append(Para(f"**Stage `{n}` {why}**; its numbers are missing below."))
    return out


def _beats(a: float, b: float, plural: bool = False) -> str:
    """The verb for ``a`` against ``b`` (higher is better)."""
    if a == b:
        return "tie" if plural else "ties"
    if a > b:
        return "beat" if plural else "beats"
    return "lose to" if plural else "loses to"


# -- sections ----------------------------------------------------------------------------------------------


def header(meta: Mapping[str, Any], failed: Mapping[str, str]) -> list[Block]:
    b = meta["budget"]
    blocks: list[Block] = [
        Heading(1, TITLE),
        Para(
            f"Model `{meta['model']}` ({meta.get('model_path', '')}), fp32 on the CPU, one torch thread per "
            f"process; data: the embedded synthetic suite (34 seen training tasks, 10 unseen tasks); seed "
            f"{b['seed']}; greedy decoding, at most {b['max_new_tokens']} new tokens. Scores are ROUGE-L and "
            f"exact match (EM) in %, as Super-NaturalInstructions computes them. Every number below was "
            f"measured by this command (wall times are in `timings.json`, not here, so that the same seed "
            f"gives the same report):"
        ),
        Code(meta["command"], "bash"),
        Table(
            ["what", "budget"],
            [
                ["TAGI teachers (34 LoRAs, one bank)", f"{b['teacher_steps']} steps × batch {b['batch_size']}"],
                [
                    "TAGI stage 2, Hypter-style, multi-task LoRA",
                    f"{b['train_steps']} steps × batch {b['batch_size']} each, lr {b['lr']}",
                ],
                [
                    "SwitchCIT / sequential",
                    f"{b['stream_tasks']} tasks × {b['stream_steps']} steps × batch {b['batch_size']}",
                ],
                ["MeGan", f"{b['megan_steps']} steps × batch {b['batch_size']}"],
                [
                    "test instances",
                    f"{b['limit']} per unseen task, {b['seen_limit']} per seen task, "
                    f"{b['stream_limit']} per stream task",
                ],
            ],
        ),
        Para(
            "Every LoRA here is rank 8 on `q_proj` and `v_proj` (TAGI's targets). These budgets fit 2 CPU "
            "cores; docs/RESULTS.md has the same comparisons at 2–5× the budget."
        ),
    ]
    if failed:
        blocks.append(
            Para(
                "**Stages that did not finish:** "
                + "; ".join(f"`{n}`: {e}" for n, e in failed.items())
                + ". Rerun the same command to retry them; finished stages are kept."
            )
        )
    return blocks


def tagi_section(
    stages: Mapping[str, Any], failed: Mapping[str, str], meta: Mapping[str, Any], fig: Path
) -> list[Block]:
    from hyperadapt.report.plots import plot_grouped_bars

    blocks: list[Block] = [Heading(2, "TAGI: adapters generated from instructions of unseen tasks")]
    blocks += _missing(failed, ["zero-shot", "hypter", "tagi", "multitask-lora"], stages)
    rows = {
        "zero-shot (instruction in prompt)": stages.get("zero-shot", {}).get("unseen"),
        "Hypter-style (CE only, no fusion)": stages.get("hypter", {}).get("unseen"),
        "TAGI": stages.get("tagi", {}).get("unseen"),
        "TAGI, shuffled instructions": stages.get("tagi", {}).get("shuffled"),
        "multi-task LoRA (instruction in prompt)": stages.get("multitask-lora", {}).get("unseen"),
    }
    rows = {k: v for k, v in rows.items() if v is not None}
    if not rows:
        return blocks
    n = next(iter(rows.values()))["n"]
    blocks.append(
        Table(["method", f"unseen tasks ROUGE-L / EM ({n} answers)"], [[k, _cell(v)] for k, v in rows.items()])
    )
    plot_grouped_bars(
        {"ROUGE-L": {k: _rl(v) for k, v in rows.items()}, "EM": {k: v["mean"]["em"] for k, v in rows.items()}},
        fig / "tagi_unseen.png",
        "score on the 10 unseen tasks (%)",
        "TAGI vs baselines on unseen tasks",
    )
    blocks.append(
        Figure(
            "figures/tagi_unseen.png",
            "Mean over the 10 unseen tasks; 'shuffled' gives every task another task's instruction.",
        )
    )
    tagi, zs, hyp, lora = (stages.get(k, {}).get("unseen") for k in ("tagi", "zero-shot", "hypter", "multitask-lora"))
    if tagi is not None:
        b = meta["budget"]
        said, losses = [], []
        for label, other in (
            ("zero-shot", zs),
            ("the Hypter-style hypernetwork (CE only, same steps)", hyp),
            ("the multi-task LoRA with the instruction in its prompt (same steps, no teachers)", lora),
        ):
            if other is None:
                continue
            said.append(
                f"TAGI's generated adapters {_beats(_rl(tagi), _rl(other), plural=True)} {label}: "
                f"{_f(_rl(tagi))} vs {_f(_rl(other))} ROUGE-L ({_d(_rl(tagi), _rl(other))})."
            )
            if _rl(tagi) <= _rl(other):
                losses.append(f"{label.split(' (')[0]} ({_f(_rl(other))} vs {_f(_rl(tagi))})")
        shuf = stages["tagi"]["shuffled"]
        verdict = "get worse" if _rl(shuf) < _rl(tagi) else "do not get worse"
        said.append(
            f"Given another task's instruction, the generated adapters {verdict}"
            f" ({_f(_rl(shuf))}, {_d(_rl(shuf), _rl(tagi))})."
        )
        if losses:
            said.append(
                f"**Where TAGI loses:** to {'; to '.join(losses)}, at {b['train_steps']} steps after "
                f"{b['teacher_steps']} teacher steps."
            )
        else:
            said.append(
                f"**Where TAGI loses:** not in this table, but its teachers cost {b['teacher_steps']} extra "
                f"steps; docs/RESULTS.md finds the multi-task LoRA ahead once it gets TAGI's total step count."
            )
        low = sorted(tagi["tasks"].items(), key=lambda kv: kv[1]["rougeL"])[:3]
        said.append("TAGI's weakest unseen tasks: " + ", ".join(f"`{k}` {_f(v['rougeL'])}" for k, v in low) + ".")
        blocks.append(Para(" ".join(said)))
        per = [
            [
                k,
                *[
                    _f(s["tasks"][k]["rougeL"]) if s is not None and k in s["tasks"] else "–"
                    for s in (zs, hyp, tagi, stages["tagi"]["shuffled"], lora)
                ],
            ]
            for k in tagi["tasks"]
        ]
        blocks.append(Table(["unseen task (ROUGE-L)", "zero-shot", "Hypter", "TAGI", "TAGI shuffled", "LoRA"], per))
        blocks += adapter_blocks(stages["tagi"].get("adapter"), meta)
    return blocks


def adapter_blocks(adapter: Mapping[str, Any] | None, meta: Mapping[str, Any]) -> list[Block]:
    if not adapter:
        return []
    out = Path(meta["out"]) / adapter["folder"]
    same = "the same answer" if adapter["peft_answer"] == adapter["tagi_answer"] else "a different answer"
    return [
        Heading(3, "A generated adapter as a plain PEFT folder"),
        Para(
            f"`{out}` ({', '.join(adapter['files'])}) is the LoRA TAGI generated from the unseen task "
            f'`{adapter["task"]}`\'s instruction "{adapter["instruction"]}". These three lines load it onto the '
            f"default model offline (the converted model folder, `hyperadapt.models.default_model_dir()`):"
        ),
        Code(
            f"from peft import PeftModel; from transformers import AutoModelForCausalLM\n"
            f'base = AutoModelForCausalLM.from_pretrained("{adapter["base"]}")\n'
            f'model = PeftModel.from_pretrained(base, "{out}")',
            "python",
        ),
        Para(
            f'Loaded this way and prompted with the instruction and the input "{adapter["input"]}" (TAGI fuses '
            f'the instruction into the prompt), it answers "{adapter["peft_answer"]}"; TAGI itself answers '
            f'"{adapter["tagi_answer"]}" ({same}); the reference is "{adapter["reference"]}".'
        ),
    ]


def switch_section(
    stages: Mapping[str, Any], failed: Mapping[str, str], meta: Mapping[str, Any], fig: Path
) -> list[Block]:
    from hyperadapt.report.plots import plot_ap_curve, plot_matrix

    blocks: list[Block] = [Heading(2, "SwitchCIT: a stream of tasks without forgetting, and routing")]
    blocks += _missing(failed, ["switchcit", "sequential"], stages)
    runs = {k: stages[k] for k in ("switchcit", "sequential") if k in stages}
    if not runs:
        return blocks
    tasks = next(iter(runs.values()))["tasks"]
    zero = next(iter(runs.values()))["zero_shot"]
    head = ["method", "AP", "BWT", "Forgetting", *[f"{i + 1}: {t}" for i, t in enumerate(tasks)]]
    rows = [["zero-shot (base model)", _f(sum(zero) / len(zero)), "–", "–", *map(_f, zero)]]
    for name, r in runs.items():
        m = r["metrics"]
        rows.append([name, _f(m["AP"]), _f(m["BWT"]), _f(m["Forgetting"]), *map(_f, r["matrix"][-1])])
    blocks.append(
        Para(
            f"Tasks arrive in the order {', '.join(f'`{t}`' for t in tasks)}; each method trains on "
            f"one after another with the same budget, and after every task all tasks are scored "
            f"(ROUGE-L, %). The last columns are the final row of the accuracy matrix."
        )
    )
    blocks.append(Table(head, rows))
    for name, r in runs.items():
        plot_matrix(
            r["matrix"],
            tasks,
            fig / f"{name}_matrix.png",
            rows=[tasks[a] for a in r["after"]],
            title=f"{name}: ROUGE-L on task i after training through row j",
            value_label="ROUGE-L (%)",
        )
        legend = ", ".join(f"{i + 1} = {t}" for i, t in enumerate(tasks))
        blocks.append(Figure(f"figures/{name}_matrix.png", f"{name} accuracy matrix (x: tasks {legend})"))
    plot_ap_curve(
        {k: r["ap_curve"] for k, r in runs.items()},
        fig / "stream_ap.png",
        ylabel="AP: mean ROUGE-L over tasks trained so far (%)",
    )
    blocks.append(Figure("figures/stream_ap.png", "AP after each task"))
    sw, sq = runs.get("switchcit"), runs.get("sequential")
    if sw is not None:
        said = [
            f"SwitchCIT's adapters are never touched once trained, so its forgetting is "
            f"{_f(sw['metrics']['Forgetting'])}"
        ]
        if sq is not None:
            said[0] += (
                f", against {_f(sq['metrics']['Forgetting'])} for sequential finetuning of one LoRA "
                f"(AP {_f(sw['metrics']['AP'])} vs {_f(sq['metrics']['AP'])})."
            )
            if sq["metrics"]["AP"] >= sw["metrics"]["AP"]:
                said[0] += (
                    " At this budget sequential finetuning ends with the higher AP: SwitchCIT loses on the "
                    "final scores, and its zero forgetting is only worth something where the shared LoRA "
                    "forgets."
                )
        else:
            said[0] += "."
        acc = sw.get("switch_accuracy", {})
        said.append(
            f"The switch sends {', '.join(f'{_f(v)} % of `{k}`' for k, v in acc.items())} test inputs to "
            f"their own adapter; it rejects {_f(100 * (sw.get('reject_rate_seen') or 0))} % of seen inputs "
            f"(which then run on the base model) and {_f(100 * (sw.get('reject_rate_unseen') or 0))} % of "
            f"the inputs of the 10 tasks it never saw."
        )
        weakest = min(range(len(tasks)), key=lambda i: sw["matrix"][-1][i])
        said.append(
            f"**Where it loses:** every task only has its own {meta['budget']['stream_steps']} steps: "
            f"`{tasks[weakest]}` ends at {_f(sw['matrix'][-1][weakest])}, and seen inputs that the switch "
            f"rejects lose their adapter. Each task costs one more adapter on disk; a shared LoRA costs one."
        )
        blocks.append(Para(" ".join(said)))
        if sw.get("mixed_batch"):
            blocks.append(
                Para(
                    "One mixed batch through the switch (one input of every stream task and two of tasks "
                    "it never saw), answered in one pass with each example's routed adapter:"
                )
            )
            blocks.append(
                Table(
                    ["task", "in stream", "input", "routed to", "answer", "reference"],
                    [
                        [
                            f"`{r['task']}`",
                            "yes" if r["in_stream"] else "no",
                            r["input"],
                            r["routed_to"] or "rejected (base model)",
                            r["answer"],
                            r["reference"],
                        ]
                        for r in sw["mixed_batch"]
                    ],
                )
            )
    return blocks


def megan_section(
    stages: Mapping[str, Any], failed: Mapping[str, str], meta: Mapping[str, Any], fig: Path
) -> list[Block]:
    from hyperadapt.report.plots import plot_box_stats, plot_grouped_bars

    blocks: list[Block] = [Heading(2, "MeGan: one frozen model steered by conditions through β")]
    blocks += _missing(failed, ["megan", "zero-shot", "multitask-lora"], stages)
    candidates = {
        "zero-shot (condition in prompt)": stages.get("zero-shot"),
        "multi-task LoRA (condition in prompt)": stages.get("multitask-lora"),
        "MeGan (condition through β only)": stages.get("megan"),
    }
    rows = {k: v for k, v in candidates.items() if v is not None}
    if not rows:
        return blocks
    splits = ("seen", "unseen")
    blocks.append(
        Table(
            ["method", "seen tasks ROUGE-L / EM", "unseen tasks ROUGE-L / EM"],
            [[k, *[_cell(v.get(s)) for s in splits]] for k, v in rows.items()],
        )
    )
    plot_grouped_bars(
        {k: {s: _rl(v[s]) for s in splits if s in v} for k, v in rows.items()},
        fig / "megan_splits.png",
        "ROUGE-L (%)",
        "MeGan vs baselines per split",
    )
    blocks.append(
        Figure(
            "figures/megan_splits.png",
            "ROUGE-L per split: seen = the 34 training tasks on new inputs, unseen = 10 new tasks",
        )
    )
    mg = stages.get("megan")
    if mg is None:
        return blocks
    zs, lora = stages.get("zero-shot"), stages.get("multitask-lora")
    said = [
        f"MeGan never shows the model its condition: the prompt is the input alone and the condition reaches "
        f"the frozen model only through the β of Swish_β in its SwiGLU blocks ({mg['hypernetwork_parameters']:,}"
        f" trained parameters, per-channel β)."
    ]
    if zs is not None:
        said.append(
            f"That moves the model from zero-shot's {_f(_rl(zs['seen']))} to {_f(_rl(mg['seen']))} "
            f"ROUGE-L on seen tasks and from {_f(_rl(zs['unseen']))} to {_f(_rl(mg['unseen']))} on unseen "
            f"ones."
        )
    if lora is not None:
        lost = [s for s in splits if _rl(mg[s]) <= _rl(lora[s])]
        won = [s for s in splits if s not in lost]
        if lost:
            said.append(
                "**Where MeGan loses:** to the multi-task LoRA, which reads the condition in its prompt, on "
                + " and ".join(f"{s} tasks ({_f(_rl(lora[s]))} vs {_f(_rl(mg[s]))})" for s in lost)
                + "."
            )
        if won:
            said.append(
                "It beats that LoRA on "
                + " and ".join(f"{s} tasks ({_f(_rl(mg[s]))} vs {_f(_rl(lora[s]))})" for s in won)
                + "."
            )
        said.append(
            "β can change how the model transforms its input, but content that only the condition holds "
            "(label names, which of several tasks an input is for) has no way in."
        )
    blocks.append(Para(" ".join(said)))
    steer = mg.get("steering")
    if steer:
        blocks.append(
            Para(
                f'Conditions switched per example: one batch, the same input "{steer["input"]}" under '
                f"each condition (the last one is a persona, a condition type never trained):"
            )
        )
        blocks.append(Table(["condition", "MeGan's answer"], [[r["condition"], r["answer"]] for r in steer["rows"]]))
        if len({r["answer"] for r in steer["rows"]}) == 1:
            blocks.append(
                Para("At this budget every condition gives the same answer: β has not learned to steer this input yet.")
            )
    if mg.get("beta"):
        plot_box_stats(
            mg["beta"],
            fig / "megan_beta.png",
            ylabel="β",
            xlabel="layer",
            title="MeGan β per layer (1st–99th percentile whiskers), per condition",
            reference=1.0,
        )
        blocks.append(
            Figure(
                "figures/megan_beta.png",
                "β ≡ 1 (dashed) is the unmodified model; one panel per condition, the last a held-out persona",
            )
        )
        blocks.append(
            Table(["condition", "mean |β − 1|"], [[c, f"{v:.3f}"] for c, v in mg["beta_mean_abs_dev"].items()])
        )
    return blocks


def checkpoint_section(stages: Mapping[str, Any]) -> list[Block]:
    ck = stages.get("checkpoint")
    blocks: list[Block] = [Heading(2, "Released TAGI checkpoint")]
    if ck is None or not ck.get("available"):
        path = ck["path"] if ck else "checkpoints/tagi-smollm2-135m-sni"
        return blocks + [
            Para(
                f"No released checkpoint at `{path}`: skipped. When the SNI run publishes one there, "
                f"this section turns a few unseen instructions into adapters with it (no training)."
            )
        ]
    return blocks + [
        Para(f"Adapters generated by the released checkpoint `{ck['path']}`, no training:"),
        Table(
            ["task", "instruction", "input", "answer", "reference"],
            [[r["task"], r["instruction"], r["input"], r["answer"], r["reference"]] for r in ck["rows"]],
        ),
    ]


def larger_section() -> list[Block]:
    return [
        Heading(2, "At a larger budget, and on SNI with a GPU"),
        Code(
            "hyperadapt demo --set teacher_steps=300 --set train_steps=300 --set stream_steps=150 "
            "--set megan_steps=300 "
            "--set limit=20 --set seen_limit=5 --set stream_limit=50 --out results/demo-large\n"
            "hyperadapt bench tagi --config configs/tagi.yaml --eval-splits unseen --limit 20 "
            "--out results/tagi_synthetic.json\n"
            "hyperadapt bench continual --config configs/switch_synthetic.yaml --out results/continual/synthetic\n"
            "hyperadapt bench megan --steps 300 --out results/megan/synthetic.json --plots results/megan\n"
            "# Super-NaturalInstructions (GPU: models load in bf16 on CUDA)\n"
            "hyperadapt bench tagi --config configs/tagi_sni.yaml --eval-splits test --limit 20 "
            "--out results/tagi_sni_def.json\n"
            "hyperadapt bench continual --config configs/switch_sni.yaml --out results/continual/sni-order1\n"
            "hyperadapt train megan --config configs/megan_sni.yaml --out runs/sni/megan",
            "bash",
        ),
    ]


def versions_section(meta: Mapping[str, Any]) -> list[Block]:
    return [Heading(2, "Versions"), Table(["package", "version"], [[k, v] for k, v in meta["versions"].items()])]


def write_demo_report(results: Mapping[str, Any], out: Path) -> tuple[Path, Path]:
    """Figures under ``out/figures``, ``out/report.md`` and ``out/report.html``; returns the two reports."""
    meta, stages, failed = results["meta"], results["stages"], results.get("failed", {})
    fig = out / "figures"
    fig.mkdir(parents=True, exist_ok=True)
    blocks = [
        *header(meta, failed),
        *tagi_section(stages, failed, meta, fig),
        *switch_section(stages, failed, meta, fig),
        *megan_section(stages, failed, meta, fig),
        *checkpoint_section(stages),
        *larger_section(),
        *versions_section(meta),
    ]
    return write_report(blocks, out, TITLE)
