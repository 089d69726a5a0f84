"""hyperadapt: condition a frozen LLM on a textual instruction, domain, persona or style.

TAGI, MeGan and SwitchCIT on one shared core; see the README.
"""

from hyperadapt.data import Instance, Task, load_tasks
from hyperadapt.models import DEFAULT_MODEL_ID, load_base_model

__version__ = "0.1.0"
__all__ = ["DEFAULT_MODEL_ID", "Instance", "Task", "__version__", "load_base_model", "load_tasks"]
