"""Settings of a new run from their sources: data-set defaults < TOML file < flags < overrides.

Library logic under the ``vaekit train`` command: which section a bare ``key=value`` belongs to,
which of a data set's model defaults a kind keeps, and the likelihood and binarisation a data set
implies.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .config import did_you_mean, from_dict, parse_override, read_toml
from .errors import ConfigError
from .nets import CONV_MIN_SIDE, DISCRIMINATOR_HIDDEN, default_network

#: The tables of a config file (besides ``data``, the data set's name or path).
SECTIONS = ("model", "train")


def resolve_config(
    config_file: str | None, overrides: tuple[str, ...], dataset: Any, cli: dict[str, Any]
) -> tuple[Any, Any, str]:
    """Merge data-set defaults < config file < command-line flags < ``--set`` overrides.

    Returns (VAEConfig, TrainConfig, data name). ``--set`` keys are ``section.key`` or a bare key
    that belongs to exactly one section.
    """
    from .models import model_config, model_kinds
    from .train import TrainConfig

    def settings(section: str) -> set[str]:
        if section == "train":
            return set(TrainConfig.__dataclass_fields__)
        kinds = model_kinds()
        cls = kinds.get(merged["model"].get("kind", "vae"), kinds["vae"])
        fields = set(cls.config_class.__dataclass_fields__)  # type: ignore[attr-defined]
        return {"kind", *fields, *(["standardize"] if "data_scale" in fields else [])}

    merged: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    given: set[str] = set()  # model settings from the config file or --set, not the data set
    for source in (dataset.defaults or {}, read_toml(config_file) if config_file else {}):
        for key, value in source.items():
            if key == "data":
                continue
            if key not in SECTIONS:
                raise ConfigError(f"unknown config section {key!r}; use [model] and [train]")
            if not isinstance(value, dict):
                raise ConfigError(f"config section {key!r} must be a table")
            merged[key].update(value)
            if key == "model" and source is not dataset.defaults:
                given.update(value)
    merged["train"].update({k: v for k, v in cli.items() if v is not None})
    parsed = [(text, *parse_override(text)) for text in overrides]
    for _, key, value in parsed:  # the model kind first: it decides which settings exist
        if key in ("kind", "model.kind"):
            merged["model"]["kind"] = value
    for text, key, value in parsed:
        section, _, name = key.rpartition(".")
        if not section:
            owners = [s for s in SECTIONS if name in settings(s)]
            if len(owners) > 1:
                raise ConfigError(
                    f"setting {name!r} in --set {text!r} is in {' and '.join(owners)}: write "
                    f"{owners[0]}.{name}=... or {owners[1]}.{name}=..."
                )
            if not owners:
                kind = merged["model"].get("kind", "vae")
                every = (settings("model") - {"kind"}) | settings("train")
                raise ConfigError(
                    f"unknown setting {name!r} in --set {text!r}{did_you_mean(name, every)}; "
                    f"the {kind} model has "
                    f"{', '.join(sorted(settings('model') - {'kind'}))}; training has "
                    f"{', '.join(sorted(settings('train')))}"
                )
            section = owners[0]
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section {section!r} in --set {text!r}")
        merged[section][name] = value
        if section == "model":
            given.add(name)
    # The data set's model defaults suit its default kind; another kind keeps only those it has.
    known = settings("model")
    model_cfg = {k: v for k, v in merged["model"].items() if k in known or k in given}
    model_cfg.setdefault("data_shape", list(dataset.data_shape))
    model_cfg.setdefault("likelihood", "bernoulli" if dataset.binary else "gaussian")
    _standardize(model_cfg, dataset, "data_scale" in known)
    image = getattr(dataset, "image_shape", None)  # a data set of splits, or one like it
    if "network" in known and "network" not in model_cfg:
        _choose_network(model_cfg, dataset, image)
    if model_cfg.get("network", "mlp") != "mlp" and image and len(dataset.data_shape) != 3:
        model_cfg.setdefault("image_shape", list(image))  # flat images: the conv nets' view
    train_cfg = dict(merged["train"])
    if dataset.binary and model_cfg["likelihood"] == "bernoulli":
        train_cfg.setdefault("binarize", "dynamic")
    if train_cfg.get("objective") == "factorvae" and "discriminator" in known:
        model_cfg.setdefault("discriminator", list(DISCRIMINATOR_HIDDEN))  # the paper's
    return (
        model_config(model_cfg),
        from_dict(TrainConfig, train_cfg, section="train"),
        dataset.name,
    )


def _standardize(model_cfg: dict[str, Any], dataset: Any, can: bool) -> None:
    """The setting ``standardize`` ("auto", true or false) made into the model's data_shift and
    data_scale: each column's mean and standard deviation over the training split. "auto"
    standardises a table (examples that are rows of numbers, not images, with values beyond
    [0, 1]) under a likelihood of real values; a note on the data set says so."""
    from .data import standardization
    from .likelihoods import LIKELIHOODS

    wanted = model_cfg.pop("standardize", "auto")
    if wanted not in ("auto", True, False):
        raise ConfigError(f"standardize must be auto, true or false, got {wanted!r}")
    if not can or wanted is False or "data_scale" in model_cfg or "data_shift" in model_cfg:
        return
    likelihood = LIKELIHOODS.get(model_cfg["likelihood"])
    real = likelihood is not None and likelihood.support == "real"
    if wanted is True and not real:
        raise ConfigError(
            f"standardize=true moves the data off [0, 1], where likelihood "
            f"{model_cfg['likelihood']!r} lives; choose a Gaussian likelihood or leave it out"
        )
    train = getattr(dataset, "train", None)
    if train is None:  # settings checked without data
        return
    table = len(dataset.data_shape) == 1 and not getattr(dataset, "image_shape", None)
    table = table and (getattr(dataset, "media", None) or {}).get("kind") in (None, "table")
    pixels = bool(train.numel()) and float(train.min()) >= 0 and float(train.max()) <= 1
    if wanted == "auto" and not (real and table and not pixels):
        return
    model_cfg.update(standardization(train))
    if hasattr(dataset, "notes"):
        dims = dataset.data_shape[0] if len(dataset.data_shape) == 1 else "the"
        dataset.notes.append(
            f"standardised each of {dims} columns by its mean and standard deviation over the "
            "training split (saved with the run; outputs and log p(x) are in the data's own "
            "units); --set standardize=false turns this off"
        )


def retokenize(ds: Any, config: Any) -> tuple[Any, Any]:
    """The data set and the text model's config made to agree. The file was read at the data
    set's defaults; a config that asks for another ``level`` (``--set level=word``) gets the
    lines read again at that level, with the vocabulary and length that come from them, and one
    that names its own ``vocab`` or ``data_shape`` gets the lines encoded with those."""

    from .data.text import load_text
    from .models import TextVAEConfig
    from .tokenizer import Tokenizer

    if not isinstance(config, TextVAEConfig):
        raise ConfigError(
            f"{ds.name!r} is text: train it with the text model (kind 'text'), not "
            f"{type(config).__name__}"
        )
    made = ds.defaults["model"]
    if config.level != made["level"]:
        ds = load_text(ds.source, 0, level=config.level)
        made = ds.defaults["model"]
        vocab, shape = tuple(made["vocab"]), tuple(made["data_shape"])
        return ds, replace(config, vocab=vocab, data_shape=shape)
    if config.vocab != tuple(made["vocab"]) or config.data_shape != ds.data_shape:
        tok = Tokenizer(config.vocab, config.level)
        ds = load_text(ds.source, 0, tokenizer=tok, length=config.data_dim)
    return ds, config


def _choose_network(model_cfg: dict[str, Any], dataset: Any, image: Any) -> None:
    """The network of a model whose settings name none: conv for images it takes (see
    :func:`vaekit.nets.default_network`), else the MLP; a note on the data set says which."""
    shape = model_cfg.get("image_shape") or image or dataset.data_shape
    if getattr(dataset, "media", None):  # spectrograms, token ids: the MLP
        shape = None
    channels = model_cfg.get("channels", (32, 64))
    network = model_cfg["network"] = default_network(shape, channels)
    if not shape or len(shape) != 3 or not hasattr(dataset, "notes"):
        return
    size = f"{shape[1]}x{shape[2]}"
    if network == "conv":
        note = f"network conv, the default for {size} images (--set network=mlp: fully connected)"
    elif min(shape[1:]) >= CONV_MIN_SIDE:  # images the conv stages cannot halve evenly
        note = (
            f"network mlp: the conv networks need height and width divisible by "
            f"{2 ** len(channels)}, and {size} images are not (image_size resizes a folder's "
            "images)"
        )
    else:
        return
    dataset.notes.append(note)
