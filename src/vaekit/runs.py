"""The layout of a run folder: the files training writes and the outputs the commands derive.

One list, read by the checkpoint code (which files a new run sets aside) and by the commands
(where their outputs go by default).
"""

from __future__ import annotations

CONFIG_FILE = "config.json"  # format, versions, the model, train and data tables
WEIGHTS_FILE = "model.safetensors"  # the trained weights
STATE_FILE = "checkpoint.safetensors"  # the training state a resume continues from
METRICS_FILE = "metrics.jsonl"  # one JSON record per epoch
#: The files that make a run folder.
RUN_NAMES = (CONFIG_FILE, WEIGHTS_FILE, STATE_FILE, METRICS_FILE)
#: Where a new run started in a folder keeps the run it replaces until it has trained.
PREVIOUS_FOLDER = ".vaekit-previous"
#: The lock file of the process writing the run (:mod:`vaekit.lock`); a new run, a set-aside
#: and a restore leave it alone.
LOCK_FILE = ".vaekit-lock"

#: Pictures the commands draw into RUN/figures/ (NAME.png) by default.
FIGURES = (
    "samples",
    "reconstructions",
    "decoded",
    "interpolation",
    "manifold",
    "latents",
    "curves",
    "traverse",
)
#: Folders of WAV files and their spectrograms that audio runs write by default.
DERIVED_SOUND_FOLDERS = ("samples", "reconstructions", "decoded", "interpolation")
EVAL_FILE = "eval.json"
DISENTANGLEMENT_FILE = "disentanglement.json"  # vaekit evaluate --disentanglement
LATENTS_FILE = "latents.npy"
DECODED_FILE = "decoded.npy"
#: Where ``vaekit export`` writes a run's ONNX files by default, and the files it writes there.
ONNX_FOLDER = "onnx"
ONNX_FILES = ("encoder.onnx", "decoder.onnx", "prior.onnx", "export.json")
#: Where ``vaekit score`` writes by default.
SCORES_FILE = "scores.csv"
#: The folder ``vaekit train --log tensorboard`` writes its event files into.
TENSORBOARD_FOLDER = "tensorboard"
#: What the commands derive from a run's weights and write into its folder by default. A new
#: run started in the folder removes them with the old weights, so that none is left to describe
#: a model it did not come from; other files are left alone.
DERIVED_FILES = (
    EVAL_FILE,
    DISENTANGLEMENT_FILE,
    LATENTS_FILE,
    DECODED_FILE,
    SCORES_FILE,
    *(f"{name}.txt" for name in DERIVED_SOUND_FOLDERS),  # a text run's
    *(f"{name}.csv" for name in DERIVED_SOUND_FOLDERS),  # a table run's
    *(f"figures/{name}.png" for name in FIGURES),
    *(f"{ONNX_FOLDER}/{name}" for name in ONNX_FILES),
)


def figure(name: str) -> str:
    """The default path of the picture ``name`` inside a run folder."""
    if name not in FIGURES:
        raise ValueError(f"{name!r} is not one of the run's figures")
    return f"figures/{name}.png"
