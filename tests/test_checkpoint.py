"""Checkpoints: save and load give the same model bit for bit, loading never unpickles, and every
way a run folder can be broken is a CheckpointError that names the problem."""

from __future__ import annotations

import json
import os
import pickle
import stat
import struct
from pathlib import Path
from typing import Any

import pytest
import torch

import vaekit
from vaekit import VAE, CheckpointError, ConfigError, load, save
from vaekit.checkpoint import CONFIG_FILE, FORMAT_VERSION, WEIGHTS_FILE


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


CONFIGS = [
    {"data_shape": (6,), "latent_dim": 2, "hidden": (5,)},
    {
        "data_shape": (1, 3, 4),
        "latent_dim": 3,
        "hidden": (7, 5),
        "likelihood": "gaussian_per_dim",
        "prior": "learned_gaussian",
        "activation": "relu",
    },
    {"data_shape": (5,), "latent_dim": 2, "hidden": (), "likelihood": "gaussian_shared"},
    {
        "data_shape": (5,),
        "latent_dim": 2,
        "hidden": (4,),
        "likelihood": "gaussian_fixed",
        "decoder_std": 0.37,
    },
    {
        "data_shape": (5,),
        "latent_dim": 2,
        "hidden": (4,),
        "likelihood": "gaussian",
        "encoder_min_logvar": -5.0,
        "decoder_max_logvar": 2.0,
    },
    {"data_shape": (5,), "latent_dim": 2, "hidden": (4,), "prior": "mog", "prior_components": 3},
    {"data_shape": (1, 2, 3), "latent_dim": 2, "hidden": (4,), "prior": "vamp"},
    {
        "data_shape": (3, 2, 2),
        "latent_dim": 2,
        "hidden": (4,),
        "likelihood": "discretized_logistic",
        "likelihood_components": 2,
    },
    {
        "data_shape": (64,),
        "latent_dim": 2,
        "hidden": (),
        "network": "conv",
        "channels": (3, 4),
        "image_shape": (1, 8, 8),
    },
    {
        "data_shape": (3, 8, 8),
        "latent_dim": 2,
        "hidden": (5,),
        "network": "resnet",
        "channels": (4,),
        "res_blocks": 2,
        "prior": "vamp",
        "prior_components": 2,
    },
]


def perturbed(model: VAE) -> VAE:
    """Move every parameter away from its initial value, so a load that silently re-initialised
    a part (or the prior / likelihood) would show."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen(5)) * 0.3)
    return model


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return save(perturbed(VAE(**CONFIGS[1])), tmp_path / "run")


@pytest.mark.parametrize("fields", CONFIGS)
def test_save_load_is_bit_for_bit(tmp_path: Path, fields: dict[str, Any]) -> None:
    model = perturbed(VAE(**fields))
    save(model, tmp_path / "run")
    loaded = load(tmp_path / "run")
    assert loaded.config == model.config
    assert not loaded.training
    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys()
    assert all(torch.equal(state[k], loaded_state[k]) for k in state)
    x = torch.rand(4, *model.config.data_shape)
    model.eval()
    a, b = model(x, k=3, generator=gen(1)), loaded(x, k=3, generator=gen(1))
    for name in ("log_px_z", "log_pz", "log_qz_x"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert (a.kl is None and b.kl is None) or torch.equal(a.kl, b.kl)
    assert torch.equal(model.reconstruct(x), loaded.reconstruct(x))


@pytest.mark.parametrize("kind", ["vae", "categorical"])
def test_a_float64_model_comes_back_float64(tmp_path: Path, kind: str) -> None:
    """Weights saved in float64 load in float64, not rounded into a fresh float32 model."""
    from vaekit import CategoricalVAE

    if kind == "vae":
        model = VAE(data_shape=(5,), latent_dim=2, hidden=(4,), likelihood="gaussian_fixed")
    else:
        model = CategoricalVAE(data_shape=(5,), n_latents=1, n_categories=3, hidden=(4,))
    model = perturbed(model.double())
    with torch.no_grad():
        model.decoder[0].weight[0, 0] = 1 / 3  # not a float32 number
    save(model, tmp_path / "run")
    loaded = load(tmp_path / "run")
    assert {p.dtype for p in loaded.parameters()} == {torch.float64}
    assert loaded.decoder[0].weight[0, 0].item() == 1 / 3
    x = torch.rand(3, 5, dtype=torch.float64)
    assert torch.equal(loaded.reconstruct(x), model.eval().reconstruct(x))


@pytest.mark.parametrize("device", ["gpu", "cuda:99"])
def test_a_device_the_machine_lacks_is_named_not_the_file(saved: Path, device: str) -> None:
    """load(device=...) with a misspelt device or one that is not there says so; it blamed
    model.safetensors as "truncated or corrupt" or raised torch's AssertionError."""
    with pytest.raises(ConfigError, match=rf"device '{device}' cannot be used here \(.+\); give"):
        load(saved, device=device)


@pytest.mark.parametrize("fields", CONFIGS)
def test_a_safetensors_name_saves_one_file(tmp_path: Path, fields: dict[str, Any]) -> None:
    from safetensors import safe_open

    model = perturbed(VAE(**fields))
    file = tmp_path / "model.safetensors"
    assert model.save(file, note="hello") == file and file.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    loaded = load(file)
    assert loaded.config == model.config and not loaded.training
    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys()
    assert all(torch.equal(state[k], loaded_state[k]) for k in state)
    with safe_open(file, "pt") as f:  # config.json's text in the file's metadata
        config = json.loads(f.metadata()["vaekit_config"])
    assert config["note"] == "hello" and config["format_version"] == FORMAT_VERSION
    assert config["model"]["latent_dim"] == model.config.latent_dim


def test_a_safetensors_file_without_vaekit_config_is_named(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match=r"other\.safetensors' is not a model file .*config"):
        load(tmp_path / "other.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(b"\xff" * 12)
    with pytest.raises(CheckpointError, match=r"cut\.safetensors' is not a model file"):
        load(tmp_path / "cut.safetensors")
    with pytest.raises(CheckpointError, match=r"model file .*absent\.safetensors' does not exist"):
        load(tmp_path / "absent.safetensors")
    (tmp_path / "dir.safetensors").mkdir()
    with pytest.raises(CheckpointError, match="is a folder; give a new file name"):
        save(VAE(**CONFIGS[0]), tmp_path / "dir.safetensors")


def test_methods_on_the_model(tmp_path: Path) -> None:
    model = perturbed(VAE(**CONFIGS[0]))
    assert model.save(tmp_path / "run", note="hello") == tmp_path / "run"
    loaded = VAE.load(tmp_path / "run")
    assert all(
        torch.equal(p, q) for p, q in zip(model.parameters(), loaded.parameters(), strict=True)
    )


def test_config_json_holds_versions_model_and_metadata(saved: Path, tmp_path: Path) -> None:
    config = json.loads((saved / CONFIG_FILE).read_text())
    assert config["format_version"] == FORMAT_VERSION
    assert config["vaekit_version"] == vaekit.__version__
    assert config["model"]["data_shape"] == [1, 3, 4]
    assert config["model"]["kind"] == "vae"
    save(VAE(**CONFIGS[0]), tmp_path / "meta", data={"name": "digits"}, seed=3)
    config = json.loads((tmp_path / "meta" / CONFIG_FILE).read_text())
    assert config["data"] == {"name": "digits"} and config["seed"] == 3


def test_weights_file_is_safetensors(saved: Path) -> None:
    raw = (saved / WEIGHTS_FILE).read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    assert "encoder.0.weight" in header
    assert not raw.startswith(b"PK") and b"\x80\x02" not in raw[:2]  # no zip, no pickle


def test_loading_never_unpickles(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pickle used while loading a checkpoint")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    loaded = load(saved)
    assert isinstance(loaded, VAE)


def test_saving_over_a_run_replaces_it_and_leaves_no_temporaries(tmp_path: Path) -> None:
    first, second = perturbed(VAE(**CONFIGS[0])), VAE(**CONFIGS[0])
    save(first, tmp_path / "run")
    save(second, tmp_path / "run")
    loaded = load(tmp_path / "run")
    assert torch.equal(loaded.encoder[0].weight, second.encoder[0].weight)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]


def test_unwritable_destination_is_a_checkpoint_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(CheckpointError, match="cannot write"):
        save(VAE(**CONFIGS[0]), tmp_path / "file" / "run")


# -- broken run folders ----------------------------------------------------------------------------


def rewrite_config(run: Path, change: Any) -> None:
    config = json.loads((run / CONFIG_FILE).read_text())
    change(config)
    (run / CONFIG_FILE).write_text(json.dumps(config))


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tmp_path / "nowhere")


def test_missing_config(saved: Path) -> None:
    (saved / CONFIG_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"not a vaekit run folder: no {CONFIG_FILE}"):
        load(saved)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b'{"format_version": 1, "model": ', "unreadable or corrupt"),
        (b"\xff\xfe not utf-8", "unreadable or corrupt"),
        (b"[1, 2]", "no format_version"),
        (b'{"model": {}}', "no format_version"),
        (b'{"format_version": "1"}', "no format_version"),
    ],
)
def test_corrupt_config(saved: Path, text: bytes, message: str) -> None:
    (saved / CONFIG_FILE).write_bytes(text)
    with pytest.raises(CheckpointError, match=message):
        load(saved)


def test_newer_format_version(saved: Path) -> None:
    rewrite_config(saved, lambda c: c.update(format_version=FORMAT_VERSION + 1, vaekit_version="9"))
    with pytest.raises(CheckpointError, match=f"format {FORMAT_VERSION + 1}.*upgrade vaekit"):
        load(saved)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["model"].update(colour="red"), "model.colour"),
        (lambda c: c["model"].update(latent_dim="three"), "model.latent_dim"),
        (lambda c: c["model"].update(likelihood="poisson"), "poisson"),
        (lambda c: c.pop("model"), "model must be a table"),
        (lambda c: c["model"].update(kind="flow"), "unknown model.kind 'flow'"),
    ],
)
def test_bad_model_config(saved: Path, change: Any, message: str) -> None:
    rewrite_config(saved, change)
    with pytest.raises(CheckpointError, match=message):
        load(saved)


def test_a_model_table_without_kind_is_a_vae(saved: Path) -> None:
    before = load(saved)
    rewrite_config(saved, lambda c: c["model"].pop("kind"))
    after = load(saved)
    assert type(after) is VAE and after.config == before.config


def test_missing_weights(saved: Path) -> None:
    (saved / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"no {WEIGHTS_FILE}"):
        load(saved)


@pytest.mark.parametrize("keep", [0.5, 0.99, 4 / 1e9])
def test_truncated_weights(saved: Path, keep: float) -> None:
    raw = (saved / WEIGHTS_FILE).read_bytes()
    (saved / WEIGHTS_FILE).write_bytes(raw[: max(1, int(len(raw) * keep))])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load(saved)


def test_garbage_weights(saved: Path) -> None:
    (saved / WEIGHTS_FILE).write_bytes(pickle.dumps({"encoder.0.weight": [1.0]}))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load(saved)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["model"].update(latent_dim=4), "size mismatch"),
        (lambda c: c["model"].update(hidden=[7]), "Unexpected key.*encoder.4.bias"),
        (lambda c: c["model"].update(likelihood="gaussian"), "Unexpected key.*raw_logvar"),
        (lambda c: c["model"].update(prior="standard_normal"), "prior"),
    ],
)
def test_weights_that_do_not_match_the_config(saved: Path, change: Any, message: str) -> None:
    rewrite_config(saved, change)
    with pytest.raises(CheckpointError, match=f"does not match its config.json.*{message}"):
        load(saved)


def test_checkpoint_errors_are_one_line(saved: Path) -> None:
    rewrite_config(saved, lambda c: c["model"].update(latent_dim=4))
    with pytest.raises(CheckpointError) as info:
        load(saved)
    assert "\n" not in str(info.value)
    assert str(saved) in str(info.value)


@pytest.mark.parametrize("key", ["format_version", "vaekit_version"])
def test_metadata_cannot_overwrite_the_checkpoint_fields(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        save(VAE(**CONFIGS[0]), tmp_path / "run", **{key: "oops"})
    assert not (tmp_path / "run" / CONFIG_FILE).exists()


def test_metadata_tables_vaekit_reads_back_must_be_dicts(tmp_path: Path) -> None:
    model = VAE(**CONFIGS[0])
    with pytest.raises(ConfigError, match=r"metadata 'data' must be a dict .* got str"):
        save(model, tmp_path / "run", data="shapes")
    assert not (tmp_path / "run").exists()
    save(model, tmp_path / "run", data={"name": "shapes"})
    assert load(tmp_path / "run").config == model.config


def test_metadata_json_cannot_hold_leaves_the_run_as_it_was(tmp_path: Path) -> None:
    """A numpy number in the metadata is a ConfigError naming it, raised before the weights are
    written: the run folder keeps its old model whole (it got the new weights beside the old
    config.json, which then no longer loaded)."""
    import numpy as np

    old = perturbed(VAE(**CONFIGS[0]))
    save(old, tmp_path / "run")
    before = {f.name: f.read_bytes() for f in (tmp_path / "run").iterdir()}
    new = VAE(**{**CONFIGS[0], "latent_dim": CONFIGS[0]["latent_dim"] + 1})
    with pytest.raises(ConfigError, match=r"metadata 'score' is not JSON-ready \(.*float32"):
        save(new, tmp_path / "run", note="fine", score=np.float32(1.5))
    assert {f.name: f.read_bytes() for f in (tmp_path / "run").iterdir()} == before
    assert load(tmp_path / "run").config == old.config
    from vaekit import fit

    with pytest.raises(ConfigError, match=r"metadata 'score' is not JSON-ready"):  # not a run in
        fit(new, torch.rand(4, 6).round(), out=tmp_path / "run", metadata={"score": np.int64(2)})
    assert {f.name: f.read_bytes() for f in (tmp_path / "run").iterdir()} == before


def test_saved_files_get_the_permissions_open_would_give(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        save(VAE(data_shape=(4,), latent_dim=2, hidden=(3,)), tmp_path / "run")
    finally:
        os.umask(old)
    for name in ("config.json", "model.safetensors"):
        assert stat.S_IMODE((tmp_path / "run" / name).stat().st_mode) == 0o644


def test_conditional_model_round_trips(tmp_path: Path) -> None:
    model = perturbed(VAE(data_shape=(6,), latent_dim=2, hidden=(5,), condition_dim=3))
    save(model, tmp_path / "run")
    loaded = load(tmp_path / "run")
    assert loaded.config.condition_dim == 3
    assert all(
        torch.equal(a, b) for a, b in zip(model.parameters(), loaded.parameters(), strict=True)
    )
    x, labels = torch.rand(4, 6), torch.tensor([0, 2, 1, 2])
    model.eval()
    a = model(x, k=3, generator=gen(1), condition=labels)
    b = loaded(x, k=3, generator=gen(1), condition=labels)
    assert torch.equal(a.log_w, b.log_w)
    torch.manual_seed(2)
    s1 = model.sample(3, condition=1)
    torch.manual_seed(2)
    assert torch.equal(s1, loaded.sample(3, condition=1))


# -- the training state ----------------------------------------------------------------------------


def training_state() -> dict[str, Any]:
    opt = torch.optim.Adam(VAE(**CONFIGS[0]).parameters(), lr=1e-3, betas=(0.9, 0.99))
    model = perturbed(VAE(**CONFIGS[0]))
    for p, q in zip(model.parameters(), opt.param_groups[0]["params"], strict=True):
        q.grad = p.detach().clone()
    opt.step()
    return {
        "run": {"train": {"lr": 0.001}, "step": 7, "finished": False},
        "loop": {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "generator": torch.Generator().manual_seed(3).get_state(),
            "order": torch.randperm(10, generator=gen(1)),
            "sums": torch.tensor(-1.5, dtype=torch.float64),
            "none": None,
            "pair": (1, 2.5),
        },
        "history": [{"epoch": 1, "train_bound": -3.25}],
    }


def test_training_state_round_trips_exactly(tmp_path: Path) -> None:
    from vaekit.checkpoint import load_training_state, read_training_info, save_training_state

    state = training_state()
    save_training_state(tmp_path, state)
    back = load_training_state(tmp_path)
    assert read_training_info(tmp_path) == state["run"]
    assert back["history"] == state["history"] and back["run"] == state["run"]
    loop, saved = back["loop"], state["loop"]
    assert loop["none"] is None and loop["pair"] == (1, 2.5)
    for key in ("generator", "order", "sums"):
        assert torch.equal(loop[key], saved[key]) and loop[key].dtype == saved[key].dtype
    assert all(torch.equal(loop["model"][k], v) for k, v in saved["model"].items())
    assert loop["optimizer"]["param_groups"] == saved["optimizer"]["param_groups"]
    for i, entry in saved["optimizer"]["state"].items():  # integer keys come back as integers
        assert all(torch.equal(loop["optimizer"]["state"][i][k], v) for k, v in entry.items())


def test_loading_the_training_state_never_unpickles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vaekit.checkpoint import load_training_state, save_training_state

    save_training_state(tmp_path, training_state())

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pickle used while loading a training state")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    assert load_training_state(tmp_path)["run"]["step"] == 7


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: raw[: len(raw) // 2], "truncated or corrupt"),
        (lambda raw: raw[:5], "truncated or corrupt"),
        (lambda raw: raw[:40], "truncated or corrupt"),
        (lambda raw: b"", "truncated or corrupt"),
        (lambda raw: pickle.dumps({"state": 1}), "truncated or corrupt"),
        (lambda raw: raw.replace(b'"format_version":"1"', b'"format_version":"9"'), "format 9"),
        (lambda raw: raw.replace(b'"state":', b'"other":'), "not a vaekit training checkpoint"),
    ],
)
def test_damaged_training_states_are_checkpoint_errors(
    tmp_path: Path, damage: Any, message: str
) -> None:
    from vaekit.checkpoint import (
        STATE_FILE,
        load_training_state,
        read_training_info,
        save_training_state,
    )

    file = save_training_state(tmp_path, training_state())
    assert file == tmp_path / STATE_FILE
    file.write_bytes(damage(file.read_bytes()))
    for read in (load_training_state, read_training_info):
        if (
            read is read_training_info
            and message == "truncated or corrupt"
            and len(file.read_bytes()) > 40
        ):
            continue  # the header is whole: the run record can still be read
        with pytest.raises(CheckpointError, match=message):
            read(tmp_path)
