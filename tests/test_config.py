"""Configs: from_dict is the inverse of to_dict, rejects unknown keys and wrong types naming the
key; parse_override reads TOML values; read_toml turns file problems into ConfigErrors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaekit import ConfigError, TrainConfig, VAEConfig
from vaekit.config import from_dict, parse_override, read_toml, to_dict
from vaekit.likelihoods import LIKELIHOODS
from vaekit.nets import ACTIVATIONS
from vaekit.priors import PRIORS
from vaekit.train import BINARIZE, OPTIMIZERS

finite = {"allow_nan": False, "allow_infinity": False}


@st.composite
def vae_configs(draw: st.DrawFn) -> VAEConfig:
    enc_lo = draw(st.floats(-30, 0, **finite))
    dec_lo = draw(st.floats(-30, 0, **finite))
    return VAEConfig(
        data_shape=tuple(draw(st.lists(st.integers(1, 64), min_size=1, max_size=3))),
        latent_dim=draw(st.integers(1, 256)),
        hidden=tuple(draw(st.lists(st.integers(1, 2048), max_size=4))),
        activation=draw(st.sampled_from(sorted(ACTIVATIONS))),
        likelihood=draw(st.sampled_from(sorted(LIKELIHOODS))),
        prior=draw(st.sampled_from(sorted(PRIORS))),
        decoder_min_logvar=dec_lo,
        decoder_max_logvar=dec_lo + draw(st.floats(0.01, 20, **finite)),
        decoder_std=draw(st.floats(1e-6, 1e6, **finite)),
        encoder_min_logvar=enc_lo,
        encoder_max_logvar=enc_lo + draw(st.floats(0.01, 20, **finite)),
    )


@st.composite
def train_configs(draw: st.DrawFn) -> TrainConfig:
    return TrainConfig(
        epochs=draw(st.integers(1, 10**6)),
        batch_size=draw(st.integers(1, 10**5)),
        optimizer=draw(st.sampled_from(OPTIMIZERS)),
        lr=draw(st.floats(1e-9, 10, **finite)),
        weight_decay=draw(st.floats(0, 1, **finite)),
        objective=draw(st.sampled_from(["elbo", "iwae"])),
        samples=draw(st.integers(1, 5000)),
        beta=draw(st.floats(0, 10, **finite)),
        warmup_steps=draw(st.integers(0, 10**6)),
        grad_clip=draw(st.floats(0, 1e3, **finite)),
        binarize=draw(st.sampled_from(BINARIZE)),
        seed=draw(st.integers(0, 2**63 - 1)),
        max_bad_steps=draw(st.integers(1, 1000)),
    )


@settings(max_examples=150, deadline=None)
@given(cfg=vae_configs())
def test_vae_config_round_trips_through_json(cfg: VAEConfig) -> None:
    data = json.loads(json.dumps(to_dict(cfg)))  # what config.json holds
    assert from_dict(VAEConfig, data) == cfg
    assert isinstance(data["data_shape"], list) and isinstance(data["hidden"], list)


@settings(max_examples=150, deadline=None)
@given(cfg=train_configs())
def test_train_config_round_trips_through_json(cfg: TrainConfig) -> None:
    assert from_dict(TrainConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg


def test_defaults_round_trip() -> None:
    assert from_dict(VAEConfig, {}) == VAEConfig()
    assert from_dict(TrainConfig, to_dict(TrainConfig())) == TrainConfig()


def test_unknown_key_is_named_with_its_section() -> None:
    with pytest.raises(
        ConfigError,
        match=r"unknown setting model\.latent_dims \(did you mean 'latent_dim'\?\); known ",
    ):
        from_dict(VAEConfig, {"latent_dims": 8}, section="model")
    with pytest.raises(
        ConfigError, match=r"unknown setting epoch \(did you mean 'epochs'\?\).*epochs"
    ):
        from_dict(TrainConfig, {"epoch": 3})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"latent_dim": "8"}, r"train\.latent_dim must be an integer, got '8'"),
        ({"latent_dim": 8.0}, r"train\.latent_dim must be an integer, got 8\.0"),
        ({"latent_dim": True}, r"train\.latent_dim must be an integer, got True"),
        ({"hidden": 64}, r"train\.hidden must be a list, got 64"),
        ({"hidden": [64, "x"]}, r"train\.hidden must be an integer, got 'x'"),
        ({"data_shape": "784"}, r"train\.data_shape must be a list"),
        ({"decoder_std": "0.1"}, r"train\.decoder_std must be a number"),
        ({"decoder_std": False}, r"train\.decoder_std must be a number"),
        ({"likelihood": 3}, r"train\.likelihood must be a string, got 3"),
    ],
)
def test_wrong_types_are_named(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(VAEConfig, data, section="train")


def test_values_are_coerced_to_the_field_types() -> None:
    cfg = from_dict(VAEConfig, {"data_shape": [2, 3], "hidden": [], "decoder_std": 1})
    assert cfg.data_shape == (2, 3) and cfg.hidden == ()
    assert isinstance(cfg.decoder_std, float)
    assert isinstance(from_dict(TrainConfig, {"lr": 1}).lr, float)


def test_values_out_of_range_fail_in_the_dataclass() -> None:
    with pytest.raises(ConfigError, match="latent_dim"):
        from_dict(VAEConfig, {"latent_dim": 0})
    with pytest.raises(ConfigError, match="optimizer 'sgd'"):
        from_dict(TrainConfig, {"optimizer": "sgd"})


@pytest.mark.parametrize("data", [None, [1, 2], "latent_dim=3"])
def test_non_table_is_rejected(data: Any) -> None:
    with pytest.raises(ConfigError, match="model must be a table of settings"):
        from_dict(VAEConfig, data, section="model")


# -- overrides -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model.latent_dim=8", ("model.latent_dim", 8)),
        ("lr=1e-3", ("lr", 0.001)),
        ("beta = 0.5", ("beta", 0.5)),
        ("hidden=[512, 256]", ("hidden", [512, 256])),
        ("likelihood=gaussian", ("likelihood", "gaussian")),
        ('likelihood="bernoulli"', ("likelihood", "bernoulli")),
        ("flag=true", ("flag", True)),
        ("epochs=1_000", ("epochs", 1000)),
        ("name=two words", ("name", "two words")),
        ("expr=a=b", ("expr", "a=b")),
        ("empty=", ("empty", "")),
    ],
)
def test_parse_override(text: str, expected: tuple[str, Any]) -> None:
    assert parse_override(text) == expected


def test_parse_override_special_floats() -> None:
    assert parse_override("x=inf") == ("x", math.inf)
    assert parse_override("x=-inf") == ("x", -math.inf)
    assert math.isnan(parse_override("x=nan")[1])


@pytest.mark.parametrize("text", ["latent_dim", "=8", "  =8", ""])
def test_parse_override_needs_key_and_equals(text: str) -> None:
    with pytest.raises(ConfigError, match="key=value"):
        parse_override(text)


def toml_value(value: Any) -> str:
    """A TOML literal for a JSON-like value (bool, int, finite float, str, list)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return "[" + ", ".join(toml_value(v) for v in value) + "]"


scalars = (
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)
)


@settings(max_examples=200, deadline=None)
@given(
    key=st.from_regex(r"[a-z_]{1,10}(\.[a-z_]{1,10})?", fullmatch=True),
    value=scalars | st.lists(st.integers(0, 10**6), max_size=5),
)
def test_parse_override_reads_any_toml_value(key: str, value: Any) -> None:
    parsed_key, parsed = parse_override(f"{key}={toml_value(value)}")
    assert parsed_key == key
    assert parsed == value and type(parsed) is type(value)


# -- files -----------------------------------------------------------------------------------------


def test_read_toml(tmp_path: Path) -> None:
    file = tmp_path / "run.toml"
    file.write_text("[model]\nlatent_dim = 8\nhidden = [64]\n\n[train]\nlr = 1e-3\n")
    data = read_toml(file)
    assert data == {"model": {"latent_dim": 8, "hidden": [64]}, "train": {"lr": 0.001}}
    assert from_dict(VAEConfig, data["model"], section="model").hidden == (64,)


def test_read_toml_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nlatent_dim = 8\n")
    with pytest.raises(ConfigError, match=r"bad\.toml.*not valid TOML"):
        read_toml(bad)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match=r"binary\.toml"):
        read_toml(binary)
    with pytest.raises(ConfigError, match="cannot read"):
        read_toml(tmp_path)  # a folder


# -- any input: a config or a ConfigError, never anything else ---------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


def tables(cls: type) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts whose keys are mostly the fields of ``cls`` and whose values are anything."""
    names = sorted(cls.__dataclass_fields__)
    return st.dictionaries(st.sampled_from(names) | st.text(max_size=8), json_values, max_size=6)


@settings(max_examples=150, deadline=None)
@given(data=tables(VAEConfig) | json_values)
def test_from_dict_of_anything_is_a_model_config_or_a_config_error(data: Any) -> None:
    try:
        cfg = from_dict(VAEConfig, data, section="model")
    except ConfigError as err:
        assert "\n" not in str(err)
    else:
        assert from_dict(VAEConfig, to_dict(cfg)) == cfg


@settings(max_examples=150, deadline=None)
@given(data=tables(TrainConfig) | json_values)
def test_from_dict_of_anything_is_a_train_config_or_a_config_error(data: Any) -> None:
    try:
        cfg = from_dict(TrainConfig, data, section="train")
    except ConfigError as err:
        assert "\n" not in str(err)
    else:
        assert from_dict(TrainConfig, to_dict(cfg)) == cfg


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=40))
def test_parse_override_of_any_text_is_a_pair_or_a_config_error(text: str) -> None:
    try:
        key, _ = parse_override(text)
    except ConfigError:
        assert "=" not in text or not text.partition("=")[0].strip()
    else:
        assert key == text.partition("=")[0].strip() and key


toml_lines = st.lists(
    st.sampled_from(["[model]", "[train]", "[other]", "[model", "data = 'digits'", "x = ", ""])
    | st.builds(
        "{} = {}".format,
        st.sampled_from(["latent_dim", "hidden", "lr", "epochs", "likelihood", "colour", "a.b"]),
        st.sampled_from(
            [
                "8",
                "-1",
                "0",
                "[64, 32]",
                "[]",
                "'x'",
                '"bernoulli"',
                "1e-3",
                "nan",
                "inf",
                "true",
                "{a = 1}",
                "[1, 'a']",
                "1979-05-27",
                '"\\u00e9"',
            ]
        ),
    )
    | st.text(max_size=20),
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(lines=toml_lines, raw=st.binary(max_size=30))
def test_any_toml_file_resolves_or_is_a_config_error(
    lines: list[str], raw: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """read_toml, then the whole merge of `vaekit train` (resolve_config), on structured and on
    random files: configs or a one-line ConfigError."""
    from types import SimpleNamespace

    from vaekit.cli import resolve_config

    folder = tmp_path_factory.mktemp("toml")
    dataset = SimpleNamespace(name="x", defaults=None, data_shape=(6,), binary=True)
    for i, content in enumerate(("\n".join(lines).encode(), raw)):
        file = folder / f"c{i}.toml"
        file.write_bytes(content)
        try:
            resolve_config(str(file), (), dataset, {})
        except ConfigError as err:
            assert "\n" not in str(err)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: VAEConfig(data_shape=784), r"data_shape must be a list, e.g. \(784,\), got 784"),
        (lambda: VAEConfig(hidden=200), r"hidden must be a list, e.g. \(200,\), got 200"),
        (
            lambda: VAEConfig(data_shape=(28.5,)),
            r"data_shape must be a list of integers, got \[28.5\]",
        ),
        (lambda: VAEConfig(latent_dim=2.5), "latent_dim must be an integer, got 2.5"),
        (lambda: VAEConfig(latent_dim="2"), "latent_dim must be an integer, got '2'"),
        (lambda: VAEConfig(likelihood=None), "likelihood must be a string, got None"),
        (lambda: TrainConfig(epochs=2.5), "epochs must be an integer, got 2.5"),
        (lambda: TrainConfig(lr="fast"), "lr must be a number, got 'fast'"),
    ],
)
def test_configs_built_in_python_name_a_field_of_the_wrong_type(make, message: str) -> None:
    """VAE(data_shape=784) and the like are one ConfigError naming the field, not torch's
    TypeError from inside nn.Linear or Python's "'int' object is not iterable"."""
    with pytest.raises(ConfigError, match=message):
        make()


def test_configs_take_the_numbers_python_code_has_at_hand() -> None:
    import numpy as np
    import torch

    x = np.zeros((3, 1, 8, 8))
    cfg = VAEConfig(data_shape=x.shape[1:], latent_dim=np.int64(3), hidden=[np.int32(4)])
    assert cfg == VAEConfig(data_shape=(1, 8, 8), latent_dim=3, hidden=(4,))
    assert type(cfg.latent_dim) is int and type(cfg.hidden[0]) is int
    assert VAEConfig(data_shape=torch.zeros(2, 5).shape[1:]).data_shape == (5,)
    assert TrainConfig(lr=1, epochs=np.int64(2)) == TrainConfig(lr=1.0, epochs=2)


def test_models_and_fit_take_a_dict_of_settings_and_name_unknown_ones() -> None:
    import torch

    from vaekit import HVAE, VAE, CategoricalVAE, HVAEConfig, TextVAE, fit

    model = VAE({"data_shape": [6], "latent_dim": 2}, hidden=(4,))
    assert model.config == VAEConfig(data_shape=(6,), latent_dim=2, hidden=(4,))
    for make in (
        lambda: VAE(data_shape=(6,), latentdim=2),
        lambda: HVAE(data_shape=(6,), latentdim=2),
        lambda: CategoricalVAE(data_shape=(6,), latentdim=2),
        lambda: TextVAE(latentdim=2),
    ):
        with pytest.raises(
            ConfigError,
            match=r"unknown setting latentdim of \w+Config( \(did you mean '\w+'\?\))?; known",
        ):
            make()
    with pytest.raises(ConfigError, match=r"expected a VAEConfig \(or a dict of its settings\)"):
        VAE(HVAEConfig())
    with pytest.raises(
        ConfigError,
        match=r"unknown setting latentdim \(did you mean 'latent_dim'\?\); known settings",
    ):
        VAE({"latentdim": 2})
    x = torch.rand(8, 6).round()
    assert fit(model, x, config={"epochs": 2, "batch_size": 4})[-1]["step"] == 4
    with pytest.raises(
        ConfigError,
        match=r"unknown setting epoch of TrainConfig \(did you mean 'epochs'\?\); known",
    ):
        fit(model, x, epoch=2)


# -- declared constraints --------------------------------------------------------------------------


def test_check_settings_runs_a_declared_table() -> None:
    """A config of another area adopts the constraint tables: types first, then each entry."""
    from dataclasses import dataclass

    from vaekit.config import below, check_settings, one_of, positive_int

    @dataclass(frozen=True)
    class Settings:
        n: int = 1
        mode: str = "a"
        lo: float = 0.0
        hi: float = 1.0

        def __post_init__(self) -> None:
            check_settings(
                self,
                {"n": positive_int, "mode": one_of(("a", "b")), ("lo", "hi"): below},
                prefix="audio ",
            )

    assert Settings(n=2, lo=-1).lo == -1.0
    with pytest.raises(ConfigError, match="audio n must be a positive integer, got 0"):
        Settings(n=0)
    with pytest.raises(ConfigError, match="unknown audio mode 'c'; choose one of a, b"):
        Settings(mode="c")
    with pytest.raises(ConfigError, match=r"audio lo must be below audio hi, got 2\.0"):
        Settings(lo=2)
    with pytest.raises(ConfigError, match=r"n must be an integer, got 1\.5"):
        Settings(n=1.5)
