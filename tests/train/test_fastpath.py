"""The fast training path: selection and fallback, the device-side skip of non-finite steps, and
agreement with the eager loop. CPU only; the CUDA-graph capture itself is exercised by
benchmarks/smoke_gpu.py on a GPU machine."""

import math

import pytest
import torch

from vaekit import VAE
from vaekit.train import (
    DeviceMetrics,
    FastRun,
    FlatAdagrad,
    FlatAdam,
    TrainConfig,
    fit,
    load_optimizer_state,
    select_path,
)


def small_model(**kw):
    torch.manual_seed(0)
    return VAE(data_shape=(12,), latent_dim=3, hidden=(16,), **kw)


def data(n=300):
    return torch.rand(n, 12, generator=torch.Generator().manual_seed(1))


def test_cpu_falls_back_with_a_notice_in_the_history():
    path, notice = select_path(small_model(), TrainConfig(), 300)
    assert path == "off" and "CUDA" in notice and "\n" not in notice
    history = fit(small_model(), data(), epochs=1, batch_size=64)
    assert history[-1]["path"] == "eager"
    assert history[-1]["notice"] == notice


def test_off_is_silent_and_asked_for_fast_path_warns():
    assert select_path(small_model(), TrainConfig(fast="off"), 300) == ("off", None)
    assert "notice" not in fit(small_model(), data(), epochs=1, fast="off")[-1]
    with pytest.warns(RuntimeWarning, match="fast path off"):
        fit(small_model(), data(), epochs=1, fast="graph")


def test_selection_reasons():
    class Custom(VAE):
        def forward(self, x, k=1, generator=None):
            return super().forward(x, k, generator)

    m = Custom(data_shape=(12,), latent_dim=3, hidden=(16,))
    assert "cpu" in select_path(m, TrainConfig(), 300)[1]
    with pytest.raises(Exception, match="fast"):
        TrainConfig(fast="fastest")
    with pytest.raises(Exception, match="precision"):
        TrainConfig(precision="fp8")


def test_cpu_fit_is_bit_for_bit_deterministic():
    runs = []
    for _ in range(2):
        m = small_model()
        h = fit(m, data(), epochs=2, batch_size=64, binarize="dynamic", seed=5)
        runs.append((h[-1]["train_bound"], [p.detach().clone() for p in m.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True))


def snapshot(m, opt):
    state = opt.state_dict()["state"]
    moments = [v.clone() for st in state.values() for v in st.values()]
    return [p.detach().clone() for p in m.parameters()], moments


#: (flat optimizer, the torch optimizer it copies, its per-element state)
PAIRS = {
    "adam": (FlatAdam, torch.optim.Adam, ("exp_avg", "exp_avg_sq")),
    "adagrad": (FlatAdagrad, lambda params, **kw: torch.optim.Adagrad(params, eps=1e-10, **kw),
                ("sum",)),
}  # fmt: skip


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize(
    "options",
    [{}, {"weight_decay": 0.01}, {"grad_clip": 0.5}, {"weight_decay": 0.1, "grad_clip": 2.0}],
)
def test_flat_optimizers_are_torch_s(pair, options):
    """Same steps as torch.optim.Adam / Adagrad (and clip_grad_norm_), float64, to rounding."""
    flat_class, torch_class, moments = PAIRS[pair]
    a, b = small_model().double(), small_model().double()
    grad_clip = options.get("grad_clip", 0.0)
    ref = torch_class(a.parameters(), lr=0.05, weight_decay=options.get("weight_decay", 0))
    flat = flat_class(list(b.parameters()), lr=0.05, **options)
    g = torch.Generator().manual_seed(0)
    for _ in range(6):
        x = torch.rand(8, 12, generator=g, dtype=torch.float64)
        eps = torch.randn(1, 8, 3, generator=g, dtype=torch.float64)
        for m in (a, b):
            m.zero_grad()
            m.terms(x, eps).log_w.mean().neg().backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(a.parameters(), grad_clip)
        ref.step()
        assert bool(flat(torch.tensor(1.0)))
    moved = 0.0
    for pa, pb, p0 in zip(a.parameters(), b.parameters(), small_model().parameters(), strict=True):
        assert torch.allclose(pa, pb, rtol=1e-10, atol=1e-12)
        moved = max(moved, float((pb - p0.double()).detach().abs().max()))
    assert moved > 0.05  # six steps of lr 0.05 moved the weights
    state = flat.state_dict()["state"]
    for i, st in ref.state_dict()["state"].items():
        assert float(state[i]["step"]) == float(st["step"]) == 6
        for name in moments:
            assert torch.allclose(state[i][name], st[name], rtol=1e-10, atol=1e-16)


@pytest.mark.parametrize("pair", PAIRS)
def test_flat_optimizer_state_moves_to_and_from_torch_s(pair):
    """The fast loop's optimizer state continues on the eager loop's torch optimizer (and back)
    through the checkpoint's state-dict layout, step for step."""
    flat_class, torch_class, moments = PAIRS[pair]
    a, b = small_model().double(), small_model().double()
    flat = flat_class(list(a.parameters()), lr=0.01)
    for p in a.parameters():
        p.grad = torch.randn_like(p)
    flat(torch.tensor(0.0))
    with torch.no_grad():
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            pb.copy_(pa)
    ref = torch_class(b.parameters(), lr=0.01)
    load_optimizer_state(ref, flat.state_dict(), in_place=False)
    again = flat_class(list(small_model().double().parameters()), lr=0.01)
    load_optimizer_state(again, ref.state_dict(), in_place=True)
    assert torch.equal(again.step, flat.step) and float(again.step) == 1
    for name in moments:
        assert torch.equal(getattr(again, name), getattr(flat, name))
        assert float(getattr(again, name).abs().max()) > 0
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        grad = torch.randn_like(p)
        p.grad, q.grad = grad, grad.clone()
    flat(torch.tensor(0.0))
    ref.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(pa, pb, rtol=1e-10, atol=1e-12)


def test_adagrad_takes_the_fast_path_where_adam_does():
    class OnCuda(VAE):  # selection only: what a model on a CUDA device would get
        @property
        def device(self):
            return torch.device("cuda")

    model = OnCuda(data_shape=(12,), latent_dim=3, hidden=(16,))
    for optimizer in ("adam", "adagrad"):
        cfg = TrainConfig(optimizer=optimizer, batch_size=50, fast="graph")
        assert select_path(model, cfg, 300) == ("graph", None)


def test_flat_adam_skips_a_non_finite_step_and_the_metrics_count_it():
    m = small_model()
    opt = FlatAdam(list(m.parameters()), lr=1e-2)
    metrics = DeviceMetrics(torch.device("cpu"))
    for p in m.parameters():
        p.grad = torch.randn_like(p)
    assert bool(opt(torch.tensor(-1.0)))
    before = snapshot(m, opt)
    for bad_grad, bound in ((math.nan, 1.0), (math.inf, 1.0), (0.0, math.nan)):
        for p in m.parameters():
            p.grad = torch.full_like(p, bad_grad)
        finite = opt(torch.tensor(bound))
        assert not bool(finite)
        metrics.update(finite, torch.tensor(bound), 8)
        after = snapshot(m, opt)
        for a, b in zip(before[0] + before[1], after[0] + after[1], strict=True):
            assert torch.equal(a, b)
    counts = metrics.read()
    assert counts["skipped"] == 3 and counts["good"] == 0 and counts["seen"] == 0
    assert counts["bound_sum"] == 0 and counts["worst_run"] == 3

    for p in m.parameters():
        p.grad = torch.ones_like(p)
    finite = opt(torch.tensor(-3.0))
    metrics.update(finite, torch.tensor(-3.0), 8)
    after = snapshot(m, opt)
    assert not torch.equal(before[0][0], after[0][0])  # a good step moves the parameters
    counts = metrics.read()
    assert counts["good"] == 1 and counts["seen"] == 8 and counts["bound_sum"] == -3.0
    opt.release()
    assert all(p.untyped_storage().data_ptr() != opt.flat.data_ptr() for p in m.parameters())


@pytest.mark.parametrize(
    "optimizer", [{"optimizer": "adam"}, {"optimizer": "adagrad", "lr": 0.02}], ids=str
)
def test_static_shape_loop_drops_the_ragged_batch_and_matches_the_eager_loop(optimizer):
    """The fast path's loop (run step by step on CPU, without graphs) against fit's eager loop."""
    x = torch.rand(2000, 12, generator=torch.Generator().manual_seed(2))
    cfg = TrainConfig(
        epochs=4, batch_size=64, binarize="dynamic", seed=3, steps_per_launch=5, **optimizer
    )
    fast = list(FastRun(small_model(), x, cfg, "graph").epochs(False))
    eager = fit(small_model(), x, config=cfg)
    assert fast[-1]["dropped_per_epoch"] == 2000 % 64
    assert fast[-1]["step"] == 4 * (2000 // 64)  # 31 steps an epoch: 6 launches of 5, 1 of 1
    assert fast[-1]["examples_seen"] == 4 * 31 * 64
    assert fast[-1]["skipped_steps"] == 0
    assert abs(fast[-1]["train_bound"] - eager[-1]["train_bound"]) < 0.1


def test_fast_loop_is_deterministic_on_cpu():
    cfg = TrainConfig(epochs=2, batch_size=50, seed=7)
    a = list(FastRun(small_model(), data(), cfg, "graph").epochs(False))
    b = list(FastRun(small_model(), data(), cfg, "graph").epochs(False))
    assert a[-1]["train_bound"] == b[-1]["train_bound"]


def test_bf16_runs_on_cpu():
    h = fit(small_model(), data(), epochs=2, batch_size=64, precision="bf16")
    assert math.isfinite(h[-1]["train_bound"])


def test_fast_step_skips_a_non_finite_step_on_the_device():
    """A step whose bound is NaN leaves parameters and Adam state as they were and is counted."""
    cfg = TrainConfig(epochs=1, batch_size=50, seed=7, steps_per_launch=2)
    run = FastRun(small_model(), data(), cfg, "graph")
    run.idx.copy_(torch.arange(100).view(2, 50))
    run.eps.normal_()
    run._step(0)  # a good step: Adam state exists
    before = snapshot(run.model, run.optimizer)
    run.eps[1].fill_(math.nan)
    run._step(1)
    after = snapshot(run.model, run.optimizer)
    for a, b in zip(before[0] + before[1], after[0] + after[1], strict=True):
        assert torch.equal(a, b)
    counts = run.metrics.read()
    assert counts["good"] == 1 and counts["skipped"] == 1 and counts["worst_run"] == 1
    assert counts["seen"] == 50 and math.isfinite(counts["bound_sum"])


def test_closed_form_terms_match_the_distributions():
    from vaekit.models.base import _fp32  # noqa: F401  (the distribution path stays importable)

    for kw in ({}, {"likelihood": "gaussian"}, {"likelihood": "gaussian_fixed"},
               {"likelihood": "gaussian_shared", "prior": "learned_gaussian"},
               {"likelihood": "gaussian_per_dim"}):  # fmt: skip
        m = small_model(**kw).double()
        for p in m.parameters():
            p.data.add_(0.1 * torch.randn_like(p))
        x = data(5).double()
        eps = torch.randn(3, 5, 3, dtype=torch.float64)
        t = m.terms(x, eps)
        qz_x = m.encode(x)
        z = qz_x.base_dist.loc + qz_x.base_dist.scale * eps
        pz = m.pz()
        assert torch.allclose(t.log_px_z, m.decode(z).log_prob(x))
        assert torch.allclose(t.log_pz, pz.log_prob(z))
        assert torch.allclose(t.log_qz_x, qz_x.log_prob(z))
        assert torch.allclose(t.kl, torch.distributions.kl_divergence(qz_x, pz))


@pytest.mark.parametrize(
    "kw",
    [
        {"prior": "mog", "prior_components": 3},
        {"prior": "vamp", "prior_components": 3},
        {"likelihood": "discretized_logistic", "likelihood_components": 2},
        {"network": "conv", "channels": (2,), "image_shape": (1, 2, 6)},
        {"network": "resnet", "channels": (2,), "image_shape": (3, 2, 2), "prior": "mog"},
    ],
)
def test_fast_loop_runs_mixture_priors_the_logistic_likelihood_and_conv_nets(kw):
    """Their closed-form terms equal the distributions' and the fast loop trains them."""
    m = small_model(**kw).double()
    x = (torch.randint(0, 256, (5, 12), generator=torch.Generator().manual_seed(4)) / 255).double()
    eps = torch.randn(3, 5, 3, dtype=torch.float64)
    t = m.terms(x, eps)
    qz_x = m.encode(x)
    z = qz_x.base_dist.loc + qz_x.base_dist.scale * eps
    assert torch.allclose(t.log_px_z, m.decode(z).log_prob(x))
    assert torch.allclose(t.log_pz, m.pz().log_prob(z))
    assert (t.kl is None) == ("prior" in kw)
    x = torch.randint(0, 256, (300, 12), generator=torch.Generator().manual_seed(5)) / 255
    cfg = TrainConfig(epochs=2, batch_size=50, seed=7, objective="iwae", samples=2)
    fast = list(FastRun(small_model(**kw), x, cfg, "graph").epochs(False))
    eager = fit(small_model(**kw), x, config=cfg)
    assert fast[-1]["skipped_steps"] == 0 and math.isfinite(fast[-1]["train_bound"])
    assert abs(fast[-1]["train_bound"] - eager[-1]["train_bound"]) < 0.05 * abs(
        eager[-1]["train_bound"]
    )


def test_fast_loop_resumes_at_an_epoch_end_in_place_and_bit_for_bit(tmp_path):
    """The fast loop's state at an epoch end, through checkpoint.safetensors, continues the run
    exactly (on CPU) and is copied into the tensors that captured CUDA graphs point at."""
    from dataclasses import replace

    from vaekit.checkpoint import load_training_state, save_training_state

    x = data()
    cfg = TrainConfig(epochs=4, batch_size=50, seed=7, binarize="dynamic", steps_per_launch=4)
    whole = FastRun(small_model(), x, cfg, "graph")
    records = list(whole.epochs(False))
    half = FastRun(small_model(), x, replace(cfg, epochs=2), "graph")
    list(half.epochs(False))
    save_training_state(tmp_path, {"loop": half.state()})
    state = load_training_state(tmp_path)["loop"]

    torch.manual_seed(5)
    rest = FastRun(VAE(data_shape=(12,), latent_dim=3, hidden=(16,)), x, cfg, "graph")
    opt = rest.optimizer
    tensors = [*rest.params, opt.flat, opt.exp_avg, opt.exp_avg_sq, opt.step]
    addresses = [t.data_ptr() for t in tensors]
    rest.load_state(state)
    assert [t.data_ptr() for t in tensors] == addresses
    rest_records = list(rest.epochs(False))
    assert [r["epoch"] for r in rest_records] == [3, 4]
    drop = {"seconds"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in rest_records] == [
        {k: v for k, v in r.items() if k not in drop} for r in records[2:]
    ]
    for a, b in zip(whole.model.parameters(), rest.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_tf32_precision_trains_and_leaves_the_global_setting_as_it_was():
    before = torch.backends.cuda.matmul.allow_tf32
    h = fit(small_model(), data(), epochs=2, batch_size=64, precision="tf32")
    assert math.isfinite(h[-1]["train_bound"])
    assert torch.backends.cuda.matmul.allow_tf32 == before
    a = small_model()
    fit(a, data(), epochs=1, batch_size=64, precision="tf32")
    b = small_model()
    fit(b, data(), epochs=1, batch_size=64)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)  # on CPU, tf32 changes nothing


def test_conditional_models_take_the_fast_loop_with_their_conditions():
    """The fast loop (step by step on CPU) gathers each batch's conditions with its examples:
    it matches the eager loop, and the conditions reach the networks."""
    x = torch.rand(2000, 12, generator=torch.Generator().manual_seed(2))
    labels = torch.arange(2000) % 3
    x[labels == 1, :6] = 0.0  # the label tells the model about half the pixels
    cfg = TrainConfig(epochs=3, batch_size=64, binarize="dynamic", seed=3, steps_per_launch=5)
    c = torch.nn.functional.one_hot(labels, 3).float()
    assert select_path(small_model(condition_dim=3), cfg, 2000)[1] == "fast path off: CUDA " \
        "graphs need a CUDA device, the model is on cpu; ran the eager loop"  # fmt: skip
    fast_model = small_model(condition_dim=3)
    fast = list(FastRun(fast_model, x, cfg, "graph", c).epochs(False))
    eager = fit(small_model(condition_dim=3), x, conditions=labels, config=cfg)
    assert abs(fast[-1]["train_bound"] - eager[-1]["train_bound"]) < 0.1
    again = list(FastRun(small_model(condition_dim=3), x, cfg, "graph", c).epochs(False))
    assert again[-1]["train_bound"] == fast[-1]["train_bound"]
    # trained with its labels, the model scores the examples better under the right label
    wrong = torch.nn.functional.one_hot((labels + 1) % 3, 3).float()
    right_elbo = fast_model.elbo(x, condition=c, samples=4).mean()
    assert right_elbo > fast_model.elbo(x, condition=wrong, samples=4).mean() + 0.05
    # and the loop that ignores conditions (the old one) cannot tell them apart
    blind = list(FastRun(small_model(), x, cfg, "graph").epochs(False))
    assert blind[-1]["train_bound"] < fast[-1]["train_bound"]


@pytest.mark.parametrize(
    "kw",
    [{}, {"condition_dim": 3}, {"condition_dim": 3, "prior": "mog"}, {"prior": "vamp"}],
    ids=["plain", "conditional", "conditional-mog", "vamp"],
)
def test_a_fast_step_reads_nothing_back_to_the_host(kw, monkeypatch):
    """A CUDA graph cannot capture a step that reads a value back (bool, item, float): the fast
    step must not, or a GPU run falls back to the eager loop. Checked on CPU by making every
    such read raise while steps run."""
    x = torch.rand(200, 12, generator=torch.Generator().manual_seed(2))
    c = (
        torch.nn.functional.one_hot(torch.arange(200) % 3, 3).float()
        if kw.get("condition_dim")
        else None
    )
    cfg = TrainConfig(epochs=1, batch_size=50, binarize="dynamic", seed=3, steps_per_launch=2)
    run = FastRun(small_model(**kw), x, cfg, "graph", c)

    def read_back(*args, **kwargs):
        raise AssertionError("a host read inside a fast step")

    for name in ("__bool__", "item", "tolist", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, read_back)
    run._step(0)
    run._step(1)


def test_a_conditional_subclass_gets_its_conditions_on_every_path():
    """A subclass that overrides encode is trained through its distributions; its conditions
    must reach them (bf16 and the fast loop go through model_terms)."""

    class Wrapped(VAE):
        def encode(self, x, condition=None):
            return super().encode(x, condition)

    labels = torch.arange(300) % 2
    torch.manual_seed(0)
    model = Wrapped(data_shape=(12,), latent_dim=3, hidden=(16,), condition_dim=2)
    history = fit(model, data(), conditions=labels, epochs=1, batch_size=64, precision="bf16")
    assert math.isfinite(history[-1]["train_bound"])
    c = torch.nn.functional.one_hot(labels, 2).float()
    cfg = TrainConfig(epochs=1, batch_size=50, seed=1)
    assert math.isfinite(
        list(FastRun(model, data(), cfg, "graph", c).epochs(False))[-1]["train_bound"]
    )


def test_the_fast_loop_warms_beta_up_as_the_eager_loop_does(monkeypatch):
    """beta * min(1, step / warmup_steps) at steps 1, 2, ... on both loops (the fast loop's
    warm-up and capture calls, whose effects it undoes, come first)."""
    import vaekit.train as train

    betas = []
    bound = train.OBJECTIVES["elbo"]

    def spy(terms, beta=1.0):
        betas.append(float(beta))
        return bound(terms, beta)

    monkeypatch.setitem(train.OBJECTIVES, "elbo", spy)
    cfg = TrainConfig(epochs=4, batch_size=16, warmup_steps=10, beta=0.5, steps_per_launch=2)
    list(FastRun(small_model(), data(64), cfg, "graph").epochs(False))
    assert betas[-16:] == pytest.approx([0.5 * min(1.0, s / 10) for s in range(1, 17)])
