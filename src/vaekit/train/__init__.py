"""Training: :func:`fit`, one plain loop with no framework between reader and math.

Minibatch stochastic gradient ascent on a bound (ELBO or IWAE) with reparameterised samples, as in
Kingma & Welling's AEVB algorithm. The data set lives on the model's device; shuffling and dynamic
binarisation happen there with a seeded generator, so a run repeats exactly on CPU.

- :mod:`.config`: :class:`TrainConfig`, its options and constants, the errors;
- :mod:`.optim`: the optimizers and the learning-rate schedule;
- :mod:`.run`: the run folder over a run's life (set aside, resume checks, checkpoints, metrics);
- :mod:`.step`: the step and the epoch record both loops share, and the eager loop;
- :mod:`.stopping`: early stopping on the validation ELBO (``patience``) and the best epoch's
  weights, which a run keeps; :mod:`.sizing`: settings chosen from a table's size;
- :mod:`.fast`: the CUDA-graph fast path, which ``fit`` takes on a CUDA device where it applies
  (``fast="auto"``); where it cannot, the eager loop runs and every record says why;
- :mod:`.loop`: :func:`fit`, which inside a process group (``torchrun``) shares each global
  batch over the processes and is the one-process run up to the order of sums
  (:mod:`vaekit.dist`).
"""

from ..checkpoint import load_training_state
from ..data.checks import as_tensor
from ..estimators import check_data
from ..models.base import model_terms
from ..objectives import OBJECTIVES
from .config import (
    AUTO_COMPILE_STEPS,
    BINARIZE,
    CHECKPOINT_SECONDS,
    FAST,
    IWAE_PASSES,
    IWAE_STAGES,
    LR_SCHEDULES,
    OPTIMIZERS,
    PRECISIONS,
    RESIDENT,
    RESIDENT_FRACTION,
    RESUMABLE,
    History,
    TrainConfig,
    TrainingError,
    TrainingInterrupted,
)
from .fast import DeviceMetrics, FastRun, choose_loop, select_path
from .loop import fit
from .optim import (
    ADAGRAD_EPS,
    COMPILE_OPTIONS,
    FlatAdagrad,
    FlatAdam,
    FlatOptimizer,
    adagrad_update,
    adam_update,
    flat_optimizer,
    learning_rate,
    make_optimizer,
    set_learning_rate,
)
from .run import (
    RunFolder,
    check_resumable,
    fingerprint,
    load_optimizer_state,
    load_weights,
    no_epoch_fits,
)
from .step import (
    EagerLoop,
    autocast_dtype,
    bernoulli_16bit,
    binarize,
    kl_weight,
)

__all__ = [
    "ADAGRAD_EPS",
    "AUTO_COMPILE_STEPS",
    "BINARIZE",
    "CHECKPOINT_SECONDS",
    "COMPILE_OPTIONS",
    "FAST",
    "IWAE_PASSES",
    "IWAE_STAGES",
    "LR_SCHEDULES",
    "OBJECTIVES",
    "OPTIMIZERS",
    "PRECISIONS",
    "RESIDENT",
    "RESIDENT_FRACTION",
    "RESUMABLE",
    "DeviceMetrics",
    "EagerLoop",
    "FastRun",
    "FlatAdagrad",
    "FlatAdam",
    "FlatOptimizer",
    "History",
    "RunFolder",
    "TrainConfig",
    "TrainingError",
    "TrainingInterrupted",
    "adagrad_update",
    "adam_update",
    "as_tensor",
    "autocast_dtype",
    "bernoulli_16bit",
    "binarize",
    "check_data",
    "check_resumable",
    "choose_loop",
    "fingerprint",
    "fit",
    "flat_optimizer",
    "kl_weight",
    "learning_rate",
    "load_optimizer_state",
    "load_training_state",
    "load_weights",
    "make_optimizer",
    "model_terms",
    "no_epoch_fits",
    "select_path",
    "set_learning_rate",
]
