"""The methods and baselines. Importing this package imports every method package, and each registers
itself once in :mod:`hyperadapt.registry` (name, config class, train and load functions, artefact folder,
what it serves as): ask the registry for names, never a table here.

``load_run(run)`` turns any run folder (or :class:`~hyperadapt.runs.Run`) into a ready method.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hyperadapt.methods import baselines, megan, switch, tagi  # noqa: F401  (each registers its methods)
from hyperadapt.runs import Run


def load_run(run: Run | str | Path, model_and_tokenizer: tuple[Any, Any] | None = None) -> Any:
    """The ready-to-evaluate method of any run: a trained method (multi-task LoRA, TAGI, Hypter, MeGan,
    MetaICL, Reptile), a released checkpoint, a SwitchCIT continual run (routed per input), or a sequential /
    replay / O-LoRA / multi-task stream (the LoRA it ends with, for every input); :meth:`Run.load`.

    Raises ``FileNotFoundError`` for a folder without a run record or an unfinished stream, and ``ValueError``
    for a run that cannot be loaded for evaluation (the oracle: it needs each input's true task) or is loaded
    on another base model.
    """
    return Run.of(run).load(model_and_tokenizer)
