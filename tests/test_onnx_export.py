"""ONNX export: every kind's graphs pass onnx.checker, and ONNX Runtime gives what the model's
own distributions give (to 1e-5, max abs) at batch sizes 1, 3 and 17; export.json describes
them; ``vaekit export`` writes them for a run trained by the command line, and bad input is one
line with exit status 2 and nothing of the run touched."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli, snapshot
from torch import Tensor, nn

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (vaekit[onnx])")
onnx = pytest.importorskip("onnx", reason="onnx is not installed (vaekit[onnx])")

import vaekit  # noqa: E402
from vaekit.export import (  # noqa: E402
    ONNX_EXTRA,
    ExportError,
    export_onnx,
    max_abs_diff,
    write_export,
)
from vaekit.likelihoods import Likelihood  # noqa: E402
from vaekit.models import HVAE, VAE, CategoricalVAE, TextVAE  # noqa: E402
from vaekit.models.text import masked_log_softmax  # noqa: E402
from vaekit.runs import DERIVED_FILES  # noqa: E402
from vaekit.tokenizer import END, PAD, START, lengths  # noqa: E402

BATCHES = (1, 3, 17)
TOLERANCE = 1e-5


def _build(kind: str) -> nn.Module:
    torch.manual_seed(0)
    small = {"latent_dim": 3, "hidden": (8,)}
    models: dict[str, Callable[[], nn.Module]] = {
        "mlp": lambda: VAE(data_shape=(12,), **small),
        "mlp-conditional-gaussian": lambda: VAE(
            data_shape=(12,), condition_dim=4, likelihood="gaussian", activation="relu", **small
        ),
        "mlp-standardized": lambda: VAE(
            data_shape=(12,),
            likelihood="gaussian",
            data_shift=tuple(float(10 * i) for i in range(12)),
            data_scale=tuple(0.5 + i for i in range(12)),
            **small,
        ),
        "mlp-shared-learned-prior": lambda: VAE(
            data_shape=(12,), likelihood="gaussian_shared", prior="learned_gaussian", **small
        ),
        "mlp-fixed-vamp": lambda: VAE(
            data_shape=(12,), likelihood="gaussian_fixed", prior="vamp", **small
        ),
        "conv-logistic-mixture": lambda: VAE(
            data_shape=(1, 8, 8),
            network="conv",
            channels=(4, 8),
            **small,
            likelihood="discretized_logistic",
            likelihood_components=2,
        ),
        "conv-conditional-rgb": lambda: VAE(
            data_shape=(3, 8, 8), network="conv", channels=(4,), condition_dim=3, **small
        ),
        "resnet-flat-per-dim-mog": lambda: VAE(
            data_shape=(64,),
            image_shape=(1, 8, 8),
            network="resnet",
            channels=(4, 8),
            res_blocks=2,
            likelihood="gaussian_per_dim",
            prior="mog",
            **small,
        ),
        "hvae": lambda: HVAE(
            data_shape=(12,), hidden=(8,), latent_dim=4, hidden2=(6,), latent_dim2=2
        ),
        "categorical": lambda: CategoricalVAE(
            data_shape=(12,), n_latents=2, n_categories=3, hidden=(8,)
        ),
        "text": lambda: TextVAE(
            data_shape=(7,), latent_dim=3, hidden=(8, 8), embed_dim=5, vocab=tuple("abcde")
        ),
    }
    model = models[kind]().eval()
    with torch.no_grad():  # learned variances away from their start, so they are tested
        for name, p in model.named_parameters():
            if "raw_logvar" in name or "log_scale" in name:
                p.add_(torch.randn_like(p) * 0.5)
    return model


KINDS = [
    "mlp",
    "mlp-conditional-gaussian",
    "mlp-standardized",
    "mlp-shared-learned-prior",
    "mlp-fixed-vamp",
    "conv-logistic-mixture",
    "conv-conditional-rgb",
    "resnet-flat-per-dim-mog",
    "hvae",
    "categorical",
    "text",
]


def _session(data: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _run(session: ort.InferenceSession, **inputs: Tensor) -> dict[str, Tensor]:
    names = [o.name for o in session.get_outputs()]
    got = session.run(None, {k: v.numpy() for k, v in inputs.items()})
    return {n: torch.from_numpy(a) for n, a in zip(names, got, strict=True)}


def _gaussian(dist: torch.distributions.Distribution) -> dict[str, Tensor]:
    base = dist.base_dist
    return {"mean": base.loc, "logvar": 2 * base.scale.log()}


def _decoder_reference(model: nn.Module, px_z: torch.distributions.Distribution) -> dict:
    base = px_z.base_dist
    if model.config.likelihood == "bernoulli":
        return {"logits": base.logits}
    if model.config.likelihood == "discretized_logistic":
        return {"logits": base.logits, "means": base.means, "log_scales": base.log_scales}
    mean = px_z.mean  # in the data's units, standardised or not
    return {"mean": mean, "logvar": px_z.variance.log().expand_as(mean)}


def _examples(model: nn.Module, n: int, g: torch.Generator) -> Tensor:
    shape = tuple(model.config.data_shape)
    if model.likelihood.support == "unit":
        return torch.round(torch.rand((n, *shape), generator=g) * 255) / 255
    x = torch.randn((n, *shape), generator=g)
    if getattr(model, "data_scale", None) is not None:  # rows in the data's own units
        x = model.data_shift.float() + model.data_scale.float() * x
    return x


def _ids(model: TextVAE, n: int, g: torch.Generator) -> Tensor:
    t, v = model.config.data_dim, model.tokenizer.size
    count = torch.randint(1, t + 1, (n, 1), generator=g)
    tokens = torch.randint(4, v, (n, t), generator=g)
    pos = torch.arange(t)[None]
    return torch.where(pos < count - 1, tokens, torch.where(pos == count - 1, END, PAD))


def _compare(kind: str, model: nn.Module, sessions: dict, batch: int, g: torch.Generator) -> dict:
    """Max abs difference between ONNX Runtime and the model's distributions, per output."""
    diffs: dict[str, float] = {}

    def agree(prefix: str, ours: dict[str, Tensor], theirs: dict[str, Tensor]) -> None:
        assert set(ours) == set(theirs), (ours.keys(), theirs.keys())
        for name, value in ours.items():
            assert theirs[name].shape == value.shape, (name, theirs[name].shape, value.shape)
            diffs[f"{prefix}.{name}"] = max_abs_diff(value.float(), theirs[name])

    c = model.config
    if kind == "text":
        ids = _ids(model, batch, g)
        agree("encoder", _gaussian(model.encode(ids)), _run(sessions["encoder"], ids=ids))
        z = torch.randn((batch, c.latent_dim), generator=g)
        (log_probs,) = _run(sessions["decoder"], z=z, ids=ids).values()
        # the sequence's log-probability, summed over its tokens, is the model's log p(x|z)
        picked = log_probs.gather(-1, ids[..., None])[..., 0]
        total = torch.where(ids != PAD, picked, torch.zeros_like(picked)).sum(-1)
        diffs["decoder.log_p(x|z)"] = max_abs_diff(model.decode(z).log_prob(ids), total)
        # and each row given the tokens before it is the model's, where the model defines it
        inputs = torch.cat([torch.full_like(ids[:, :1], START), ids[:, :-1]], dim=1)
        ref = masked_log_softmax(model._decoder_logits(z, inputs, lengths(ids)), c.data_dim)
        valid = (torch.arange(c.data_dim)[None] < lengths(ids)[:, None])[..., None]
        fill = torch.zeros_like(ref)
        diffs["decoder.log_probs"] = max_abs_diff(
            torch.where(valid, ref, fill), torch.where(valid, log_probs, fill)
        )
        return diffs
    conditional = getattr(c, "condition_dim", 0)
    x = _examples(model, batch, g)
    kw: dict[str, Tensor] = {}
    if conditional:
        labels = torch.randint(conditional, (batch,), generator=g)
        kw = {"condition": nn.functional.one_hot(labels, conditional).float()}
    qz_x = model.encode(x, **kw)
    ours = {"logits": qz_x.logits} if kind == "categorical" else _gaussian(qz_x)
    agree("encoder", ours, _run(sessions["encoder"], x=x, **kw))
    if kind == "categorical":
        index = torch.randint(c.n_categories, (batch, c.n_latents), generator=g)
        z = nn.functional.one_hot(index, c.n_categories).float().flatten(1)
    else:
        z = torch.randn((batch, c.latent_dim), generator=g)
    px_z = model.decode(z, **kw)
    agree("decoder", _decoder_reference(model, px_z), _run(sessions["decoder"], z=z, **kw))
    if kind == "hvae":
        z2 = torch.randn((batch, c.latent_dim2), generator=g)
        agree("prior", _gaussian(model.pz1_z2(z2)), _run(sessions["prior"], z2=z2))
    return diffs


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_runtime_agrees_with_pytorch(kind: str) -> None:
    model = _build(kind)
    result = export_onnx(model)
    graphs = [name for name in result.files if name.endswith(".onnx")]
    want = ["encoder.onnx", "decoder.onnx"] + (["prior.onnx"] if kind == "hvae" else [])
    assert graphs == want and not result.notes
    for name in graphs:
        onnx.checker.check_model(onnx.load_from_string(result.files[name]), full_check=True)
    sessions = {name[:-5]: _session(result.files[name]) for name in graphs}
    g = torch.Generator().manual_seed(7)
    worst: dict[str, float] = {}
    with torch.no_grad():
        for batch in BATCHES:
            for name, d in _compare(kind, model, sessions, batch, g).items():
                worst[name] = max(worst.get(name, 0.0), d)
    assert max(worst.values()) <= TOLERANCE, worst
    checked = result.description["check"]
    assert checked["batch_sizes"] == list(BATCHES)
    assert max(checked["max_abs_diff"].values()) <= TOLERANCE


def test_greedy_strings_from_onnx_runtime_are_the_models() -> None:
    """A string generated token by token with decoder.onnx (row n of the prefix's log-probs is
    the next token) is the one the model's own greedy decoding gives."""
    model = _build("text")
    sessions = {n[:-5]: _session(b) for n, b in export_onnx(model).files.items() if "onnx" in n}
    z = torch.randn((5, model.config.latent_dim), generator=torch.Generator().manual_seed(3))
    ids = torch.zeros((5, model.config.data_dim), dtype=torch.int64)
    done = torch.zeros(5, dtype=torch.bool)
    for i in range(model.config.data_dim):
        (log_probs,) = _run(sessions["decoder"], z=z, ids=ids).values()
        token = log_probs[:, i].argmax(-1)
        ids[:, i] = torch.where(done, torch.zeros_like(token), token)
        done |= token == END
    with torch.no_grad():
        assert torch.equal(ids.float(), model.decode(z).mean)


def test_export_json_describes_the_graphs() -> None:
    model = _build("resnet-flat-per-dim-mog")
    result = export_onnx(model, media={"kind": None})
    d = json.loads(result.files["export.json"])
    assert d == result.description
    assert d["format"] == "vaekit-onnx" and d["vaekit_version"] == vaekit.__version__
    assert (d["kind"], d["likelihood"], d["latent_dim"]) == ("vae", "gaussian_per_dim", 3)
    assert d["data_shape"] == [64] and d["condition_dim"] == 0 and d["dtype"] == "float32"
    assert d["model"]["network"] == "resnet" and d["model"]["image_shape"] == [1, 8, 8]
    enc, dec = d["graphs"]["encoder"], d["graphs"]["decoder"]
    assert [(p["name"], p["dtype"], p["shape"]) for p in enc["inputs"]] == [
        ("x", "float32", ["batch", 64])
    ]
    assert [(p["name"], p["shape"]) for p in enc["outputs"]] == [
        ("mean", ["batch", 3]),
        ("logvar", ["batch", 3]),
    ]
    assert [(p["name"], p["shape"]) for p in dec["inputs"]] == [("z", ["batch", 3])]
    assert [(p["name"], p["shape"]) for p in dec["outputs"]] == [
        ("mean", ["batch", 64]),
        ("logvar", ["batch", 64]),
    ]
    # the files say the same as export.json: names, dtypes and shapes, "batch" dynamic
    for graph in (enc, dec):
        session = _session(result.files[graph["file"]])
        for ports, values in ((graph["inputs"], session.get_inputs()),
                              (graph["outputs"], session.get_outputs())):  # fmt: skip
            assert [(p["name"], p["shape"]) for p in ports] == [(v.name, v.shape) for v in values]
            assert all(v.type == "tensor(float)" for v in values)
    # the prior's numbers are the model's mixture
    log_w, loc, log_scale = model.prior.components()
    prior = d["prior"]
    assert prior["name"] == "mog" and prior["of"] == "z"
    assert np.allclose(prior["log_weights"], log_w.detach().numpy(), atol=1e-6)
    assert np.allclose(prior["mean"], loc.detach().numpy(), atol=1e-6)
    assert np.allclose(prior["log_scale"], log_scale.detach().numpy(), atol=1e-6)
    assert "check" in d and d["not_exported"] == []


def test_export_json_of_other_kinds() -> None:
    hvae = export_onnx(_build("hvae")).description
    assert hvae["prior"] == {
        "name": "standard_normal", "of": "z2", "log_weights": [0.0],
        "mean": [[0.0, 0.0]], "log_scale": [[0.0, 0.0]],
    }  # fmt: skip
    assert [p["name"] for p in hvae["graphs"]["prior"]["inputs"]] == ["z2"]
    cat_model = _build("categorical")
    cat = export_onnx(cat_model).description
    assert cat["graphs"]["encoder"]["outputs"][0]["shape"] == ["batch", 2, 3]
    assert np.allclose(cat["prior"]["log_probs"], np.log(np.full((2, 3), 1 / 3)))
    text = export_onnx(_build("text")).description
    ids = text["graphs"]["encoder"]["inputs"][0]
    assert (ids["name"], ids["dtype"], ids["shape"]) == ("ids", "int64", ["batch", 7])
    assert text["graphs"]["decoder"]["outputs"][0]["shape"] == ["batch", 7, 9]
    assert text["tokens"]["vocab"] == list("abcde") and text["tokens"]["specials"]["<end>"] == 1
    cond = export_onnx(_build("conv-conditional-rgb")).description
    assert cond["condition_dim"] == 3
    for graph in ("encoder", "decoder"):
        port = cond["graphs"][graph]["inputs"][1]
        assert (port["name"], port["shape"]) == ("condition", ["batch", 3])


def test_audio_runs_export_their_networks_and_say_what_is_not_in_them(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = VAE(data_shape=(1, 16, 8), network="conv", channels=(4,), latent_dim=2, hidden=(8,),
                likelihood="gaussian").eval()  # fmt: skip
    media = {"kind": "audio", "sample_rate": 8000, "n_mels": 16, "frames": 8}
    result = export_onnx(model, media=media)
    assert [n for n in result.files] == ["encoder.onnx", "decoder.onnx", "export.json"]
    (note,) = result.notes
    assert note.startswith("audio: ") and "Griffin-Lim" in note and "\n" not in note
    assert result.description["media"] == media
    assert result.description["not_exported"] == [note]


class _Laplace(Likelihood):
    """A likelihood vaekit does not know how to export."""

    n_params = 1

    def forward(self, params: Tensor) -> torch.distributions.Distribution:
        (loc,) = self._split(params)
        return self._event(torch.distributions.Laplace(loc, torch.ones_like(loc)))


def test_a_part_that_cannot_be_exported_is_named_and_the_rest_written(tmp_path: Path) -> None:
    model = _build("mlp")
    model.likelihood = _Laplace(model.config.data_shape)
    result = export_onnx(model)
    assert list(result.files) == ["encoder.onnx", "export.json"]
    (note,) = result.notes
    assert note.startswith("decoder: likelihood _Laplace has no ONNX form")
    assert result.description["not_exported"] == [note]
    written = write_export(result, tmp_path / "out")
    assert sorted(p.name for p in written) == ["encoder.onnx", "export.json"]


def test_a_model_with_nothing_to_export_is_refused() -> None:
    class Unknown(VAE):
        kind = "unknown-kind"

    with pytest.raises(ExportError, match="model kind 'unknown-kind' has no ONNX export"):
        export_onnx(Unknown(data_shape=(4,), latent_dim=2, hidden=(3,)))


def test_writing_into_folders(tmp_path: Path) -> None:
    """A new or empty folder, or an earlier export's (whose files this one replaces, stale ones
    removed); never a folder that holds anything else."""
    out = tmp_path / "out"
    write_export(export_onnx(_build("hvae"), check=False), out)
    assert sorted(p.name for p in out.iterdir()) == [
        "decoder.onnx", "encoder.onnx", "export.json", "prior.onnx"
    ]  # fmt: skip
    write_export(export_onnx(_build("mlp"), check=False), out)
    assert sorted(p.name for p in out.iterdir()) == ["decoder.onnx", "encoder.onnx", "export.json"]
    assert json.loads((out / "export.json").read_text())["kind"] == "vae"
    (out / "notes.txt").write_text("the user's")
    with pytest.raises(vaekit.ConfigError, match=r"holds other files \(notes.txt\)"):
        write_export(export_onnx(_build("mlp"), check=False), out)
    assert (out / "notes.txt").read_text() == "the user's"


# -- the command ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits run trained by the command line for a few steps."""
    from vaekit.cli import main

    folder = tmp_path_factory.mktemp("onnx") / "run"
    main(["train", "--data", "digits", "--out", str(folder), "--epochs", "1", "--set",
          "hidden=[16]", "--set", "latent_dim=3", "--set", "batch_size=256", "-q"])  # fmt: skip
    return folder


def test_export_command_end_to_end(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "export", run, "--format", "onnx")
    assert code == 0, err
    folder = run / "onnx"
    assert {f"onnx/{p.name}" for p in folder.iterdir()} <= set(DERIVED_FILES)
    assert out.splitlines()[0].startswith("onnxruntime ") and f"wrote {folder}/encoder.onnx" in out
    description = json.loads((folder / "export.json").read_text())
    assert description["likelihood"] == "bernoulli" and description["data_shape"] == [64]
    # the trained model's encoder and decoder, on the digits themselves
    model = vaekit.load(run)
    x = torch.as_tensor(vaekit.data.load("digits").test[:17], dtype=torch.float32)
    encoded = _run(_session((folder / "encoder.onnx").read_bytes()), x=x)
    with torch.no_grad():
        qz_x = model.encode(x)
        assert max_abs_diff(qz_x.mean, encoded["mean"]) <= TOLERANCE
        decoded = _run(_session((folder / "decoder.onnx").read_bytes()), z=encoded["mean"])
        logits = model.decode(encoded["mean"]).base_dist.logits
        assert max_abs_diff(logits, decoded["logits"]) <= TOLERANCE
    # again, into the same folder: it replaces its own export
    assert run_cli(capsys, "export", run)[0] == 0
    # and to a folder of the user's choosing
    code, out, _ = run_cli(capsys, "export", run, "--output", tmp_path / "deploy" / "digits")
    assert code == 0 and (tmp_path / "deploy" / "digits" / "decoder.onnx").is_file()


def test_export_command_bad_input(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(run)
    (tmp_path / "file").write_text("x")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("the user's")
    cases = {
        "is a file; give a folder": ["export", run, "-o", tmp_path / "file"],
        "holds other files (checkpoint.safetensors, config.json": ["export", run, "-o", run],
        "holds other files (mine.txt)": ["export", run, "-o", tmp_path / "busy"],
        "Invalid value for '--format'": ["export", run, "--format", "tflite"],
        "does not exist": ["export", tmp_path / "missing"],
    }
    for expected, args in cases.items():
        code, _, err = run_cli(capsys, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err, (args, err)
        assert "Traceback" not in err
    assert snapshot(run) == before
    assert (tmp_path / "file").read_text() == "x"
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["mine.txt"]
    # without the onnx extra: one line saying how to install it
    monkeypatch.setitem(sys.modules, "onnx", None)
    code, _, err = run_cli(capsys, "export", run, "-o", tmp_path / "new")
    assert code == 2 and err == f"vaekit: error: {ONNX_EXTRA}\n"
    assert ONNX_EXTRA == "ONNX export needs the onnx extra: pip install 'vaekit[onnx]'"
    assert not (tmp_path / "new").exists() and snapshot(run) == before


def _write_wavs(folder: Path) -> None:
    import wave

    for label, f0 in (("low", 440), ("high", 660)):
        (folder / label).mkdir(parents=True)
        for i in range(8):
            t = np.arange(4000) / 16000
            y = (0.3 * np.sin(2 * np.pi * (f0 + 10 * i) * t) * 32767).astype(np.int16)
            with wave.open(str(folder / label / f"{i}.wav"), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(16000)
                w.writeframes(y.tobytes())


@pytest.mark.parametrize("media", ["text", "audio"])
def test_export_command_for_text_and_audio_runs(
    media: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Runs of strings and of sounds export their networks; an audio run says, in one line,
    that the spectrogram and Griffin-Lim steps are not in the files."""
    if media == "text":
        data = tmp_path / "lines.txt"
        data.write_text("the cat sat\non the mat\nhello world\nfoo bar baz\n" * 8)
    else:
        data = tmp_path / "sounds"
        _write_wavs(data)
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", data, "--out", run, "--epochs", "1",
                           "--set", "hidden=[16]", "--set", "latent_dim=3", "-q")  # fmt: skip
    assert code == 0, err
    code, out, err = run_cli(capsys, "export", run)
    assert code == 0, err
    notes = [line for line in out.splitlines() if line.startswith("not exported: ")]
    assert len(notes) == (media == "audio")
    description = json.loads((run / "onnx" / "export.json").read_text())
    assert description["media"]["kind"] == media and description["not_exported"] == [
        line.removeprefix("not exported: ") for line in notes
    ]
    model = vaekit.load(run)
    session = _session((run / "onnx" / "encoder.onnx").read_bytes())
    g = torch.Generator().manual_seed(0)
    x = _ids(model, 5, g) if media == "text" else torch.randn((5, *model.config.data_shape))
    with torch.no_grad():
        mean = model.encode(x).mean
    assert (
        max_abs_diff(mean, _run(session, **{"ids" if media == "text" else "x": x})["mean"])
        <= TOLERANCE
    )


def test_save_onnx_checks_the_folder_first(tmp_path: Path) -> None:
    from vaekit.export import save_onnx

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("the user's")
    with pytest.raises(vaekit.ConfigError, match="holds other files"):
        save_onnx(_build("mlp"), tmp_path / "busy")
    result = save_onnx(_build("categorical"), tmp_path / "new")
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == sorted(result.files)


def test_export_command_without_onnxruntime(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnxruntime is optional for exporting: the files are then checked by onnx.checker only,
    and export.json holds no comparison."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code, out, err = run_cli(capsys, "export", run, "-o", tmp_path / "out")
    assert code == 0, err
    assert "checked with onnx.checker only" in out.splitlines()[0]
    assert "check" not in json.loads((tmp_path / "out" / "export.json").read_text())
