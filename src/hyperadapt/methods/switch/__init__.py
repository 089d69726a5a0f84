"""SwitchCIT: continual instruction tuning with one frozen LoRA per task and a switch network that routes
every input to its task's adapter (Wu et al. 2024), with a calibrated reject option.

The stream, the runner and the baselines are ``hyperadapt.methods.continual``; this package adds the switch
(``router.py``), its config (``config.py``) and the learner (``learner.py``, registered as ``switchcit``).
Entry points::

    results = run_stream(cfg, "runs/switch", "switchcit")            # hyperadapt.methods.continual.run_stream
    add_task("runs/switch", *load_task_spec("synthetic:plural"))
    method = load_switch("runs/switch")                              # a harness method
    generate("runs/switch", ["Definition: ...\n\nInput: ..."])       # [(answer, task or None)]
"""

from hyperadapt.methods.switch.config import RouterConfig, SwitchConfig
from hyperadapt.methods.switch.learner import (
    SwitchLearner,
    SwitchMethod,
    add_task,
    generate,
    load_switch,
    load_task_spec,
)
from hyperadapt.methods.switch.router import RetentionBuffer, Routing, SwitchRouter

__all__ = [
    "RetentionBuffer",
    "RouterConfig",
    "Routing",
    "SwitchConfig",
    "SwitchLearner",
    "SwitchMethod",
    "SwitchRouter",
    "add_task",
    "generate",
    "load_switch",
    "load_task_spec",
]
