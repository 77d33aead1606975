"""Plain networks. They know nothing of probability: tensors in, tensors out."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import did_you_mean
from .errors import ConfigError

#: Name in a config -> activation module.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
}


class MLP(nn.Sequential):
    """Fully connected network ``in_features -> hidden[0] -> ... -> out_features``.

    The activation follows every hidden layer, not the output. Acts on the last dimension, so any
    leading shape passes through: ``(..., in_features) -> (..., out_features)``. A ``condition``
    (..., condition_dim) is concatenated to the input, whose width ``in_features`` includes it.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        activation: str = "tanh",
    ) -> None:
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
            width = h
        layers.append(nn.Linear(width, out_features))
        super().__init__(*layers)
        self.in_features, self.out_features = in_features, out_features
        #: Floats of hidden activations per input row, for sizing evaluation chunks.
        self.floats_per_row = sum(hidden)

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        if condition is not None:
            x = torch.cat([x, condition], dim=-1)
        return super().forward(x)


class ResBlock(nn.Module):
    """``x + conv3x3(act(conv3x3(act(x))))`` at constant channels and size, (N, C, H, W)."""

    def __init__(self, channels: int, activation: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ACTIVATIONS[activation](),
            nn.Conv2d(channels, channels, 3, padding=1),
            ACTIVATIONS[activation](),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _check_image(name: str, shape: tuple[int, ...], channels: Sequence[int]) -> tuple[int, int]:
    """(h, w) of the smallest feature map; ConfigError where ``shape`` cannot be halved enough."""
    if len(shape) != 3:
        raise ConfigError(
            f"network {name!r} needs examples shaped (C, H, W), got {tuple(shape)}; set "
            "image_shape = [C, H, W], e.g. [1, 28, 28] for MNIST"
        )
    if not channels:
        raise ConfigError(f"network {name!r} needs at least one entry in channels")
    _, height, width = shape
    factor = 2 ** len(channels)
    if height % factor or width % factor:
        raise ConfigError(
            f"network {name!r} halves height and width once per entry of channels "
            f"{list(channels)}, so they must be divisible by {factor}; image_shape "
            f"{list(shape)} is not: use fewer channels or pad the images"
        )
    return height // factor, width // factor


#: The smallest height and width at which the conv networks are the default for images: smaller
#: ones (scikit-learn's 8x8 digits) keep the MLP, whose one layer sees every pixel.
CONV_MIN_SIDE = 16


def default_network(image_shape: Sequence[int] | None, channels: Sequence[int] = (32, 64)) -> str:
    """The network for examples viewed as ``image_shape`` (C, H, W) when a config names none:
    "conv" where the conv stages ``channels`` take the images (H and W divisible by
    2 ** len(channels)) and both are at least :data:`CONV_MIN_SIDE` pixels, else "mlp" (also
    for examples that are not images, ``image_shape`` None)."""
    if not image_shape or len(image_shape) != 3 or not channels:
        return "mlp"
    _, height, width = image_shape
    factor = 2 ** len(channels)
    fits = height % factor == 0 and width % factor == 0
    return "conv" if fits and min(height, width) >= CONV_MIN_SIDE else "mlp"


class ConvEncoder(nn.Module):
    """Images to features: stride-2 4x4 convolutions (each halves H and W; with ``res_blocks``
    residual blocks after each), then an MLP on the flattened features and the condition.

    Input (..., C*H*W) or (..., C, H, W); output (..., out_features).
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        channels: Sequence[int],
        hidden: Sequence[int],
        out_features: int,
        activation: str,
        condition_dim: int = 0,
        res_blocks: int = 0,
        name: str = "conv",
    ) -> None:
        super().__init__()
        h, w = _check_image(name, image_shape, channels)
        self.image_shape = tuple(image_shape)
        layers: list[nn.Module] = []
        width = image_shape[0]
        for ch in channels:
            layers += [nn.Conv2d(width, ch, 4, stride=2, padding=1), ACTIVATIONS[activation]()]
            layers += [ResBlock(ch, activation) for _ in range(res_blocks)]
            width = ch
        self.convs = nn.Sequential(*layers)
        self.head = MLP(width * h * w + condition_dim, hidden, out_features, activation)
        self.out_features = out_features
        _, height, wide = image_shape
        self.floats_per_row = self.head.floats_per_row + sum(
            ch * (height >> (i + 1)) * (wide >> (i + 1)) * (1 + 2 * res_blocks)
            for i, ch in enumerate(channels)
        )

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        lead = x.shape[: x.dim() - (3 if tuple(x.shape[-3:]) == self.image_shape else 1)]
        features = self.convs(x.reshape(-1, *self.image_shape)).flatten(1)
        return self.head(features.reshape(*lead, -1), condition)


#: How a conv decoder doubles height and width at each stage: "resize" (nearest-neighbour
#: upsampling, then a 3x3 convolution: every output pixel is made by the same weights, so no
#: checkerboard pattern; Odena et al. 2016, "Deconvolution and checkerboard artifacts") or
#: "transpose" (a 4x4 stride-2 transposed convolution, whose four output phases each use their own
#: quarter of the kernel; the networks of runs saved before the setting existed).
UPSAMPLES = ("resize", "transpose")


def _upsample(width: int, out: int, how: str) -> list[nn.Module]:
    """Layers that double H and W of (N, width, H, W) to (N, out, 2H, 2W), as ``how`` says."""
    if how == "transpose":
        return [nn.ConvTranspose2d(width, out, 4, stride=2, padding=1)]
    if how == "resize":
        return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, out, 3, padding=1)]
    raise ConfigError(f"unknown conv_upsample {how!r}; choose one of {', '.join(UPSAMPLES)}")


class ConvDecoder(nn.Module):
    """Features to images: an MLP (on the input and the condition) to a small feature map, then
    one upsampling stage per entry of ``channels`` (each doubles H and W; with ``res_blocks``
    residual blocks before each) up to ``out_channels`` channels at full size. ``upsample``
    (one of :data:`UPSAMPLES`): "resize" (nearest-neighbour 2x, then a 3x3 convolution) or
    "transpose" (a 4x4 stride-2 transposed convolution).

    Input (..., in_features); output (..., out_channels * H * W), channel-major, so it reshapes
    to (..., out_channels, H, W).
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        channels: Sequence[int],
        hidden: Sequence[int],
        in_features: int,
        out_channels: int,
        activation: str,
        condition_dim: int = 0,
        res_blocks: int = 0,
        name: str = "conv",
        upsample: str = "resize",
    ) -> None:
        super().__init__()
        h, w = _check_image(name, image_shape, channels)
        self.start = (channels[-1], h, w)
        self.mlp = MLP(in_features + condition_dim, hidden, channels[-1] * h * w, activation)
        self.act = ACTIVATIONS[activation]()
        layers: list[nn.Module] = []
        widths = list(reversed(channels))
        for i, ch in enumerate(widths):
            layers += [ResBlock(ch, activation) for _ in range(res_blocks)]
            out = widths[i + 1] if i + 1 < len(widths) else out_channels
            layers += _upsample(ch, out, upsample)
            if i + 1 < len(widths):
                layers.append(ACTIVATIONS[activation]())
        self.convs = nn.Sequential(*layers)
        self.in_features = in_features
        self.out_features = out_channels * image_shape[1] * image_shape[2]
        _, height, wide = image_shape
        # a resize stage also holds its input at twice the size: (ch, 2h, 2w) for stage (ch, h, w)
        resized = 4 * (upsample == "resize")
        self.floats_per_row = (
            self.mlp.floats_per_row
            + self.mlp.out_features
            + sum(
                ch * (height >> (i + 1)) * (wide >> (i + 1)) * (1 + 2 * res_blocks + resized)
                for i, ch in enumerate(channels)
            )
        )

    def forward(self, z: Tensor, condition: Tensor | None = None) -> Tensor:
        lead = z.shape[:-1]
        features = self.act(self.mlp(z, condition)).reshape(-1, *self.start)
        return self.convs(features).reshape(*lead, self.out_features)


#: The FactorVAE paper's discriminator: six layers of 1000 units (Kim & Mnih 2018, table 2).
DISCRIMINATOR_HIDDEN = (1000,) * 6


class Discriminator(nn.Module):
    """An MLP from z (..., in_features) to one logit (...): linear layers of widths ``hidden``
    with leaky ReLU (slope 0.2) between them (FactorVAE's discriminator).

    ``frozen=True`` computes the same function with the weights detached, so gradients reach
    the input and not the weights (a generator's loss through a fixed discriminator).
    """

    def __init__(self, in_features: int, hidden: Sequence[int]) -> None:
        super().__init__()
        widths = [in_features, *hidden, 1]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))

    def forward(self, z: Tensor, frozen: bool = False) -> Tensor:
        h = z
        for i, layer in enumerate(self.layers):
            w, b = layer.weight, layer.bias
            if frozen:
                w, b = w.detach(), b.detach()
            h = F.linear(h, w, b)
            if i + 1 < len(self.layers):
                h = F.leaky_relu(h, 0.2)
        return h.squeeze(-1)


@dataclass(frozen=True)
class NetSpec:
    """What an encoder/decoder pair maps between.

    shape: one example as the networks see it ((D,) or (C, H, W) for images).
    encoder_out: encoder output features per example. decoder_in: decoder input features.
    out_per_dim: decoder outputs per scalar of the example (the decoder emits
        ``out_per_dim * prod(shape)`` values, laid out as (out_per_dim, *shape)).
    condition_dim: width of a condition vector concatenated to both networks' inputs (0: none).
    hidden: widths of fully connected layers (all of an MLP; the head of a conv network).
    activation: a name in ACTIVATIONS. channels: widths of the conv stages.
    res_blocks: residual blocks per stage (the resnet networks).
    conv_upsample: how the conv decoders double height and width (one of :data:`UPSAMPLES`).
    """

    shape: tuple[int, ...]
    encoder_out: int
    decoder_in: int
    out_per_dim: int
    hidden: tuple[int, ...] = ()
    activation: str = "relu"
    condition_dim: int = 0
    channels: tuple[int, ...] = (32, 64)
    res_blocks: int = 1
    conv_upsample: str = "resize"


def mlp_networks(spec: NetSpec) -> tuple[nn.Module, nn.Module]:
    """MLP encoder and a decoder with the hidden widths reversed (the AEVB paper's networks).

    Both act on flat examples; the encoder takes (..., prod(shape))."""
    d = math.prod(spec.shape)
    encoder = MLP(d + spec.condition_dim, spec.hidden, spec.encoder_out, spec.activation)
    decoder = MLP(
        spec.decoder_in + spec.condition_dim,
        tuple(reversed(spec.hidden)),
        spec.out_per_dim * d,
        spec.activation,
    )
    return encoder, decoder


def _conv_networks(spec: NetSpec, res_blocks: int, name: str) -> tuple[nn.Module, nn.Module]:
    shape = tuple(spec.shape)
    common = {"activation": spec.activation, "condition_dim": spec.condition_dim, "name": name}
    encoder = ConvEncoder(
        shape, spec.channels, spec.hidden, spec.encoder_out, res_blocks=res_blocks, **common
    )
    decoder = ConvDecoder(
        shape,
        spec.channels,
        tuple(reversed(spec.hidden)),
        spec.decoder_in,
        spec.out_per_dim * shape[0],
        res_blocks=res_blocks,
        upsample=spec.conv_upsample,
        **common,
    )
    return encoder, decoder


def conv_networks(spec: NetSpec) -> tuple[nn.Module, nn.Module]:
    """Convolutional encoder and decoder for (C, H, W) images (the decoder upsampling as
    ``spec.conv_upsample`` says)."""
    return _conv_networks(spec, 0, "conv")


def resnet_networks(spec: NetSpec) -> tuple[nn.Module, nn.Module]:
    """The conv networks with ``res_blocks`` residual blocks at every resolution."""
    return _conv_networks(spec, spec.res_blocks, "resnet")


#: Name in a config -> builder of an (encoder, decoder) pair.
NETWORKS: dict[str, Callable[[NetSpec], tuple[nn.Module, nn.Module]]] = {
    "mlp": mlp_networks,
    "conv": conv_networks,
    "resnet": resnet_networks,
}

#: Entry-point group in which installed packages register builders of networks by name.
ENTRY_POINT_GROUP = "vaekit.networks"
#: Where the builder protocol is documented, for messages.
PLUGIN_DOCS = 'docs/architecture.md, "Network plug-ins"'

Builder = Callable[[NetSpec], tuple[nn.Module, nn.Module]]


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())}".rstrip(": ")


def installed_networks() -> dict[str, metadata.EntryPoint]:
    """Entry points of the group ``vaekit.networks`` of the installed packages, by name (the
    first of each name in the order Python lists them). Listing them imports nothing."""
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)
    return found


def _plugin(name: str) -> str:
    """``network 'NAME' (entry point NAME = module:function (vaekit.networks of package P V))``,
    for messages about an installed entry point."""
    ep = installed_networks()[name]
    dist = getattr(ep, "dist", None)
    where = f" of package {dist.name} {dist.version}" if dist is not None else ""
    return f"network {name!r} (entry point {ep.name} = {ep.value} ({ENTRY_POINT_GROUP}{where}))"


def network_names() -> list[str]:
    """Every network a config may name: the built-ins, then the installed entry points."""
    return [*NETWORKS, *(n for n in installed_networks() if n not in NETWORKS)]


def check_network(name: str, value: str) -> None:
    """A constraint: ``value`` is a built-in network or an installed entry point's name (only
    listed, not imported)."""
    if value in NETWORKS or value in installed_networks():
        return
    installed = sorted(installed_networks())
    raise ConfigError(
        f"unknown {name} {value!r}{did_you_mean(value, network_names())}: not a built-in network "
        f"({', '.join(NETWORKS)}) nor an entry point of the group {ENTRY_POINT_GROUP!r} of the "
        f"installed packages ({', '.join(installed) or 'none installed'}); install the package "
        f"that provides it (see {PLUGIN_DOCS})"
    )


def network_builder(name: str) -> Builder:
    """The builder of the networks named ``name``: a built-in of :data:`NETWORKS` first, else
    the entry point of that name in the group ``vaekit.networks``, loaded (which imports its
    installed package; nothing is read from a run folder). An unknown name, or an entry point
    that cannot be loaded or is not callable, is a :class:`ConfigError` naming it."""
    if name in NETWORKS:
        return NETWORKS[name]
    check_network("network", name)
    what = _plugin(name)
    try:
        builder = installed_networks()[name].load()
    except Exception as err:
        raise ConfigError(
            f"{what} cannot be loaded ({_one_line(err)}); reinstall the package that provides it"
        ) from None
    if not callable(builder):
        raise ConfigError(
            f"{what} is not callable ({type(builder).__name__}); it "
            f"must name a builder function of a NetSpec (see {PLUGIN_DOCS})"
        )
    return builder


def build_networks(name: str, spec: NetSpec) -> tuple[nn.Module, nn.Module]:
    """The (encoder, decoder) that the network ``name`` builds for ``spec``.

    A plug-in's pair is checked on a batch of two zeros (in eval mode, without gradients, so no
    weight or running statistic moves): the encoder must map (2, prod(shape)) [and a condition
    (2, condition_dim)] to (2, encoder_out), the decoder (3, 2, decoder_in) [and (3, 2,
    condition_dim)] to (3, 2, out_per_dim * prod(shape)). A builder that raises, returns
    something else or networks of other sizes is a :class:`ConfigError` naming its entry point.
    A network without ``floats_per_row`` gets the activations the check counted.
    """
    builder = network_builder(name)
    if name in NETWORKS:
        return builder(spec)
    what = _plugin(name)
    try:
        nets = builder(spec)
    except ConfigError:
        raise
    except Exception as err:
        if torch.zeros(()).is_meta:  # sizing on the meta device, which the builder may not allow
            raise
        raise ConfigError(f"{what} failed to build for {spec}: {_one_line(err)}") from None
    if not (
        isinstance(nets, tuple | list)
        and len(nets) == 2
        and all(isinstance(m, nn.Module) for m in nets)
    ):
        got = type(nets).__name__
        if isinstance(nets, tuple | list):
            got = f"{got} of {', '.join(type(m).__name__ for m in nets) or 'nothing'}"
        raise ConfigError(
            f"{what} returned a {got}; a builder returns (encoder, decoder), two torch.nn.Module "
            f"(see {PLUGIN_DOCS})"
        )
    encoder, decoder = nets
    _probe(what, spec, encoder, decoder)
    return encoder, decoder


def _probe(what: str, spec: NetSpec, encoder: nn.Module, decoder: nn.Module) -> None:
    """Check the output sizes of a plug-in's networks on zeros; see :func:`build_networks`."""
    probe = torch.zeros(())
    if probe.is_meta:  # sizing a model on the meta device: the real build checks
        return
    d = math.prod(spec.shape)
    cond = torch.zeros(2, spec.condition_dim) if spec.condition_dim else None
    calls = (
        ("encoder", encoder, torch.zeros(2, d), cond, (2, spec.encoder_out)),
        (
            "decoder",
            decoder,
            torch.zeros(3, 2, spec.decoder_in),
            None if cond is None else cond.expand(3, 2, -1),
            (3, 2, spec.out_per_dim * d),
        ),
    )
    for role, net, x, c, want in calls:
        modes = [(m, m.training) for m in net.modules()]
        floats = [0]

        def count(_m: nn.Module, _in: object, out: object, floats: list[int] = floats) -> None:
            if isinstance(out, Tensor):
                floats[0] += out.numel()

        leaves = [m for m in net.modules() if not next(m.children(), None)]
        hooks = [m.register_forward_hook(count) for m in leaves]
        try:
            net.eval()
            with torch.no_grad():
                p = next(net.parameters(), None)
                args = [t if t is None or p is None else t.to(p) for t in (x, c)]
                out = net(*args)
        except Exception as err:
            raise ConfigError(
                f"{what}: the {role} fails on inputs {tuple(x.shape)}"
                f"{'' if c is None else f' and condition {tuple(c.shape)}'}: {_one_line(err)}"
            ) from None
        finally:
            for h in hooks:
                h.remove()
            for m, mode in modes:
                m.training = mode
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        if shape != want:
            raise ConfigError(
                f"{what}: the {role} maps {tuple(x.shape)} to {shape}, not {want} (see "
                f"{PLUGIN_DOCS})"
            )
        if not hasattr(net, "floats_per_row"):
            net.floats_per_row = max(1, floats[0] // math.prod(want[:-1]))
