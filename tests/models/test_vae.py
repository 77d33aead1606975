"""The VAE module: shapes, the terms of forward() recomputed by hand, reproducible noise, bounded
encoder variances, and config validation with messages that name the value."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal

from vaekit import VAE, ConfigError, DataError, VAEConfig
from vaekit.distributions import rsample
from vaekit.likelihoods import soft_clamp


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("data_shape", [(6,), (1, 3, 4)])
@pytest.mark.parametrize("hidden", [(), (8,), (8, 5)])
def test_shapes(data_shape: tuple[int, ...], hidden: tuple[int, ...]) -> None:
    model = VAE(data_shape=data_shape, latent_dim=3, hidden=hidden)
    x = torch.rand(5, *data_shape)
    qz_x = model.encode(x)
    assert qz_x.batch_shape == (5,) and qz_x.event_shape == (3,)
    px_z = model.decode(torch.randn(4, 5, 3))
    assert px_z.batch_shape == (4, 5) and px_z.event_shape == data_shape
    terms = model(x, k=4)
    for t in (terms.log_px_z, terms.log_pz, terms.log_qz_x, terms.log_w):
        assert t.shape == (4, 5)
    assert terms.kl.shape == (5,)
    assert model.sample(7).shape == (7, *data_shape)
    assert model.sample(7, mean=False).shape == (7, *data_shape)
    assert model.reconstruct(x).shape == x.shape
    assert model.pz().event_shape == (3,)


def test_forward_terms_recomputed_by_hand() -> None:
    # Same generator seed -> same eps -> the same z, so each term can be recomputed directly.
    model = VAE(data_shape=(5,), latent_dim=2, hidden=(4,), likelihood="gaussian").double()
    x = torch.randn(3, 5, dtype=torch.float64)
    terms = model(x, k=6, generator=gen(7))
    h = model.encoder(x)
    loc, raw_logvar = h[:, :2], h[:, 2:]
    std = (0.5 * soft_clamp(raw_logvar, -12.0, 6.0)).exp()
    eps = torch.randn(6, 3, 2, generator=gen(7), dtype=torch.float64)
    z = loc + std * eps  # (K, B, M)
    out = model.decoder(z)  # (K, B, 2 * D)
    mean, dec_logvar = out[..., :5], soft_clamp(out[..., 5:], -8.0, 4.0)
    log_px_z = Normal(mean, (0.5 * dec_logvar).exp()).log_prob(x).sum(-1)
    log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_qz_x = Normal(loc, std).log_prob(z).sum(-1)
    assert torch.allclose(terms.log_px_z, log_px_z)
    assert torch.allclose(terms.log_pz, log_pz)
    assert torch.allclose(terms.log_qz_x, log_qz_x)
    assert torch.allclose(terms.log_w, log_px_z + log_pz - log_qz_x)


def test_generator_makes_forward_reproducible() -> None:
    model = VAE(data_shape=(6,), latent_dim=2, hidden=(4,))
    x = torch.rand(3, 6)
    a, b = model(x, k=5, generator=gen(1)), model(x, k=5, generator=gen(1))
    assert torch.equal(a.log_w, b.log_w)
    c = model(x, k=5, generator=gen(2))
    assert not torch.equal(a.log_w, c.log_w)


def test_rsample_is_reparameterized() -> None:
    loc = torch.tensor([[0.5, -1.0]], requires_grad=True)
    scale = torch.tensor([[2.0, 0.1]], requires_grad=True)
    qz_x = Independent(Normal(loc, scale), 1)
    z = rsample(qz_x, 4, gen(3))  # (4, 1, 2)
    eps = torch.randn(4, 1, 2, generator=gen(3))
    assert torch.allclose(z, loc + scale * eps)
    z.sum().backward()
    assert torch.allclose(loc.grad, torch.full_like(loc, 4.0))
    assert torch.allclose(scale.grad, eps.sum(0))


def test_rsample_has_the_right_moments() -> None:
    qz_x = Independent(Normal(torch.tensor([1.0, -2.0]), torch.tensor([0.5, 3.0])), 1)
    z = rsample(qz_x, 100000, gen(0))
    se_mean = torch.tensor([0.5, 3.0]) / math.sqrt(100000)
    assert torch.all((z.mean(0) - torch.tensor([1.0, -2.0])).abs() < 4 * se_mean)
    assert torch.allclose(z.std(0), torch.tensor([0.5, 3.0]), rtol=0.02)


def test_encoder_variance_stays_within_its_bounds() -> None:
    model = VAE(
        data_shape=(4,), latent_dim=3, hidden=(), encoder_min_logvar=-3.0, encoder_max_logvar=2.0
    )
    with torch.no_grad():
        model.encoder[0].weight.fill_(100.0)
    x = torch.tensor([[1e3] * 4, [-1e3] * 4, [0.0] * 4])
    logvar = model.encode(x).variance.log()
    assert torch.all(logvar >= -3.0 - 1e-6) and torch.all(logvar <= 2.0 + 1e-6)
    assert logvar[0].max() > 1.99 and logvar[1].min() < -2.99


def test_learned_prior_enters_the_terms() -> None:
    model = VAE(data_shape=(4,), latent_dim=2, hidden=(3,), prior="learned_gaussian")
    with torch.no_grad():
        model.prior.loc.fill_(1.5)
    x = torch.rand(3, 4)
    terms = model(x, k=2, generator=gen(0))
    z = rsample(model.encode(x), 2, gen(0))
    assert torch.allclose(terms.log_pz, Normal(1.5, 1.0).log_prob(z).sum(-1))
    (-terms.log_w.mean()).backward()
    assert model.prior.loc.grad.abs().sum() > 0


def test_wrong_input_shape_is_a_data_error() -> None:
    model = VAE(data_shape=(6,), latent_dim=2, hidden=(4,))
    with pytest.raises(DataError, match=r"\(5,\).*\(6,\)"):
        model.encode(torch.rand(3, 5))


def test_fields_as_keyword_arguments_override_a_config() -> None:
    base = VAEConfig(data_shape=(6,), latent_dim=2, hidden=(4,))
    model = VAE(base, latent_dim=5)
    assert model.config == VAEConfig(data_shape=(6,), latent_dim=5, hidden=(4,))
    assert model.encoder.out_features == 10
    assert VAEConfig(data_shape=[2, 3], hidden=[4]).data_shape == (2, 3)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"latent_dim": 0}, "latent_dim"),
        ({"data_shape": ()}, "data_shape"),
        ({"data_shape": (3, 0)}, "data_shape"),
        ({"hidden": (4, -1)}, "hidden"),
        ({"likelihood": "poisson"}, "poisson.*bernoulli"),
        ({"prior": "flow"}, "flow.*standard_normal"),
        ({"activation": "swish"}, "swish.*tanh"),
        ({"decoder_min_logvar": 5.0}, "decoder_min_logvar"),
        ({"encoder_min_logvar": 7.0}, "encoder_min_logvar"),
        ({"encoder_min_logvar": -math.inf}, "encoder_min_logvar"),
        ({"decoder_max_logvar": math.inf}, "decoder_max_logvar"),
        ({"decoder_min_logvar": math.nan}, "decoder_min_logvar"),
        ({"decoder_std": 0.0}, "decoder_std"),
        ({"decoder_std": math.inf}, "decoder_std"),
    ],
)
def test_bad_config_names_the_setting(fields: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        VAEConfig(**fields)


def test_data_dim() -> None:
    assert VAEConfig(data_shape=(1, 28, 28)).data_dim == 784


# -- conditional VAE -------------------------------------------------------------------------------

PATTERNS = torch.tensor(
    [[1, 1, 1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0, 1, 1, 1]],
    dtype=torch.float32,
)


def test_conditional_sampling_respects_the_condition() -> None:
    """Trained where the class decides the pattern, samples of class c look like pattern c."""
    from vaekit import fit

    torch.manual_seed(0)
    labels = torch.arange(60) % 3
    model = VAE(data_shape=(9,), latent_dim=2, hidden=(16,), condition_dim=3, activation="relu")
    fit(model, PATTERNS[labels], conditions=labels, epochs=45, batch_size=20, lr=1e-2)
    torch.manual_seed(1)
    for c in range(3):
        samples = model.sample(200, condition=c)  # (200, 9)
        distance = ((samples[:, None] - PATTERNS) ** 2).sum(-1)  # (200, 3)
        assert int(distance.mean(0).argmin()) == c
        assert float((distance.argmin(-1) == c).float().mean()) > 0.9, c
    # The bound uses the condition: the right labels explain the data far better than wrong ones.
    x = PATTERNS[labels]
    right = model.elbo(x, condition=labels).mean()
    wrong = model.elbo(x, condition=(labels + 1) % 3).mean()
    assert right > wrong + 5


def test_labels_become_one_hot_conditions() -> None:
    torch.manual_seed(0)
    model = VAE(data_shape=(9,), latent_dim=2, hidden=(4,), condition_dim=3)
    x, labels = PATTERNS[[0, 2, 1]], torch.tensor([0, 2, 1])
    one_hot = torch.eye(3)[labels]
    a = model(x, k=2, generator=torch.Generator().manual_seed(1), condition=labels)
    b = model(x, k=2, generator=torch.Generator().manual_seed(1), condition=one_hot)
    assert torch.equal(a.log_w, b.log_w)
    assert torch.equal(model.encode(x, 1).mean, model.encode(x, torch.eye(3)[[1, 1, 1]]).mean)
    assert torch.equal(model.reconstruct(x, labels), model.reconstruct(x, one_hot))
    z = torch.randn(2)  # one latent, one label
    assert torch.equal(model.decode(z, 2).mean, model.decode(z[None], 2).mean[0])
    vectors = torch.rand(3, 3)  # any vector works as a condition
    assert model.decode(torch.randn(3, 2), vectors).mean.shape == (3, 9)


@pytest.mark.parametrize(
    ("condition", "match"),
    [
        (None, "conditional .condition_dim = 3.: give a condition"),
        (torch.tensor([0, 3, 1]), "label 3 is outside 0..2"),
        (torch.rand(3, 4), r"shape \(3, 4\) do not match condition_dim = 3"),
        (torch.tensor([0, 1]), "2 conditions for 3 examples"),
    ],
)
def test_bad_conditions_are_data_errors(condition, match: str) -> None:
    model = VAE(data_shape=(9,), latent_dim=2, hidden=(4,), condition_dim=3)
    with pytest.raises(DataError, match=match):
        model(PATTERNS, condition=condition)


def test_conditions_for_fit_and_unconditional_models() -> None:
    from vaekit import fit

    plain = VAE(data_shape=(9,), latent_dim=2, hidden=(4,))
    with pytest.raises(DataError, match="not conditional"):
        plain.encode(PATTERNS, condition=0)
    with pytest.raises(DataError, match="not conditional"):
        fit(plain, PATTERNS, conditions=[0, 1, 2], epochs=1)
    model = VAE(data_shape=(9,), latent_dim=2, hidden=(4,), condition_dim=3)
    with pytest.raises(DataError, match=r"give conditions \(labels or vectors\) for the training"):
        fit(model, PATTERNS, epochs=1)
    with pytest.raises(DataError, match="for the validation data"):
        fit(model, PATTERNS, conditions=[0, 1, 2], valid=PATTERNS, epochs=1)
    with pytest.raises(ConfigError, match="vamp"):
        VAE(condition_dim=3, prior="vamp")
    history = fit(
        model,
        PATTERNS,
        conditions=[0, 1, 2],
        valid=PATTERNS,
        valid_conditions=np.array([0, 1, 2]),
        epochs=2,
        precision="bf16",
    )
    assert history[-1]["path"] == "eager" and math.isfinite(history[-1]["valid_elbo"])


def test_a_subclass_s_own_distributions_give_kl_from_q_to_p() -> None:
    """The path for subclasses that override encode: its closed-form KL is KL(q(z|x) || p(z)),
    checked at a learned prior away from N(0, I), where the two directions differ."""
    from torch.distributions import kl_divergence

    class Sub(VAE):
        def encode(self, x, condition=None):
            return super().encode(x, condition)

    torch.manual_seed(0)
    m = Sub(data_shape=(4,), latent_dim=2, hidden=(3,), prior="learned_gaussian").double()
    with torch.no_grad():
        m.prior.loc.fill_(0.7)
        m.prior.log_scale.fill_(-0.4)
    x = torch.randn(5, 4, generator=gen(0), dtype=torch.float64)
    terms = m(x, k=1, generator=gen(1))
    q, p = m.encode(x), m.pz()
    assert torch.allclose(terms.kl, kl_divergence(q, p))
    assert not torch.allclose(terms.kl, kl_divergence(p, q))


def _every_kind() -> list:
    """Factories of a small model of each kind (each test mutates its own)."""
    from vaekit import HVAE, CategoricalVAE, TextVAE

    return [
        lambda: VAE(data_shape=(6,), latent_dim=3, hidden=(8,)),
        lambda: VAE(data_shape=(6,), latent_dim=3, hidden=(8,), prior="vamp", prior_components=2),
        lambda: HVAE(data_shape=(6,), hidden=(8,), latent_dim=3, hidden2=(4,), latent_dim2=2),
        lambda: CategoricalVAE(data_shape=(6,), n_latents=1, n_categories=3, hidden=(8,)),
        lambda: TextVAE(vocab=("a", "b"), data_shape=(6,), latent_dim=3, embed_dim=4, hidden=(8,)),
    ]


KINDS = ["vae", "vamp", "hvae", "categorical", "text"]


@pytest.mark.parametrize("make", _every_kind(), ids=KINDS)
def test_decode_names_latents_of_the_wrong_width(make) -> None:
    model = make()
    z = torch.zeros(2, model.config.latent_dim + 1)
    with pytest.raises(DataError, match=rf"latent_dim = {model.config.latent_dim}; give z of"):
        model.decode(z)


@pytest.mark.parametrize("make", _every_kind(), ids=KINDS)
def test_a_float64_model_decodes_float32_latents_and_back(make) -> None:
    """encode reads x in the model's dtype; decode reads z the same way, whichever float the
    latents come in (numpy's float64 latents into a float32 model, say)."""
    model = make()
    z = torch.rand(2, model.config.latent_dim)
    want = model.decode(z).mean
    got = model.decode(z.double()).mean  # float64 z, float32 model
    assert got.dtype == want.dtype and torch.allclose(got, want)
    assert torch.equal(model.decode(z.numpy()).mean, want)  # latents read from a .npy file
    model.double()
    assert torch.allclose(model.decode(z).mean.float(), want, atol=1e-5)  # float32 z


@pytest.mark.parametrize("make", _every_kind()[:4], ids=KINDS[:4])
def test_inputs_and_latents_move_to_the_model_s_device(make) -> None:
    """A model on another device (the meta device stands in for a GPU) encodes x and decodes z
    given on the CPU, as fit, log_likelihood and the conditions already take them."""
    model = make().to("meta")
    q = model.encode(torch.rand(2, 6))
    assert q.mean.device.type == "meta" and q.mean.shape == (2, model.config.latent_dim)
    px_z = model.decode(torch.zeros(2, model.config.latent_dim))
    assert px_z.mean.device.type == "meta" and px_z.mean.shape == (2, 6)


@pytest.mark.parametrize("make", _every_kind(), ids=KINDS)
def test_counts_of_draws_and_samples_are_checked(make) -> None:
    """sample(-1) and forward(x, k=0) (which makes every bound NaN) are one ConfigError."""
    model = make()
    for n in (0, -1, 2.0, True):
        with pytest.raises(ConfigError, match=rf"n must be a positive integer, got {n!r}"):
            model.sample(n)
    assert model.sample(np.int64(2)).shape == (2, 6)
    x = torch.tensor([[4.0, 5, 1, 0, 0, 0], [5.0, 1, 0, 0, 0, 0]])  # also token ids for text
    with pytest.raises(ConfigError, match="k must be a positive integer, got 0"):
        model(x if model.kind == "text" else x / 5, k=0)


@pytest.mark.parametrize("make", _every_kind(), ids=KINDS)
def test_numpy_examples_encode_as_their_tensor(make) -> None:
    """encode, forward and reconstruct read a numpy array as decode, fit and the estimates do."""
    model = make().eval()
    x = torch.tensor([[4.0, 5, 1, 0, 0, 0], [5.0, 1, 0, 0, 0, 0]])  # also token ids for text
    if model.kind != "text":
        x = x / 5
    assert torch.equal(model.encode(x.numpy()).mean, model.encode(x).mean)
    assert torch.equal(model.reconstruct(x.numpy()), model.reconstruct(x))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(model(x.numpy(), k=2, generator=g1).log_w, model(x, k=2, generator=g2).log_w)
