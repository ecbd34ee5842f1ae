"""trainops: fused C++/CUDA kernels for the parts of a training step every loop runs.

Gradient norms and clipping (drop-in for torch.nn.utils)::

    import trainops
    total = trainops.clip_grad_norm_(model.parameters(), max_norm=1.0)

Training-loop toolkit: ``GradMonitor`` (gradient norms and clip rate without
host syncs), ``diagnose`` (what a loss curve says), ``EarlyStopping``.

Counter-based weight initialisation (drop-in for torch.nn.init, plus whole-model
plans)::

    trainops.init.init_module_(model, scheme="auto", seed=0)

See ``trainops info`` for what this build contains.
"""

from . import _extension, init
from .clip import clip_grad_norm_, clip_grad_value_, clip_grads_with_norm_, get_total_norm, grad_norms
from .diagnose import Diagnosis, diagnose
from .early_stopping import EarlyStopping
from .monitor import GradMonitor
from .version import __version__

__all__ = [
    "Diagnosis",
    "EarlyStopping",
    "GradMonitor",
    "__version__",
    "clip_grad_norm_",
    "clip_grad_value_",
    "clip_grads_with_norm_",
    "diagnose",
    "get_total_norm",
    "grad_norms",
    "init",
]
