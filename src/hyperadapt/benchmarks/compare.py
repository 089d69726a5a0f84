r"""Paired comparison of answers: score each on the same instances, and each against the first.

Answers are read from the predictions an evaluation writes beside its results (`hyperadapt eval --out R.json`
writes R.predictions.jsonl) or from an answer log, keyed by task and instance (R.answers.jsonl while an
evaluation runs; the benchmarks keep <method>.<split>.answers.jsonl under their runs' answers/). This
benchmark scores them again without a model (ROUGE-L and exact match on the first --limit instances of
each task) and gives every file's paired difference from the first (each file minus the first): the
instance-mean difference and its 95 % bootstrap interval over tasks, with the tasks where it is ahead,
behind and equal by ROUGE-L. Use it to put two runs on the instances an ablation used, or to see whether a
difference is more than noise. --data, --split and --limit must be those of the evaluations (or a smaller
--limit). Seconds per file.

A result JSON that already holds per-task scores is taken as it is, not scored again (no answers needed): an
evaluation's R.json (its ``tasks``), or one row of a benchmark's JSON named after ``#`` as a path of keys
(``tagi.json#results/tagi/test``, ``tagi.json#sensitivity/tagi/shuffled/test``). Its rows must cover the same
tasks and instance counts as the others (the pairing refuses otherwise); --limit does not cut them.

    hyperadapt bench compare "LoRA=runs/sni/tagi/answers/multitask-lora.test.answers.jsonl" \
        "TAGI=runs/sni/tagi_D/answers/tagi.test.answers.jsonl" --data sni:../shared/data/sni --split test \
        --limit 20 --out results/sni/tagi_vs_lora.json
    hyperadapt bench compare "zero-shot=results/zero_shot.json" "TAGI=results/sni/tagi.json#results/tagi/test" \
        --out results/sni/tagi_vs_zero_shot.json
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from hyperadapt.benchmarks import command
from hyperadapt.errors import UserError
from hyperadapt.io import atomic_write_text, check_out_file, load_json, save_json
from hyperadapt.report.tables import markdown_table

KEYS = ("rougeL", "em")
ROW_SEP = "#"  # PATH.json#KEY/KEY/...: one row of a result JSON


def is_scores(path: Path) -> bool:
    """Whether ``path`` names a result JSON (``R.json`` or ``R.json#ROW``) rather than answers to score."""
    return path.suffix == ".json" if path.exists() else str(path).partition(ROW_SEP)[0].endswith(".json")


def read_scores(spec: Path) -> dict[str, dict[str, Any]]:
    """The per-task scores (task name -> ``rougeL``, ``em``, ``n``, ...) recorded in a result JSON: ``R.json``
    (an evaluation's, its top-level ``tasks``) or ``R.json#KEY/KEY/...`` (the object at that key path holding
    ``tasks``, e.g. ``results/tagi/test`` of ``hyperadapt bench tagi``'s JSON).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (one line, naming the keys there are) for a
    path that is not in the file or an object without per-task ``rougeL``, ``em`` and ``n``."""
    file, _, row = (str(spec), "", "") if spec.exists() else str(spec).partition(ROW_SEP)
    node: Any = load_json(file, "result JSON")
    walked: list[str] = []
    for key in [k for k in row.split("/") if k]:
        if not isinstance(node, dict) or key not in node:
            there = sorted(node) if isinstance(node, dict) else []
            raise UserError(
                f"{file}: no {key!r} at {'/'.join(walked) or 'the top'} (there: {', '.join(map(str, there)) or 'none'})"
            )
        node, walked = node[key], [*walked, key]
    tasks = node.get("tasks") if isinstance(node, dict) else None
    where = f"{file}{ROW_SEP}{'/'.join(walked)}" if walked else file
    if not isinstance(tasks, dict) or not tasks:
        keys = ", ".join(sorted(node)) if isinstance(node, dict) else type(node).__name__
        raise UserError(
            f"{where} holds no per-task scores ('tasks'; there: {keys}): name a row after '{ROW_SEP}' "
            "(e.g. results/METHOD/SPLIT), or give the answers to score (R.predictions.jsonl, *.answers.jsonl)"
        )
    bad = [n for n, s in tasks.items() if not (isinstance(s, dict) and all(k in s for k in (*KEYS, "n")))]
    if bad:
        raise UserError(f"{where}: task {bad[0]!r} has no {'/'.join((*KEYS, 'n'))} scores")
    return {str(n): dict(s) for n, s in tasks.items()}


def compare(
    logs: list[tuple[str, Path]],
    data: str,
    split: str,
    limit: int | None,
    resamples: int = 10_000,
    seed: int = 0,
    metric_lang: str = "auto",
) -> dict[str, Any]:
    """Scores of each ``(label, answer log)`` on ``data``'s ``split`` (first ``limit`` instances per task)
    and, for every log after the first, its paired difference from the first (``minus_reference``: per key
    ``diff``, ``low``, ``high``, ``wins``, ``losses``, ``ties``, in ROUGE-L / EM points). A result JSON in
    place of a log (:func:`is_scores`) gives its recorded per-task scores (:func:`read_scores`), not scored
    again; the data is read only when there is a log to score.

    Raises ``FileNotFoundError`` for a missing log, ``ValueError`` for a file that is not an answer log or
    has no answer for one of the chosen instances, and for fewer than two logs or repeated labels.
    """
    from hyperadapt.data import load_tasks
    from hyperadapt.evaluation.harness import score_answer_log
    from hyperadapt.evaluation.metrics import aggregate, by_category, paired_bootstrap

    if len(logs) < 2:
        raise UserError(f"compare needs at least two answer logs, got {len(logs)}")
    labels = [label for label, _ in logs]
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise UserError(f"{repeated[0]!r} is given twice: give each file its own label (LABEL=PATH)")
    tasks = load_tasks(data, split) if not all(is_scores(p) for _, p in logs) else []
    scored = {}
    for label, path in logs:
        if is_scores(path):
            scored[label] = read_scores(path)
            continue
        try:
            scored[label] = score_answer_log(path, tasks, limit, metric_lang)
        except ValueError as err:
            if "has no answer for" not in str(err):
                raise
            raise UserError(
                f"{err}: are --data {data}, --split {split} and --limit {limit or 'all'} those of the "
                "evaluation that wrote it?"
            ) from err
    reference = labels[0]
    out: dict[str, Any] = {"reference": reference, "logs": {}}
    for label, path in logs:
        categorised = all("category" in s for s in scored[label].values())  # a benchmark's rows keep none
        row = {
            "path": str(path),
            "scored": "recorded" if is_scores(path) else "again",
            **aggregate(scored[label]),
            "by_category": by_category(scored[label]) if categorised else None,
            "tasks": scored[label],
        }
        if label != reference:
            try:
                row["minus_reference"] = {
                    key: paired_bootstrap(scored[label], scored[reference], key, resamples, seed=seed) for key in KEYS
                }
            except ValueError as err:
                raise UserError(f"{label} cannot be paired with {reference}: {err}") from err
        out["logs"][label] = row
    return out


def table(result: dict[str, Any]) -> str:
    """Markdown: one row per log, its scores and its difference from the reference with the interval."""
    ref = result["reference"]
    recorded = [label for label, row in result["logs"].items() if row.get("scored") == "recorded"]
    scope = (
        "recorded per-task scores, not scored again"
        if len(recorded) == len(result["logs"])
        else f"{result['data']} [{result['split']}], first {result['limit'] or 'all'} instances per task"
        + (f" ({', '.join(recorded)}: recorded scores)" if recorded else "")
    )
    lines = [
        f"`{result['command']}`",
        "",
        f"{scope}; differences are paired against **{ref}**, 95 % bootstrap interval over tasks.",
        "",
    ]
    rows = []
    for label, row in result["logs"].items():
        cells = ["(reference)", "", ""]
        if "minus_reference" in row:
            d = row["minus_reference"]
            cells = [f"{d[k]['diff']:+.2f} [{d[k]['low']:+.2f}, {d[k]['high']:+.2f}]" for k in KEYS]
            cells.append(f"{d['rougeL']['wins']} / {d['rougeL']['losses']} / {d['rougeL']['ties']}")
        rows.append([label, row["n"], f"{row['rougeL']:.2f}", f"{row['em']:.2f}", *cells])
    header = [
        "answers",
        "n",
        "ROUGE-L",
        "EM",
        "ROUGE-L − ref [95 % CI]",
        "EM − ref [95 % CI]",
        "tasks ahead / behind / equal (ROUGE-L)",
    ]
    return "\n".join([*lines, markdown_table(header, rows)]) + "\n"


def compare_command(
    ctx: typer.Context,
    logs: Annotated[
        list[str],
        typer.Argument(
            help="answers (*.predictions.jsonl or *.answers.jsonl) or recorded scores (R.json, or R.json#KEY/KEY "
            "for one row of a benchmark's JSON): PATH or LABEL=PATH (a PATH that exists is never split at '='); "
            "the first is the reference",
            show_default=False,
        ),
    ],
    data: Annotated[
        str, typer.Option(help="the task data the answers belong to, as eval's --data")
    ] = "sni:../shared/data/sni",
    split: Annotated[str, typer.Option(help="the split that was evaluated")] = "test",
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="the first N instances of each task, at most the evaluations' --limit (default: all)"),
    ] = None,
    metric_lang: Annotated[
        str, typer.Option(help="ROUGE tokenizer, as eval's --metric-lang: auto, en or xlingual")
    ] = "auto",
    resamples: Annotated[int, typer.Option(help="bootstrap resamples, at least 1000 (for a 95 % interval)")] = 10_000,
    seed: Annotated[int, typer.Option(help="bootstrap seed")] = 0,
    out: Annotated[Path, typer.Option(help="results JSON (.json; a Markdown table beside it, .md)")] = Path(
        "results/compare.json"
    ),
) -> None:
    """Score saved answers again and compare each with the first: paired differences with 95 % intervals.

    Reads the predictions an evaluation writes beside its results (R.predictions.jsonl) or an answer log
    (R.answers.jsonl, or a benchmark's <method>.<split>.answers.jsonl), scores them without a model on the first
    --limit instances of each task, and gives every file's paired difference from the first. --data, --split and
    --limit must be those of the evaluations (or a smaller --limit). A result JSON (R.json, or R.json#KEY/KEY for
    one row of a benchmark's JSON, e.g. tagi.json#results/tagi/test) gives its recorded per-task scores instead.
    Writes --out (JSON + .md table), as every benchmark does, and prints one line per file.

    Example: hyperadapt bench compare LoRA=results/lora.test.predictions.jsonl TAGI=results/tagi.test.predictions.jsonl
    --data sni:../shared/data/sni --split test --limit 20 --out results/tagi_vs_lora.json
    """
    if metric_lang not in ("auto", "en", "xlingual"):
        raise UserError(f"--metric-lang must be auto, en or xlingual, got {metric_lang!r}")
    if resamples < 1000:
        raise UserError(f"--resamples must be at least 1000 for a 95 % interval, got {resamples}")
    if out.suffix != ".json":
        raise UserError(f"--out {out} must end in .json (the Markdown table is written beside it)")
    check_out_file(out, "--out")
    pairs = [
        (spec, Path(spec)) if Path(spec).exists() or not (sep and label and path) else (label, Path(path))
        for spec in logs
        for label, sep, path in [spec.partition("=")]
    ]
    inputs = {
        Path(str(p).partition(ROW_SEP)[0]).resolve() if is_scores(p) and not p.exists() else p.resolve()
        for _, p in pairs
    }
    inputs |= {
        p.resolve().with_name(p.name.removesuffix(".predictions.jsonl") + ".json")
        for _, p in pairs
        if p.name.endswith(".predictions.jsonl")
    }  # the evaluation's own results
    if out.resolve() in inputs:
        raise UserError(
            f"--out {out} would overwrite an input or the results of the evaluation that wrote it: choose another file"
        )
    scores = compare(pairs, data, split, limit, resamples, seed, metric_lang)
    result = {
        "data": data,
        "split": split,
        "limit": limit,
        "metric_lang": metric_lang,
        **scores,
        "command": command("compare", ctx.obj),
    }
    for label, row in result["logs"].items():
        line = f"{label}: ROUGE-L {row['rougeL']:.2f}, EM {row['em']:.2f} ({row['n']} answers, {row['n_tasks']} tasks)"
        if "minus_reference" in row:
            d = row["minus_reference"]
            line += (
                "; minus {}: ROUGE-L {:+.2f} [{:+.2f}, {:+.2f}], EM {:+.2f} [{:+.2f}, {:+.2f}]; ahead on {}, "
                "behind on {}, equal on {} tasks (ROUGE-L)".format(
                    result["reference"],
                    d["rougeL"]["diff"],
                    d["rougeL"]["low"],
                    d["rougeL"]["high"],
                    d["em"]["diff"],
                    d["em"]["low"],
                    d["em"]["high"],
                    d["rougeL"]["wins"],
                    d["rougeL"]["losses"],
                    d["rougeL"]["ties"],
                )
            )
        print(line, flush=True)
    save_json(result, out)
    atomic_write_text(out.with_suffix(".md"), table(result))
    print(f"-> {out} ({out.with_suffix('.md').name} beside it)", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run ``compare_command`` on ``argv`` (default ``sys.argv[1:]``) as ``hyperadapt bench compare``: typer's help;
    a bad option or input raises (the command line's one handler prints it); returns the exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(compare_command)
    status = typer.main.get_command(app).main(
        args, prog_name="hyperadapt bench compare", obj=args, standalone_mode=False
    )
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
