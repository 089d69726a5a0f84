"""SwitchCIT: continual instruction tuning with one frozen LoRA per task and a switch network that routes
every input to its task's adapter (Wu et al. 2024), with a calibrated reject option.

Entry points::

    results = run_stream(cfg, "runs/switch", method="switchcit")   # or a baseline: sequential, replay, ...
    add_task("runs/switch", *load_task_spec("synthetic:plural"))
    method = load_switch("runs/switch")                              # a harness method
    generate("runs/switch", ["Definition: ...\n\nInput: ..."])       # [(answer, task or None)]
"""

from hyperadapt.methods.switch.config import SwitchConfig
from hyperadapt.methods.switch.continual import (
    METHODS,
    SwitchMethod,
    add_task,
    generate,
    load_switch,
    load_task_spec,
    run_stream,
)
from hyperadapt.methods.switch.router import RetentionBuffer, Routing, SwitchRouter

__all__ = [
    "METHODS",
    "RetentionBuffer",
    "Routing",
    "SwitchConfig",
    "SwitchMethod",
    "SwitchRouter",
    "add_task",
    "generate",
    "load_switch",
    "load_task_spec",
    "run_stream",
]
