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
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from hyperadapt.benchmarks import command
from hyperadapt.errors import UserError
from hyperadapt.io import atomic_write_text, check_out_file, is_finite_number, load_json, save_json
from hyperadapt.report.tables import markdown_table

KEYS = ("rougeL", "em")
ROW_SEP = "#"  # PATH.json#KEY/KEY/...: one row of a result JSON
_SHOWN = 8  # keys or task names an error lists before "..."
MAX_RESAMPLES = 1_000_000  # --resamples: a 95 % interval settles by 10,000; more only costs time


@dataclass(frozen=True)
class Source:
    """One input of a comparison: answers to score again (``row`` None: an answer log or an evaluation's
    predictions) or the per-task scores a result JSON recorded (``row``: the key path, ``KEY/KEY``, of the object
    holding ``tasks``; ``""`` for the top, an evaluation's R.json)."""

    path: Path
    row: str | None = None

    @property
    def recorded(self) -> bool:
        return self.row is not None

    def __str__(self) -> str:
        return f"{self.path}{ROW_SEP}{self.row}" if self.row else str(self.path)


def _is_json(name: str) -> bool:
    return name.lower().endswith(".json")


def parse_input(spec: str) -> tuple[str, Source]:
    """``(label, source)`` of one command-line input: ``PATH``, ``PATH.json#KEY/KEY`` or either after ``LABEL=``.

    A file that exists decides the reading: the whole spec first, then the spec split at each ``#`` that follows
    ``.json``, each after no label and then after the label before each ``=`` from the left; so an ``=`` or ``#`` in
    an existing file's name is never taken as a separator. When no reading names an existing file, the label is
    what comes before the first ``=`` and the row what follows the first ``.json#`` (the error then names the
    missing file). An input without a label is labelled with itself. A ``.json`` file without ``#`` is read as an
    evaluation's R.json (its top-level ``tasks``); any other file as answers.

    Raises ``UserError`` for an empty label or path."""
    splits = [(spec, spec)] + [(spec[:i], spec[i + 1 :]) for i, c in enumerate(spec) if c == "="]
    readings: list[tuple[str, str, str | None]] = []
    for label, rest in splits:
        readings.append((label, rest, "" if _is_json(rest) else None))
        readings += [
            (label, rest[:j], rest[j + 1 :]) for j, c in enumerate(rest) if c == ROW_SEP and _is_json(rest[:j])
        ]
    found = next((r for r in readings if r[0] and r[1] and Path(r[1]).exists()), None)
    if found is None:  # nothing exists: the likeliest reading, so that reading it names the missing file
        label, rest = splits[1] if len(splits) > 1 else splits[0]
        if not label:
            raise UserError(f"{spec!r}: empty label before '=' (give LABEL=PATH or PATH)")
        if not rest:
            raise UserError(f"{spec!r}: no path after '{label}='")
        found = next((r for r in readings if r[0] == label and r[1] != rest), (label, rest, None))
        if found[2] is None and _is_json(rest):
            found = (label, rest, "")
    label, file, row = found
    return label, Source(Path(file), None if row is None else row.strip("/"))


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > _SHOWN else shown or "none"


def read_scores(source: Source) -> dict[str, dict[str, Any]]:
    """The per-task scores (task name -> ``rougeL``, ``em``, ``n``, ...) recorded in a result JSON: ``R.json``
    (an evaluation's, its top-level ``tasks``) or ``R.json#KEY/KEY/...`` (the object at that key path holding
    ``tasks``, e.g. ``results/tagi/test`` of ``hyperadapt bench tagi``'s JSON).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (one line) for a key path that is not in
    the file (naming the keys there are), an object without per-task scores, or a task whose ``rougeL`` or ``em``
    is not a number from 0 to 100 (points) or whose ``n`` (instances) is not a positive integer."""
    node: Any = load_json(source.path, "result JSON")
    walked: list[str] = []
    for key in [k for k in (source.row or "").split("/") if k]:
        if not isinstance(node, dict) or key not in node:
            there = _listed(sorted(map(str, node))) if isinstance(node, dict) else f"a {type(node).__name__}"
            raise UserError(f"{source.path}: no {key!r} at {'/'.join(walked) or 'the top'} (there: {there})")
        node, walked = node[key], [*walked, key]
    where = f"{source.path}{ROW_SEP}{'/'.join(walked)}" if walked else str(source.path)
    tasks = node.get("tasks") if isinstance(node, dict) else None
    if not isinstance(tasks, dict) or not tasks:
        if isinstance(node, dict) and "tasks" in node:
            what = "empty" if not tasks else f"a {type(tasks).__name__}, not an object of per-task scores"
            raise UserError(f"{where}: its 'tasks' is {what}")
        there = _listed(sorted(map(str, node))) if isinstance(node, dict) else f"a {type(node).__name__}"
        raise UserError(
            f"{where} holds no per-task scores ('tasks'; there: {there}): name a row after '{ROW_SEP}' "
            "(e.g. results/METHOD/SPLIT), or give the answers to score (R.predictions.jsonl, *.answers.jsonl)"
        )
    for name, s in tasks.items():
        if not isinstance(s, dict):
            raise UserError(f"{where}: task {name!r} has no scores (a {type(s).__name__})")
        for key in KEYS:
            value = s.get(key)
            if not is_finite_number(value):
                raise UserError(f"{where}: task {name!r} has {key} {value!r}, not a finite number")
            if not 0 <= value <= 100:
                raise UserError(f"{where}: task {name!r} has {key} {value!r}, not a score in points (0 to 100)")
        n = s.get("n")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise UserError(f"{where}: task {name!r} has n {n!r}, not a positive instance count")
    return {str(n): dict(s) for n, s in tasks.items()}


def _unpaired(label: str, reference: str, a: dict[str, Any], b: dict[str, Any]) -> str:
    """Why ``a`` (``label``) cannot be paired with ``b`` (``reference``), in one line."""
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        return (
            f"{label} and {reference} cover different tasks: {len(only_a)} only in {label}, {len(only_b)} only in "
            f"{reference} (e.g. {(only_a or only_b)[0]!r}); pair rows of the same data and split"
        )
    task = next(t for t in sorted(a) if int(a[t]["n"]) != int(b[t]["n"]))
    return (
        f"{label} has {a[task]['n']} instances of {task!r} and {reference} {b[task]['n']}: pair rows measured on the "
        "same instances (--limit re-scores answers on the first N of each task; recorded rows keep their own)"
    )


def compare(
    logs: list[tuple[str, Source]],
    data: str,
    split: str,
    limit: int | None,
    resamples: int = 10_000,
    seed: int = 0,
    metric_lang: str = "auto",
) -> dict[str, Any]:
    """Scores of each ``(label, source)`` and, for every one after the first, its paired difference from the first
    (``minus_reference``: per key ``diff``, ``low``, ``high``, ``wins``, ``losses``, ``ties``, in ROUGE-L / EM
    points; when both are answers, ``identical_answers``: the chosen instances answered with the very same text).
    Answers (an answer log or predictions) are scored again on ``data``'s ``split``, the first ``limit``
    instances per task; recorded scores (:class:`Source` with a ``row``) are taken as the result JSON holds them
    (:func:`read_scores`); the data is read only when there are answers to score.

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` (one line) for a file that is neither answers
    nor recorded scores, answers without one of the chosen instances, two inputs that cannot be paired (other
    tasks or instance counts), fewer than two inputs or a repeated label.
    """
    from hyperadapt.data import load_tasks
    from hyperadapt.evaluation.harness import read_answers, score_answer_log
    from hyperadapt.evaluation.metrics import aggregate, by_category, paired_bootstrap

    if len(logs) < 2:
        raise UserError(f"compare needs at least two inputs (answers or recorded scores), got {len(logs)}")
    labels = [label for label, _ in logs]
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise UserError(f"{repeated[0]!r} is given twice: give each file its own label (LABEL=PATH)")
    tasks = load_tasks(data, split) if not all(s.recorded for _, s in logs) else []
    scored = {}
    for label, source in logs:
        if source.recorded:
            scored[label] = read_scores(source)
            continue
        try:
            scored[label] = score_answer_log(source.path, tasks, limit, metric_lang)
        except ValueError as err:
            if "has no answer for" not in str(err):
                raise
            raise UserError(
                f"{err}: are --data {data}, --split {split} and --limit {limit or 'all'} those of the "
                "evaluation that wrote it?"
            ) from err
    reference = labels[0]
    ref_source = logs[0][1]
    ref_answers = None if ref_source.recorded else read_answers(ref_source.path)  # read once, for identical counts
    keys = [(t.name, x.id) for t in tasks for x in (t.instances[:limit] if limit else t.instances)]
    out: dict[str, Any] = {"reference": reference, "logs": {}}
    for label, source in logs:
        a, b = scored[label], scored[reference]
        if label != reference and (set(a) != set(b) or any(int(a[t]["n"]) != int(b[t]["n"]) for t in a)):
            raise UserError(_unpaired(label, reference, a, b))
        row = {
            "path": str(source),
            "scored": "recorded" if source.recorded else "again",
            **aggregate(a),
            "by_category": by_category(a) if all("category" in s for s in a.values()) else None,  # rows keep none
            "tasks": a,
        }
        if label != reference:
            row["minus_reference"] = {key: paired_bootstrap(a, b, key, resamples, seed=seed) for key in KEYS}
            if not source.recorded and ref_answers is not None:  # both answers: how many are the very same text
                mine = read_answers(source.path)
                row["minus_reference"]["identical_answers"] = sum(mine[k] == ref_answers[k] for k in keys)
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
        "row",
        "n",
        "ROUGE-L",
        "EM",
        "ROUGE-L − ref [95 % CI]",
        "EM − ref [95 % CI]",
        "tasks ahead / behind / equal (ROUGE-L)",
    ]
    return "\n".join([*lines, markdown_table(header, rows)]) + "\n"


def results_beside(source: Source) -> Path | None:
    """The results ``R.json`` that ``eval --out R.json`` wrote beside ``R.predictions.jsonl`` (None for another
    kind of input, or when it is not there)."""
    name = source.path.name
    if not name.endswith(".predictions.jsonl"):
        return None
    results = source.path.with_name(name.removesuffix(".predictions.jsonl") + ".json")
    return results if results.is_file() else None


def recorded_setting(pairs: list[tuple[str, Source]], key: str, option: str, default: str | None = None) -> str:
    """The ``data`` or ``split`` that the evaluations of the answers record in their results (``R.json`` beside
    each ``R.predictions.jsonl``), when they all agree; ``default`` when a file has no results beside it (an
    answer log); ``UserError`` naming ``option`` otherwise. Data is told apart by the tag each evaluation recorded
    where it ran (``sources``), so one file written two ways is one data, and a relative path that names other
    data from the current folder is refused."""
    from hyperadapt.evaluation.destination import source_tag

    found: dict[str, list[str]] = {}  # the data's tag (or the split) -> the specs that name it
    for _, source in pairs:
        if source.recorded:
            continue
        results = results_beside(source)
        if results is None:
            if default is not None:
                return default
            raise UserError(f"give {option}: no evaluation results beside {source.path} record it")
        record = load_json(results, "results file")
        value = record.get(key) if isinstance(record, dict) else None
        if not isinstance(value, str) or not value:
            raise UserError(f"give {option}: {results} records no {key}")
        sources = record.get("sources") if key == "data" else None
        tag = sources.get("data") if isinstance(sources, dict) else None
        found.setdefault(tag if isinstance(tag, str) and tag else value, []).append(value)
    if len(found) > 1:
        shown = "; ".join(f"{specs[0]!r} ({len(specs)} file(s))" for specs in found.values())
        raise UserError(f"the answers were evaluated on different {key} ({shown}): give {option}")
    tag, specs = next(iter(found.items()))
    if key != "data" or tag in specs:  # a split, or data recorded without a tag (before 2026-12-08)
        return specs[0]
    here = [spec for spec in dict.fromkeys(specs) if _tag_here(spec, source_tag) == tag]
    if not here:
        raise UserError(
            f"the answers' results record --data {specs[0]!r}, a path relative to the folder the evaluation ran "
            "in, which names other data (or none) from here: give --data"
        )
    return here[0]


def recorded_limit(pairs: list[tuple[str, Source]]) -> int | None:
    """The smallest ``--limit`` the evaluations of the answers record (``config.eval.limit`` of the results beside
    each ``R.predictions.jsonl``): every file has answers for that many instances of each task. None when no
    file records one (or a file has no results beside it)."""
    limits = []
    for _, source in pairs:
        if source.recorded:
            continue
        results = results_beside(source)
        if results is None:
            return None
        value: Any = load_json(results, "results file")
        for key in ("config", "eval", "limit"):
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            limits.append(value)
    return min(limits, default=None)


def _tag_here(spec: str, source_tag: Any) -> str | None:
    try:
        return str(source_tag(spec))
    except UserError:
        return None


def compare_command(
    ctx: typer.Context,
    logs: Annotated[
        list[str],
        typer.Argument(
            help="answers (*.predictions.jsonl or *.answers.jsonl) or recorded scores (R.json, or R.json#KEY/KEY "
            "for one row of a benchmark's JSON): PATH or LABEL=PATH (a file that exists is never split at '=' or "
            "'#'); the first is the reference",
            show_default=False,
        ),
    ],
    data: Annotated[
        str | None,
        typer.Option(
            help="the task data the answers belong to, as eval's --data (default: as the results beside the "
            "predictions record it; unused for recorded scores)"
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            help="the split that was evaluated (default: as the results beside the predictions record it, else "
            "test; unused for recorded scores)"
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="score answers on the first N instances of each task, at most the evaluations' --limit (default: "
            "the smallest the results beside the predictions record, else all); recorded scores keep their own",
        ),
    ] = None,
    metric_lang: Annotated[
        str, typer.Option(help="ROUGE tokenizer, as eval's --metric-lang: auto, en or xlingual")
    ] = "auto",
    resamples: Annotated[
        int, typer.Option(help="bootstrap resamples, 1000 (for a 95 % interval) to 1,000,000")
    ] = 10_000,
    seed: Annotated[int, typer.Option(help="bootstrap seed")] = 0,
    out: Annotated[Path, typer.Option(help="results JSON (.json; a Markdown table beside it, .md)")] = Path(
        "results/compare.json"
    ),
) -> None:
    """Compare saved answers or recorded scores with the first: paired differences with 95 % intervals.

    Reads the predictions an evaluation writes beside its results (R.predictions.jsonl) or an answer log
    (R.answers.jsonl, or a benchmark's <method>.<split>.answers.jsonl), scores them without a model on the first
    --limit instances of each task, and gives every file's paired difference from the first. --data, --split and
    --limit must be those of the evaluations (or a smaller --limit); --data, --split and --limit default to what
    the results beside the predictions (R.json) record. A result JSON (R.json, or R.json#KEY/KEY for
    one row of a benchmark's JSON, e.g. tagi.json#results/tagi/test) gives its recorded per-task scores instead.
    Writes --out (JSON + .md table), as every benchmark does, and prints one line per file.

    Example: hyperadapt bench compare LoRA=results/lora.test.predictions.jsonl TAGI=results/tagi.test.predictions.jsonl
    --data sni:../shared/data/sni --split test --limit 20 --out results/tagi_vs_lora.json

    Example: hyperadapt bench compare "LoRA=results/tagi.json#results/multitask-lora/test"
    "TAGI=results/tagi.json#results/tagi/test" --out results/tagi_vs_lora.json
    """
    if metric_lang not in ("auto", "en", "xlingual"):
        raise UserError(f"--metric-lang must be auto, en or xlingual, got {metric_lang!r}")
    if not 1000 <= resamples <= MAX_RESAMPLES:
        raise UserError(
            f"--resamples must be from 1000 (for a 95 % interval) to {MAX_RESAMPLES:,} (the interval settles long "
            f"before; each resample costs a pass over the tasks), got {resamples}"
        )
    if out.suffix != ".json":
        raise UserError(f"--out {out} must end in .json (the Markdown table is written beside it)")
    check_out_file(out, "--out")
    check_out_file(out.with_suffix(".md"), "--out's table")
    pairs = [parse_input(spec) for spec in logs]
    if limit is not None and all(s.recorded for _, s in pairs):
        raise UserError("--limit re-scores answers, and every input is recorded scores (they keep their own): drop it")
    inputs = {s.path.resolve() for _, s in pairs}  # the files read, so that --out never replaces one
    inputs |= {
        s.path.resolve().with_name(s.path.name.removesuffix(".predictions.jsonl") + ".json")
        for _, s in pairs
        if s.path.name.endswith(".predictions.jsonl")
    }  # the evaluation's own results
    if {out.resolve(), out.with_suffix(".md").resolve()} & inputs:
        raise UserError(
            f"--out {out} (or its table, {out.with_suffix('.md').name}) would overwrite an input or the results of "
            "the evaluation that wrote it: choose another file"
        )
    rescored = not all(s.recorded for _, s in pairs)  # else --data and --split were not used: recorded as null
    if rescored:
        data = data or recorded_setting(pairs, "data", "--data")
        split = split or recorded_setting(pairs, "split", "--split", default="test")
        limit = limit or recorded_limit(pairs)
    scores = compare(pairs, data or "", split or "", limit, resamples, seed, metric_lang)
    result = {
        "data": data if rescored else None,
        "split": split if rescored else None,
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
            if "identical_answers" in d:
                line += f"; {d['identical_answers']} of {row['n']} answers identical"
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
