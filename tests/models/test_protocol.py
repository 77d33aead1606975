"""Every model kind keeps the protocol of vaekit.models.base, and its capability flags say true
things: the trainer, the estimators and the commands rely on them instead of the model's class."""

import pytest
import torch

from vaekit import ConfigError, DataError
from vaekit.evaluation import check_refinable, refine_posterior
from vaekit.models import MODELS, Model, load, model_terms
from vaekit.objectives import Terms
from vaekit.tokenizer import Tokenizer

KINDS = {
    "vae": {"kind": "vae", "data_shape": (6,), "latent_dim": 2, "hidden": (8,)},
    "cvae": {"kind": "vae", "data_shape": (6,), "latent_dim": 2, "condition_dim": 3},
    "hvae": {
        "kind": "hvae",
        "data_shape": (6,),
        "hidden": (8,),
        "latent_dim": 3,
        "hidden2": (4,),
        "latent_dim2": 2,
    },
    "categorical": {
        "kind": "categorical",
        "data_shape": (6,),
        "n_latents": 2,
        "n_categories": 3,
        "hidden": (8,),
    },
    "text": {
        "kind": "text",
        "vocab": ("a", "b", "c"),
        "data_shape": (5,),
        "hidden": (8,),
        "embed_dim": 4,
        "latent_dim": 2,
    },
}


def make(name: str) -> tuple[Model, torch.Tensor, dict]:
    settings = dict(KINDS[name])
    cls = MODELS[settings.pop("kind")]
    model = cls(**settings)
    if model.capabilities.tokens:
        x = Tokenizer(settings["vocab"]).encode(["ab", "cab", "b", "abca"], 5)
    else:
        x = torch.rand(4, 6, generator=torch.Generator().manual_seed(0)).round()
    kw = {"condition": torch.tensor([0, 1, 2, 0])} if model.capabilities.conditional else {}
    return model, x, kw


@pytest.mark.parametrize("name", sorted(KINDS))
def test_forward_gives_the_terms_of_k_samples(name: str) -> None:
    model, x, kw = make(name)
    model.eval()
    terms = model(x, k=3, generator=torch.Generator().manual_seed(1), **kw)
    assert isinstance(terms, Terms) and terms.log_w.shape == (3, 4)
    assert torch.isfinite(terms.log_w).all()
    assert MODELS[model.kind] is type(model)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_noise_terms_are_forward_with_the_noise_given(name: str) -> None:
    model, x, kw = make(name)
    model.eval()
    if not model.capabilities.noise_terms:
        assert not model.capabilities.closed_form and not model.capabilities.forward_is_terms
        return
    eps = torch.randn((3, 4, model.noise_dim), generator=torch.Generator().manual_seed(2))
    condition = model.condition(kw["condition"], 4) if kw else None
    given = model_terms(model, x, eps, condition=condition).log_w
    drawn = model(x, k=3, generator=torch.Generator().manual_seed(2), **kw).log_w
    torch.testing.assert_close(given, drawn)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_a_condition_is_taken_exactly_when_the_model_is_conditional(name: str) -> None:
    model, _, kw = make(name)
    if model.capabilities.conditional:
        assert model.condition(kw["condition"], 4).shape == (4, model.config.condition_dim)
        with pytest.raises(DataError, match="conditional"):
            model.condition(None, 4)
    else:
        assert model.condition(None, 4) is None
        with pytest.raises(DataError, match="not conditional"):
            model.condition(torch.zeros(4), 4)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_latent_stats_and_the_bounds_as_methods(name: str) -> None:
    model, x, kw = make(name)
    stats = model.latent_stats(x, **kw)
    assert set(stats) >= {"kl_per_dim", "kl", "activity"}
    assert torch.isfinite(stats["kl"]) and (stats["activity"] >= 0).all()
    elbo = model.elbo(x, samples=4, **kw)
    log_px = model.log_likelihood(x, k=64, **kw)
    assert elbo.shape == log_px.shape == (4,)
    assert float(log_px.mean()) >= float(elbo.mean()) - 0.5  # the IW bound is the tighter


@pytest.mark.parametrize("name", sorted(KINDS))
def test_a_saved_model_loads_as_the_same_kind_with_the_same_terms(name: str, tmp_path) -> None:
    model, x, kw = make(name)
    model.eval()
    model.save(tmp_path / name)
    same = load(tmp_path / name)
    assert type(same) is type(model) and same.capabilities == model.capabilities
    for m in (model, same):
        m.eval()
    a = model(x, k=2, generator=torch.Generator().manual_seed(3), **kw).log_w
    b = same(x, k=2, generator=torch.Generator().manual_seed(3), **kw).log_w
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_refinable_means_refine_posterior_applies(name: str) -> None:
    model, x, kw = make(name)
    if not model.capabilities.refinable:
        with pytest.raises(ConfigError, match="one diagonal Gaussian latent"):
            check_refinable(model)
        return
    check_refinable(model)
    q = refine_posterior(model, x, steps=3, **kw)
    assert q.mean.shape == (4, model.config.latent_dim)


def test_exact_likelihood_agrees_with_the_importance_weighted_estimate() -> None:
    model, x, _ = make("categorical")
    assert model.capabilities.exact_likelihood and model.capabilities.discrete_latent
    exact = model.log_likelihood_exact(x)
    estimate = model.log_likelihood(x, k=4000)
    torch.testing.assert_close(estimate, exact, atol=0.05, rtol=0)
