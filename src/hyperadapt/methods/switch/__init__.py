"""SwitchCIT: continual instruction tuning with one frozen LoRA per task and a switch network that routes
every input to its task's adapter (Wu et al. 2024), with a calibrated reject option.

The stream, the runner and the baselines are ``hyperadapt.methods.continual``; this package adds the switch
(``router.py``), its config (``config.py``) and the learner (``learner.py``, registered as ``switchcit``).
Entry points::

    results = run_stream(cfg, "runs/switch", "switchcit")            # hyperadapt.methods.continual.run_stream
    add_task("runs/switch", *load_task_spec("synthetic:plural"))
    method = load_switch("runs/switch")                              # a harness method
    answer_inputs("runs/switch", ["Definition: ...\n\nInput: ..."], [])  # methods.inputs: (input, answer, route)
"""

from hyperadapt.methods.continual import LEARNERS
from hyperadapt.methods.continual.learners import single_lora_methods
from hyperadapt.methods.continual.runner import load_final_adapter
from hyperadapt.methods.continual.stream import ADAPTERS
from hyperadapt.methods.switch.config import RouterConfig, SwitchConfig
from hyperadapt.methods.switch.learner import (
    METHOD,
    SwitchLearner,
    SwitchMethod,
    add_task,
    load_switch,
    load_task_spec,
    upgrade_config,
)
from hyperadapt.methods.switch.router import RetentionBuffer, Routing, SwitchRouter
from hyperadapt.registry import register_method


def _register_streams() -> None:
    """Every continual learner as a method (they all run on ``SwitchConfig``, the one config of SwitchCIT and
    its baselines): SwitchCIT routes each input; the streams that end with one LoRA serve it for every input;
    the oracle (each input's true task) does not load."""
    for name in LEARNERS:
        load = load_switch if name == METHOD else load_final_adapter if name in single_lora_methods() else None
        serves = "input" if name == METHOD else "fixed" if load is not None else None
        register_method(
            name,
            SwitchConfig,
            kind="continual",
            load=load,
            folder=ADAPTERS,
            serves_as=serves,
            upgrade_config=upgrade_config,
        )


_register_streams()

__all__ = [
    "RetentionBuffer",
    "RouterConfig",
    "Routing",
    "SwitchConfig",
    "SwitchLearner",
    "SwitchMethod",
    "SwitchRouter",
    "add_task",
    "load_switch",
    "load_task_spec",
]
