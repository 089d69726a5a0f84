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

    hyperadapt bench compare "LoRA=runs/sni/tagi/answers/multitask-lora.test.answers.jsonl" \
        "TAGI=runs/sni/tagi_D/answers/tagi.test.answers.jsonl" --data sni:../shared/data/sni --split test \
        --limit 20 --out results/sni/tagi_vs_lora.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hyperadapt.benchmarks import Parser, command
from hyperadapt.io import check_out_file, save_json
from hyperadapt.report.tables import markdown_table

KEYS = ("rougeL", "em")


def compare(logs: list[tuple[str, Path]], data: str, split: str, limit: int | None,
            resamples: int = 10_000, seed: int = 0, metric_lang: str = "auto") -> dict:
    """Scores of each ``(label, answer log)`` on ``data``'s ``split`` (first ``limit`` instances per task)
    and, for every log after the first, its paired difference from the first (``minus_reference``: per key
    ``diff``, ``low``, ``high``, ``wins``, ``losses``, ``ties``, in ROUGE-L / EM points).

    Raises ``FileNotFoundError`` for a missing log, ``ValueError`` for a file that is not an answer log or
    has no answer for one of the chosen instances, and for fewer than two logs or repeated labels.
    """
    from hyperadapt.data import load_tasks
    from hyperadapt.evaluation.harness import score_answer_log
    from hyperadapt.evaluation.metrics import aggregate, by_category, paired_bootstrap

    if len(logs) < 2:
        raise ValueError(f"compare needs at least two answer logs, got {len(logs)}")
    labels = [label for label, _ in logs]
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise ValueError(f"{repeated[0]!r} is given twice: give each file its own label (LABEL=PATH)")
    tasks = load_tasks(data, split)
    scored = {}
    for label, path in logs:
        try:
            scored[label] = score_answer_log(path, tasks, limit, metric_lang)
        except ValueError as err:
            if "has no answer for" not in str(err):
                raise
            raise ValueError(f"{err}: are --data {data}, --split {split} and --limit {limit or 'all'} those of the "
                             "evaluation that wrote it?") from err
    reference = labels[0]
    out: dict = {"reference": reference, "logs": {}}
    for label, path in logs:
        row = {"path": str(path), **aggregate(scored[label]), "by_category": by_category(scored[label]),
               "tasks": scored[label]}
        if label != reference:
            row["minus_reference"] = {key: paired_bootstrap(scored[label], scored[reference], key, resamples,
                                                            seed=seed) for key in KEYS}
        out["logs"][label] = row
    return out


def table(result: dict) -> str:
    """Markdown: one row per log, its scores and its difference from the reference with the interval."""
    ref = result["reference"]
    lines = [f"`{result['command']}`", "",
             f"{result['data']} [{result['split']}], first {result['limit'] or 'all'} instances per task; "
             f"differences are paired against **{ref}**, 95 % bootstrap interval over tasks.", ""]
    rows = []
    for label, row in result["logs"].items():
        cells = ["(reference)", "", ""]
        if "minus_reference" in row:
            d = row["minus_reference"]
            cells = [f"{d[k]['diff']:+.2f} [{d[k]['low']:+.2f}, {d[k]['high']:+.2f}]" for k in KEYS]
            cells.append(f"{d['rougeL']['wins']} / {d['rougeL']['losses']} / {d['rougeL']['ties']}")
        rows.append([label, row["n"], f"{row['rougeL']:.2f}", f"{row['em']:.2f}", *cells])
    header = ["answers", "n", "ROUGE-L", "EM", "ROUGE-L − ref [95 % CI]", "EM − ref [95 % CI]",
              "tasks ahead / behind / equal (ROUGE-L)"]
    return "\n".join([*lines, markdown_table(header, rows)]) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = Parser(prog="hyperadapt bench compare", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", nargs="+", help="answers (*.predictions.jsonl or *.answers.jsonl): PATH or LABEL=PATH "
                                            "(a PATH that exists is never split at '='); the first is the reference")
    ap.add_argument("--data", default="sni:../shared/data/sni",
                    help="the task data the answers belong to (default: %(default)s)")
    ap.add_argument("--split", default="test", help="the split that was evaluated (default: %(default)s)")
    ap.add_argument("--limit", type=int, default=None,
                    help="the first N instances of each task, at most the evaluations' --limit (default: all)")
    ap.add_argument("--metric-lang", default="auto", choices=["auto", "en", "xlingual"],
                    help="ROUGE tokenizer, as `hyperadapt eval --metric-lang` (default: %(default)s)")
    ap.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples, at least 1000")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ap.add_argument("--out", type=Path, default=None, help="results JSON (.json; a Markdown table beside it, .md)")
    args = ap.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    if args.resamples < 1000:
        raise ValueError(f"--resamples must be at least 1000 for a 95 % interval, got {args.resamples}")
    logs = [(spec, Path(spec)) if Path(spec).exists() or not (sep and label and path) else (label, Path(path))
            for spec in args.logs for label, sep, path in [spec.partition("=")]]
    if args.out is not None:
        if args.out.suffix != ".json":
            raise ValueError(f"--out {args.out} must end in .json (the Markdown table is written beside it)")
        check_out_file(args.out, "--out")
        inputs = {p.resolve() for _, p in logs}
        inputs |= {p.resolve().with_name(p.name.removesuffix(".predictions.jsonl") + ".json")
                   for _, p in logs if p.name.endswith(".predictions.jsonl")}  # the evaluation's own results
        if args.out.resolve() in inputs:
            raise ValueError(f"--out {args.out} would overwrite an input or the results of the evaluation that wrote "
                             "it: choose another file")
    result = {"data": args.data, "split": args.split, "limit": args.limit, "metric_lang": args.metric_lang,
              **compare(logs, args.data, args.split, args.limit, args.resamples, args.seed, args.metric_lang),
              "command": command("compare", argv)}
    for label, row in result["logs"].items():
        line = f"{label}: ROUGE-L {row['rougeL']:.2f}, EM {row['em']:.2f} ({row['n']} answers, {row['n_tasks']} tasks)"
        if "minus_reference" in row:
            d = row["minus_reference"]
            line += "; minus {}: ROUGE-L {:+.2f} [{:+.2f}, {:+.2f}], EM {:+.2f} [{:+.2f}, {:+.2f}]; ahead on {}, " \
                    "behind on {}, equal on {} tasks (ROUGE-L)".format(
                        result["reference"], d["rougeL"]["diff"], d["rougeL"]["low"], d["rougeL"]["high"],
                        d["em"]["diff"], d["em"]["low"], d["em"]["high"], d["rougeL"]["wins"],
                        d["rougeL"]["losses"], d["rougeL"]["ties"])
        print(line, flush=True)
    if args.out is not None:
        save_json(result, args.out)
        args.out.with_suffix(".md").write_text(table(result))
        print(f"-> {args.out} ({args.out.with_suffix('.md').name} beside it)", flush=True)
    return result


if __name__ == "__main__":
    main()
