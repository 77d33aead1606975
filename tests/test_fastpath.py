"""The fast training path: selection and fallback, the device-side skip of non-finite steps, and
agreement with the eager loop. CPU only; the CUDA-graph capture itself is exercised by
benchmarks/smoke_gpu.py on a GPU machine."""

import math

import pytest
import torch

from vaekit import VAE
from vaekit.train import DeviceMetrics, GuardedStep, TrainConfig, _FastRun, fit, select_path


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


def make_adam_after_one_step():
    m = small_model()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    m(data(8)).log_w.mean().neg().backward()
    opt.step()
    return m, opt


def snapshot(m, opt):
    state = [v.clone() for st in opt.state.values() for v in st.values()]
    return [p.detach().clone() for p in m.parameters()], state


def test_guarded_step_undoes_a_non_finite_step_and_counts_it():
    m, opt = make_adam_after_one_step()
    guard, metrics = GuardedStep(opt), DeviceMetrics(torch.device("cpu"))
    before = snapshot(m, opt)
    for p in m.parameters():
        p.grad = torch.full_like(p, math.nan)
    finite = torch.tensor(False)
    guard(finite)
    metrics.update(finite, torch.tensor(math.nan), 8)
    after = snapshot(m, opt)
    for a, b in zip(before[0] + before[1], after[0] + after[1], strict=True):
        assert torch.equal(a, b)
    counts = metrics.read()
    assert counts["skipped"] == 1 and counts["good"] == 0 and counts["seen"] == 0
    assert counts["bound_sum"] == 0 and counts["worst_run"] == 1

    for p in m.parameters():
        p.grad = torch.ones_like(p)
    finite = torch.tensor(True)
    guard(finite)
    metrics.update(finite, torch.tensor(-3.0), 8)
    after = snapshot(m, opt)
    assert not torch.equal(before[0][0], after[0][0])  # a good step moves the parameters
    counts = metrics.read()
    assert counts["good"] == 1 and counts["seen"] == 8 and counts["bound_sum"] == -3.0


def test_static_shape_loop_drops_the_ragged_batch_and_matches_the_eager_loop():
    """The fast path's loop (run step by step on CPU, without graphs) against fit's eager loop."""
    x = torch.rand(2000, 12, generator=torch.Generator().manual_seed(2))
    cfg = TrainConfig(epochs=4, batch_size=64, binarize="dynamic", seed=3, steps_per_launch=5)
    fast = list(_FastRun(small_model(), x, cfg, "graph").epochs(False))
    eager = fit(small_model(), x, config=cfg)
    assert fast[-1]["dropped_per_epoch"] == 2000 % 64
    assert fast[-1]["step"] == 4 * (2000 // 64)  # 31 steps an epoch: 6 launches of 5, 1 of 1
    assert fast[-1]["examples_seen"] == 4 * 31 * 64
    assert fast[-1]["skipped_steps"] == 0
    assert abs(fast[-1]["train_bound"] - eager[-1]["train_bound"]) < 0.1


def test_fast_loop_is_deterministic_on_cpu():
    cfg = TrainConfig(epochs=2, batch_size=50, seed=7)
    a = list(_FastRun(small_model(), data(), cfg, "graph").epochs(False))
    b = list(_FastRun(small_model(), data(), cfg, "graph").epochs(False))
    assert a[-1]["train_bound"] == b[-1]["train_bound"]


def test_bf16_runs_on_cpu():
    h = fit(small_model(), data(), epochs=2, batch_size=64, precision="bf16")
    assert math.isfinite(h[-1]["train_bound"])


def test_fast_step_skips_a_non_finite_step_on_the_device():
    """A step whose bound is NaN leaves parameters and Adam state as they were and is counted."""
    cfg = TrainConfig(epochs=1, batch_size=50, seed=7, steps_per_launch=2)
    run = _FastRun(small_model(), data(), cfg, "graph")
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
    from vaekit.train import _fp32  # noqa: F401  (the distribution path stays importable)

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
    ],
)
def test_fast_loop_runs_mixture_priors_and_the_logistic_likelihood(kw):
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
    fast = list(_FastRun(small_model(**kw), x, cfg, "graph").epochs(False))
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
    whole = _FastRun(small_model(), x, cfg, "graph")
    records = list(whole.epochs(False))
    half = _FastRun(small_model(), x, replace(cfg, epochs=2), "graph")
    list(half.epochs(False))
    save_training_state(tmp_path, {"loop": half.state()})
    state = load_training_state(tmp_path)["loop"]

    torch.manual_seed(5)
    rest = _FastRun(VAE(data_shape=(12,), latent_dim=3, hidden=(16,)), x, cfg, "graph")
    tensors = [*rest.params, *(v for st in rest.optimizer.state.values() for v in st.values())]
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
