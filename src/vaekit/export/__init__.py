"""A model's networks as ONNX files, for runtimes other than PyTorch (the ``onnx`` extra).

:func:`export_onnx` traces each of a model's graphs (:mod:`.graphs`: encoder.onnx, decoder.onnx
and, for the two-layer model, prior.onnx) with PyTorch's TorchScript-based exporter, with a
dynamic batch axis, in float32, checks each file with ``onnx.checker`` and, where onnxruntime is
installed, compares its outputs with PyTorch's on random inputs at batch sizes 1, 3 and 17. It
returns the files' bytes and export.json, the description of every input and output (names,
dtypes, shapes with "batch" first, meanings), the likelihood, the latent size, the prior's
parameters and the vaekit version. :func:`write_export` writes them into a folder;
:func:`save_onnx` does both::

    from vaekit.export import save_onnx
    save_onnx(vaekit.load("runs/digits"), "deploy/digits")

Only the networks are exported: turning WAV files into the log-mel spectrograms an audio model
takes (and Griffin-Lim back to sound) and a text model's token-by-token generation loop stay
outside the graphs; export.json holds what is needed to do them (the audio settings, the vocab).
"""

from __future__ import annotations

import copy
import io
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Independent, MixtureSameFamily

from .. import __version__
from ..errors import ConfigError, VaekitError
from ..files import write_file
from ..models.registry import model_table
from .graphs import Graph, Port, Unexportable, categorical_graphs, hvae_graphs, vae_graphs
from .text import text_graphs

__all__ = [
    "CHECK_BATCHES",
    "EXPORT_FILE",
    "KINDS",
    "ONNX_EXTRA",
    "OPSET",
    "Export",
    "ExportError",
    "export_onnx",
    "graphs",
    "max_abs_diff",
    "require_onnx",
    "save_onnx",
    "write_export",
]

#: The ONNX operator set the files use (onnxruntime 1.14 and later run it).
OPSET = 17
#: The description written beside the graphs.
EXPORT_FILE = "export.json"
FORMAT, FORMAT_VERSION = "vaekit-onnx", 1
#: Batch sizes at which the exported graphs are compared with PyTorch.
CHECK_BATCHES = (1, 3, 17)
#: onnxruntime's outputs may differ from PyTorch's by this much, relative to max(1, |output|).
CHECK_TOLERANCE = 1e-4
ONNX_EXTRA = "ONNX export needs the onnx extra: pip install 'vaekit[onnx]'"


#: Model kind -> the builder of its graphs.
KINDS: dict[str, Callable[[Any], list[Graph | Unexportable]]] = {
    "vae": vae_graphs,
    "hvae": hvae_graphs,
    "categorical": categorical_graphs,
    "text": text_graphs,
}


def graphs(model: Any) -> list[Graph | Unexportable]:
    """The graphs of ``model`` (in float32, on the CPU, as given): each a :class:`Graph`, or an
    :class:`Unexportable` naming the part that has none; a kind with no entry in KINDS gives one
    Unexportable."""
    kind = getattr(model, "kind", type(model).__name__)
    builder = KINDS.get(kind)
    if builder is None:
        kinds = ", ".join(KINDS)
        return [Unexportable(f"model kind {kind!r} has no ONNX export (kinds: {kinds})")]
    return builder(model)


class ExportError(VaekitError):
    """A model, or the folder to write it into, cannot be exported as asked."""


@dataclass
class Export:
    """What :func:`export_onnx` made: ``files`` (name -> bytes, export.json last), the
    ``description`` that export.json holds, and ``notes``: one line for each part of the model
    that is not in the files, saying why."""

    files: dict[str, bytes]
    description: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def require_onnx() -> Any:
    """The ``onnx`` module; an :class:`ExportError` saying how to install it when missing."""
    try:
        import onnx
    except ImportError:
        raise ExportError(ONNX_EXTRA) from None
    return onnx


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime


def export_onnx(model: Any, *, media: dict[str, Any] | None = None, check: bool = True) -> Export:
    """``model``'s graphs as ONNX files and their description (see the module's docstring).

    ``media``: the run's ``data.media`` table (audio settings, text), copied into export.json.
    ``check``: compare onnxruntime's outputs with PyTorch's (when onnxruntime is installed).
    The model is copied (float32, CPU, eval mode); it is left as it was. Parts that cannot be
    exported are left out and named in ``notes``; an :class:`ExportError` when none can be.
    """
    onnx = require_onnx()
    ort = _onnxruntime() if check else None
    model = copy.deepcopy(model).float().cpu().eval()
    files: dict[str, bytes] = {}
    described: dict[str, Any] = {}
    diffs: dict[str, float] = {}
    notes: list[str] = []
    with torch.no_grad():
        for graph in graphs(model):
            if isinstance(graph, Unexportable):
                notes.append(str(graph))
                continue
            try:
                data, outputs = _export(onnx, graph, model)
            except Unexportable as err:
                notes.append(str(err))
                continue
            files[f"{graph.name}.onnx"] = data
            described[graph.name] = _describe_graph(graph, outputs)
            if ort is not None:
                diffs[graph.name] = _check(ort, graph, data)
    if not files:
        raise ExportError(f"nothing of this model can be exported to ONNX: {'; '.join(notes)}")
    notes += _media_notes(media)
    description = _description(model, described, media, notes)
    if ort is not None:
        description["check"] = {
            "onnxruntime": ort.__version__,
            "batch_sizes": list(CHECK_BATCHES),
            "max_abs_diff": diffs,
        }
    files[EXPORT_FILE] = (json.dumps(description, indent=2) + "\n").encode()
    return Export(files, description, notes)


def _export(onnx: Any, graph: Graph, model: Any) -> tuple[bytes, tuple[Port, ...]]:
    """The ONNX bytes of ``graph`` (checked by onnx.checker) and its output ports."""
    example = graph.draw(2, torch.Generator().manual_seed(0))
    results = graph.module(*example)
    outputs = tuple(
        Port(name, _dtype(t), tuple(t.shape[1:]), meaning)
        for (name, meaning), t in zip(graph.outputs, results, strict=True)
    )
    names = [p.name for p in graph.inputs] + [p.name for p in outputs]
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():  # the exporter's deprecation notice, tracer warnings
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph.module,
                example,
                buffer,
                dynamo=False,
                opset_version=OPSET,
                input_names=[p.name for p in graph.inputs],
                output_names=[p.name for p in outputs],
                dynamic_axes={name: {0: "batch"} for name in names},
            )
    except Exception as err:  # any exporter failure leaves this graph out, named
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise Unexportable(f"{graph.name}: the ONNX exporter failed: {first}") from None
    proto = onnx.load_from_string(buffer.getvalue())
    _set_shapes(onnx, proto, graph.inputs, outputs)
    proto.doc_string = graph.meaning
    props = {"vaekit_version": __version__, "kind": model.kind, "graph": graph.name}
    onnx.helper.set_model_props(proto, props)
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString(), outputs


def _dtype(t: Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _set_shapes(onnx: Any, proto: Any, inputs: tuple[Port, ...], outputs: tuple[Port, ...]) -> None:
    """Name the batch axis "batch" and fix the others on every input and output."""
    ports = {p.name: p for p in (*inputs, *outputs)}
    for value in (*proto.graph.input, *proto.graph.output):
        port = ports[value.name]
        shape = value.type.tensor_type.shape
        del shape.dim[:]
        shape.dim.add().dim_param = "batch"
        for size in port.shape:
            shape.dim.add().dim_value = size


def _describe_graph(graph: Graph, outputs: tuple[Port, ...]) -> dict[str, Any]:
    return {
        "file": f"{graph.name}.onnx",
        "meaning": graph.meaning,
        "inputs": [p.describe() for p in graph.inputs],
        "outputs": [p.describe() for p in outputs],
    }


def _check(ort: Any, graph: Graph, data: bytes) -> float:
    """The largest |onnxruntime - PyTorch| over ``graph``'s outputs at :data:`CHECK_BATCHES`;
    an :class:`ExportError` when it is beyond :data:`CHECK_TOLERANCE`."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(1)
    worst, scale = 0.0, 1.0
    for batch in CHECK_BATCHES:
        inputs = graph.draw(batch, g)
        feed = {p.name: t.numpy() for p, t in zip(graph.inputs, inputs, strict=True)}
        got = session.run(None, feed)
        for ours, theirs in zip(graph.module(*inputs), got, strict=True):
            worst = max(worst, max_abs_diff(ours, torch.from_numpy(theirs)))
            finite = ours[torch.isfinite(ours)]
            scale = max(scale, float(finite.abs().max()) if finite.numel() else 0.0)
    if not worst <= CHECK_TOLERANCE * scale:
        raise ExportError(
            f"{graph.name}.onnx: onnxruntime's outputs differ from PyTorch's by {worst:.3g}; "
            "nothing was written (please report this with the model's config.json)"
        )
    return worst


def max_abs_diff(a: Tensor, b: Tensor) -> float:
    """max |a - b| over the elements, counting equal infinities as equal (0) and a NaN or
    unequal infinity anywhere as inf. Shapes must be equal."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.double(), b.double()
    same = (a == b) | (torch.isnan(a) & torch.isnan(b))
    diff = torch.where(same, torch.zeros_like(a), (a - b).abs())
    return float(torch.nan_to_num(diff, nan=math.inf).max()) if diff.numel() else 0.0


# -- export.json --------------------------------------------------------------------------------


def _description(
    model: Any, described: dict[str, Any], media: dict[str, Any] | None, notes: list[str]
) -> dict[str, Any]:
    c = model.config
    out: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vaekit_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "opset": OPSET,
        "dtype": "float32",
        "kind": model.kind,
        "likelihood": c.likelihood,
        "latent_dim": int(c.latent_dim),
        "data_shape": list(c.data_shape),
        "condition_dim": int(getattr(c, "condition_dim", 0)),
        "prior": _prior(model),
        "graphs": described,
        "model": model_table(c),
    }
    if model.kind == "text":
        out["tokens"] = {
            "vocab": list(c.vocab),
            "level": c.level,
            "specials": {"<pad>": 0, "<end>": 1, "<start>": 2, "<unk>": 3},
            "first_vocab_id": 4,
        }
    if media:
        out["media"] = media
    out["not_exported"] = notes
    return out


def _prior(model: Any) -> dict[str, Any]:
    """p(z) (p(z2) for the two-layer model) as numbers: a mixture of diagonal Gaussians
    (log_weights (K,), mean and log_scale (K, D); one component for a Gaussian prior), or
    categorical log_probs (n_latents, n_categories)."""
    c = model.config
    name = "standard_normal" if model.kind == "hvae" else getattr(c, "prior", "standard_normal")
    latent = "z2" if model.kind == "hvae" else "z"
    pz = model.pz()
    if isinstance(pz, MixtureSameFamily):
        log_weights = torch.log_softmax(pz.mixture_distribution.logits, -1)
        base = pz.component_distribution.base_dist
        loc, scale = base.loc, base.scale
    elif isinstance(pz, Independent):
        base = pz.base_dist
        loc, scale = base.loc[None], base.scale[None]
        log_weights = torch.zeros(1)
    else:  # categorical latents
        return {"name": name, "of": latent, "log_probs": _numbers(pz.logits)}
    return {
        "name": name,
        "of": latent,
        "log_weights": _numbers(log_weights),
        "mean": _numbers(loc),
        "log_scale": _numbers(scale.log()),
    }


def _numbers(t: Tensor) -> Any:
    return t.detach().double().cpu().tolist()


def _media_notes(media: dict[str, Any] | None) -> list[str]:
    if isinstance(media, dict) and media.get("kind") == "audio":
        return [
            "audio: the graphs take and give normalised log-mel spectrograms; WAV to "
            "spectrogram (STFT, mel bands) and Griffin-Lim back to sound are not in them "
            "(export.json's media table has the settings)"
        ]
    return []


# -- writing ------------------------------------------------------------------------------------


def earlier_export(folder: Path) -> list[str] | None:
    """The files of an export written earlier into ``folder`` (its export.json among them), or
    None when the folder holds none."""
    try:
        old = json.loads((folder / EXPORT_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(old, dict) or old.get("format") != FORMAT:
        return None
    listed = old.get("graphs") if isinstance(old.get("graphs"), dict) else {}
    files = [g.get("file") for g in listed.values() if isinstance(g, dict)]
    return [EXPORT_FILE, *(f for f in files if isinstance(f, str) and "/" not in f)]


def check_export_folder(folder: Path) -> None:
    """Refuse a ``folder`` that is a file, or that holds files other than an earlier export's
    (a run folder, say): writing there would mix or replace what is not the export's."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"output {str(folder)!r} is a file; give a folder for the ONNX files")
    if not folder.is_dir():
        return
    present = sorted(p.name for p in folder.iterdir())
    ours = earlier_export(folder) or []
    others = [name for name in present if name not in ours]
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise ConfigError(
            f"output folder {str(folder)!r} holds other files ({shown}); give a new or empty "
            "folder, or one that holds an earlier export only"
        )


def write_export(export: Export, folder: str | Path) -> list[Path]:
    """Write ``export``'s files into ``folder`` (made if missing), each atomically, export.json
    last; the files of an earlier export there that this one does not write are removed.
    Refused (:class:`ConfigError`, nothing written) for a folder holding other files."""
    folder = Path(folder)
    check_export_folder(folder)
    stale = set(earlier_export(folder) or []) - set(export.files)
    written = [write_file(folder / name, data, ExportError) for name, data in export.files.items()]
    for name in sorted(stale):
        (folder / name).unlink(missing_ok=True)
    return written


def save_onnx(model: Any, folder: str | Path, *, media: dict[str, Any] | None = None) -> Export:
    """Export ``model`` (:func:`export_onnx`) into ``folder`` (:func:`write_export`), the folder
    checked first; returns the :class:`Export`, whose ``notes`` name any part left out."""
    check_export_folder(Path(folder))
    export = export_onnx(model, media=media)
    write_export(export, folder)
    return export
