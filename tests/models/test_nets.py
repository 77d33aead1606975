"""Networks: conv and residual encoders/decoders for 28x28 grey and 32x32 colour images, their
shape errors, the registry a config names, and conditions concatenated to their inputs."""

from __future__ import annotations

import math

import pytest
import torch

from vaekit import VAE, ConfigError, fit
from vaekit.nets import MLP, NETWORKS, ConvDecoder, ConvEncoder, NetSpec


def spec(shape: tuple[int, ...], **kw) -> NetSpec:
    return NetSpec(shape=shape, encoder_out=6, decoder_in=3, out_per_dim=2, **kw)


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize(
    ("shape", "channels"), [((1, 28, 28), (8, 16)), ((3, 32, 32), (8, 16, 16))]
)
def test_networks_map_images_to_features_and_back(
    name: str, shape: tuple[int, ...], channels: tuple[int, ...]
) -> None:
    torch.manual_seed(0)
    encoder, decoder = NETWORKS[name](spec(shape, hidden=(10,), channels=channels))
    d = math.prod(shape)
    x = torch.rand(5, d)
    assert encoder(x).shape == (5, 6)
    z = torch.randn(4, 5, 3)  # (K, B, decoder_in): any leading shape
    out = decoder(z)
    assert out.shape == (4, 5, 2 * d)
    # Each output row depends only on its own z.
    assert torch.allclose(decoder(z[1:2, 3:4]), out[1:2, 3:4], atol=1e-5)
    if name != "mlp":  # conv encoders also take (B, C, H, W)
        assert torch.allclose(encoder(x.reshape(5, *shape)), encoder(x), atol=1e-6)


def test_resnet_has_residual_blocks_and_conv_has_none() -> None:
    def blocks(name: str, res_blocks: int) -> int:
        encoder, decoder = NETWORKS[name](spec((1, 28, 28), channels=(4, 8), res_blocks=res_blocks))
        return sum(type(m).__name__ == "ResBlock" for m in [*encoder.modules(), *decoder.modules()])

    assert blocks("conv", 2) == 0
    assert blocks("resnet", 2) == 2 * 2 * 2  # per stage, in encoder and decoder


def test_decoder_output_is_channel_major() -> None:
    """out_per_dim * C channels reshape to (out_per_dim, C, H, W), as the likelihoods expect."""
    torch.manual_seed(0)
    decoder = ConvDecoder((3, 8, 8), (4,), (), 2, out_channels=6, activation="relu")
    z = torch.randn(2, 2)
    flat = decoder(z)  # (2, 6 * 64)
    features = decoder.act(decoder.mlp(z)).reshape(-1, *decoder.start)
    assert torch.equal(flat.reshape(2, 2, 3, 8, 8), decoder.convs(features).reshape(2, 2, 3, 8, 8))


@pytest.mark.parametrize(
    ("shape", "channels", "match"),
    [
        ((784,), (8,), r"needs examples shaped \(C, H, W\).*image_shape"),
        ((1, 30, 30), (8, 16), "divisible by 4.*30, 30"),
        ((3, 32, 32), (), "at least one entry in channels"),
    ],
)
def test_shapes_the_conv_networks_cannot_take(shape, channels, match) -> None:
    for name in ("conv", "resnet"):
        with pytest.raises(ConfigError, match=match):
            NETWORKS[name](spec(shape, channels=channels))


def test_condition_is_concatenated_to_both_inputs() -> None:
    torch.manual_seed(0)
    for name, shape in (("mlp", (6,)), ("conv", (1, 8, 8))):
        encoder, decoder = NETWORKS[name](spec(shape, channels=(4,), condition_dim=2))
        x, z = torch.rand(3, math.prod(shape)), torch.randn(3, 3)
        c0, c1 = torch.tensor([[1.0, 0.0]]).expand(3, 2), torch.tensor([[0.0, 1.0]]).expand(3, 2)
        assert not torch.allclose(encoder(x, c0), encoder(x, c1))
        assert not torch.allclose(decoder(z, c0), decoder(z, c1))
    mlp = MLP(5, (4,), 3)
    x = torch.randn(2, 5)
    assert torch.equal(mlp(x[:, :3], x[:, 3:]), mlp(x))


def test_model_config_picks_the_network_and_reads_flat_images() -> None:
    model = VAE(data_shape=(784,), image_shape=(1, 28, 28), network="conv", channels=(4, 8))
    assert isinstance(model.encoder, ConvEncoder) and isinstance(model.decoder, ConvDecoder)
    x = torch.rand(3, 784)
    assert model.reconstruct(x).shape == (3, 784)
    with pytest.raises(ConfigError, match="image_shape"):
        VAE(data_shape=(784,), network="conv")
    with pytest.raises(ConfigError, match="image_shape"):
        VAE(data_shape=(784,), image_shape=(1, 28, 27))
    with pytest.raises(ConfigError, match="unknown network 'transformer'"):
        VAE(network="transformer")


@pytest.mark.parametrize(
    "fields",
    [
        {"data_shape": (784,), "image_shape": (1, 28, 28), "network": "conv", "channels": (4, 8)},
        {
            "data_shape": (3, 32, 32),
            "network": "resnet",
            "channels": (4, 8, 8),
            "likelihood": "discretized_logistic",
            "likelihood_components": 2,
            "prior": "mog",
        },
    ],
)
def test_conv_models_train_a_few_steps(fields) -> None:
    torch.manual_seed(0)
    model = VAE(latent_dim=3, activation="relu", **fields)
    x = torch.randint(0, 256, (12, *model.config.data_shape)) / 255
    if model.config.likelihood == "bernoulli":
        x = x.round()
    before = [p.detach().clone() for p in model.parameters()]
    history = fit(model, x, valid=x[:4], epochs=2, batch_size=6, objective="iwae", samples=2)
    assert history[-1]["step"] == 4 and math.isfinite(history[-1]["valid_elbo"])
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert model.sample(2).shape == (2, *model.config.data_shape)
