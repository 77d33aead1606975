"""The training loop: it raises the validation ELBO, repeats exactly under a seed, skips and counts
non-finite steps, and its options (KL warm-up, clipping, Adagrad, IWAE) do what they say."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

import vaekit.train as train
import vaekit.train.fast as fast
import vaekit.train.step as step
from vaekit import VAE, ConfigError, DataError, Terms, TrainConfig, TrainingError, fit, load
from vaekit.checkpoint import read_training_info
from vaekit.objectives import elbo, iwae

D, M = 8, 2


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def synthetic(n: int, seed: int = 0) -> Tensor:
    """n points near a 2-D linear subspace of R^8: x = z A + 0.1 noise, (n, D)."""
    g = gen(100)
    A = torch.randn(M, D, generator=g)
    g = gen(seed)
    return torch.randn(n, M, generator=g) @ A + 0.1 * torch.randn(n, D, generator=g)


def binary(n: int, seed: int = 0) -> Tensor:
    """Correlated probabilities in [0, 1], mostly small: sigmoid of a 2-D linear model, (n, D)."""
    return torch.sigmoid(3 * synthetic(n, seed) - 2)


def small_model(likelihood: str = "gaussian", seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(data_shape=(D,), latent_dim=M, hidden=(16,), likelihood=likelihood)


class OptimizerSpy:
    """Wraps train.make_optimizer: keeps the optimizer built and the global gradient norm seen by
    every optimizer.step()."""

    def __init__(self) -> None:
        self.optimizers: list[torch.optim.Optimizer] = []
        self.grad_norms: list[float] = []
        self._make = train.make_optimizer

    def __call__(self, model: VAE, config: TrainConfig) -> torch.optim.Optimizer:
        optimizer = self._make(model, config)
        self.optimizers.append(optimizer)

        def record(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            grads = [p.grad for group in opt.param_groups for p in group["params"]]
            norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(g) for g in grads if g is not None])
            )
            self.grad_norms.append(float(norm))

        optimizer.register_step_pre_hook(record)
        return optimizer


@pytest.fixture
def optimizer_spy(monkeypatch: pytest.MonkeyPatch) -> OptimizerSpy:
    spy = OptimizerSpy()
    monkeypatch.setattr(step, "make_optimizer", spy)
    return spy


def objective_spy(monkeypatch: pytest.MonkeyPatch, name: str) -> list[tuple[Terms, float | Tensor]]:
    """Replace OBJECTIVES[name] with a recording wrapper; returns the (terms, beta) calls."""
    calls: list[tuple[Terms, float | Tensor]] = []
    bound: Callable = train.OBJECTIVES[name]

    def spy(terms: Terms, beta: float | Tensor = 1.0) -> Tensor:
        calls.append((terms, beta))
        return bound(terms, beta)

    monkeypatch.setitem(train.OBJECTIVES, name, spy)
    return calls


# -- it learns -----------------------------------------------------------------------------------


def test_training_raises_the_validation_elbo() -> None:
    x, x_valid = synthetic(256, seed=1), synthetic(128, seed=2)
    model = small_model()
    before = float(model.elbo(x_valid, seed=0).mean())
    history = fit(model, x, valid=x_valid, epochs=6, batch_size=32, lr=3e-3)
    after = float(model.elbo(x_valid, seed=0).mean())
    assert history[-1]["valid_elbo"] == pytest.approx(after)
    assert after > before + 2.0, (before, after)
    assert history[-1]["valid_elbo"] > history[0]["valid_elbo"]
    assert [r["epoch"] for r in history] == list(range(1, 7))
    assert history[-1]["step"] == 6 * 8
    assert history[-1]["skipped_steps"] == 0


@pytest.mark.parametrize(
    ("settings", "likelihood", "data"),
    [
        ({"optimizer": "adagrad", "lr": 0.05}, "gaussian", synthetic),
        ({"objective": "iwae", "samples": 5}, "gaussian", synthetic),
        ({"binarize": "dynamic"}, "bernoulli", binary),
        ({"warmup_steps": 20, "grad_clip": 5.0}, "gaussian", synthetic),
    ],
)
def test_every_option_still_learns(
    settings: dict, likelihood: str, data: Callable[..., Tensor]
) -> None:
    x, x_valid = data(256, seed=1), data(128, seed=2)
    model = small_model(likelihood)
    before = float(
        model.elbo(
            train.binarize(x_valid, 1) if likelihood == "bernoulli" else x_valid, seed=0
        ).mean()
    )
    history = fit(model, x, valid=x_valid, epochs=6, batch_size=32, **{"lr": 3e-3, **settings})
    assert history[-1]["valid_elbo"] > before + 0.5, (before, history[-1]["valid_elbo"])


# -- repeatable -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("likelihood", "data", "settings"),
    [
        ("gaussian", synthetic, {"objective": "iwae", "samples": 3}),
        ("bernoulli", binary, {"binarize": "dynamic"}),
    ],
)
def test_same_seed_gives_identical_weights(
    likelihood: str, data: Callable[..., Tensor], settings: dict
) -> None:
    x = data(100, seed=1)

    def run(seed: int) -> tuple[dict[str, Tensor], list[dict]]:
        model = small_model(likelihood, seed=0)  # same initial weights every time
        history = fit(model, x, epochs=2, batch_size=16, seed=seed, **settings)
        return model.state_dict(), history

    (w1, h1), (w2, h2), (w3, _) = run(7), run(7), run(8)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    drop = {"seconds"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in h1] == [
        {k: v for k, v in r.items() if k not in drop} for r in h2
    ]
    assert not all(torch.equal(w1[k], w3[k]) for k in w1)  # the seed matters


# -- non-finite steps ------------------------------------------------------------------------------


def test_non_finite_steps_are_skipped_and_counted() -> None:
    # Three examples so large that log p(x|z) overflows: with batch_size=1 exactly their steps fail.
    x = synthetic(20, seed=1)
    x[[3, 9, 14]] = 1e20
    model = small_model("gaussian_fixed")
    history = fit(model, x, epochs=2, batch_size=1, lr=1e-3, max_bad_steps=4)
    assert [r["skipped_steps"] for r in history] == [3, 6]
    assert [r["step"] for r in history] == [17, 34]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(torch.isfinite(torch.tensor(r["train_bound"])) for r in history)


def test_a_nan_parameter_stops_training_after_max_bad_steps(optimizer_spy: OptimizerSpy) -> None:
    model = small_model()
    with torch.no_grad():
        model.decoder[0].weight[0, 0] = float("nan")
    with pytest.raises(TrainingError, match=r"^5 steps in a row .*non-finite.*lr"):
        fit(model, synthetic(64), epochs=3, batch_size=8, max_bad_steps=5)
    assert optimizer_spy.grad_norms == []  # no update was ever applied


def test_data_that_overflows_everywhere_raises_training_error() -> None:
    x = torch.full((16, D), 1e20)
    with pytest.raises(TrainingError, match="steps in a row"):
        fit(small_model("gaussian_fixed"), x, epochs=5, batch_size=4, max_bad_steps=3)


# -- options ---------------------------------------------------------------------------------------


def test_kl_warmup_raises_beta_linearly(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = objective_spy(monkeypatch, "elbo")
    history = fit(small_model(), synthetic(64), epochs=4, batch_size=16, warmup_steps=10, beta=0.5)
    betas = [float(beta) for _, beta in calls]
    assert betas == pytest.approx([0.5 * min(1.0, s / 10) for s in range(1, 17)])
    assert [r["beta"] for r in history] == pytest.approx([0.2, 0.4, 0.5, 0.5])


def test_no_warmup_means_constant_beta(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = objective_spy(monkeypatch, "elbo")
    fit(small_model(), synthetic(32), epochs=1, batch_size=16, beta=0.7)
    assert [float(b) for _, b in calls] == pytest.approx([0.7, 0.7])


def test_iwae_objective_gets_k_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = objective_spy(monkeypatch, "iwae")
    elbo_calls = objective_spy(monkeypatch, "elbo")
    history = fit(
        small_model(), synthetic(48), epochs=1, batch_size=16, objective="iwae", samples=6
    )
    assert len(calls) == 3 and not elbo_calls
    assert all(terms.log_w.shape == (6, 16) for terms, _ in calls)
    # The reported training bound is the IWAE bound of those batches.
    assert history[0]["train_bound"] == pytest.approx(
        float(torch.cat([iwae(t) for t, _ in calls]).mean().detach()), rel=1e-5
    )


def test_gradient_clipping_bounds_the_update_norm(optimizer_spy: OptimizerSpy) -> None:
    x = synthetic(64)
    fit(small_model(), x, epochs=2, batch_size=16)
    unclipped = max(optimizer_spy.grad_norms)
    assert unclipped > 1.0  # so a clip at 0.5 has something to do
    optimizer_spy.grad_norms.clear()
    fit(small_model(), x, epochs=2, batch_size=16, grad_clip=0.5)
    assert len(optimizer_spy.grad_norms) == 8
    assert max(optimizer_spy.grad_norms) <= 0.5 * (1 + 1e-5)
    assert max(optimizer_spy.grad_norms) > 0.49  # clipped to the bound, not zeroed


def test_adagrad_option_builds_adagrad(optimizer_spy: OptimizerSpy) -> None:
    fit(small_model(), synthetic(32), epochs=1, batch_size=16, optimizer="adagrad", lr=0.1)
    (optimizer,) = optimizer_spy.optimizers
    assert isinstance(optimizer, torch.optim.Adagrad)
    assert optimizer.defaults["lr"] == 0.1
    assert any(float(s["sum"].abs().sum()) > 0 for s in optimizer.state.values())
    fit(small_model(), synthetic(32), epochs=1, batch_size=16)
    assert isinstance(optimizer_spy.optimizers[-1], torch.optim.Adam)


# -- inputs and outputs ----------------------------------------------------------------------------


def test_fit_writes_metrics_and_a_loadable_checkpoint(tmp_path: Any) -> None:
    model = small_model()
    history = fit(
        model,
        synthetic(64),
        epochs=3,
        batch_size=16,
        out=tmp_path / "run",
        metadata={"data": {"name": "synthetic"}},
    )
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == json.loads(json.dumps(history))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["epochs"] == 3 and config["data"] == {"name": "synthetic"}
    loaded = load(tmp_path / "run")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


def test_fit_accepts_numpy_and_datasets() -> None:
    x = synthetic(32)
    dataset = [(row, 0) for row in x]  # map-style, (example, label) items
    for data in (x.numpy(), dataset):
        model = small_model()
        fit(model, data, epochs=1, batch_size=16)
        reference = small_model()
        fit(reference, x, epochs=1, batch_size=16)
        assert all(
            torch.equal(a, b)
            for a, b in zip(model.parameters(), reference.parameters(), strict=True)
        )


@pytest.mark.parametrize(
    ("data", "likelihood", "message"),
    [
        (torch.full((4, D), float("nan")), "gaussian", "NaN or infinite.*example 0"),
        (torch.rand(4, D + 1), "gaussian", r"shape \(9,\).*\(8,\)"),
        (torch.empty(0, D), "gaussian", "empty"),
        (torch.rand(4, D) * 2, "bernoulli", r"\[0, 1\]"),
        (object(), "gaussian", "object"),
    ],
)
def test_bad_data_is_a_data_error(data: Any, likelihood: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        fit(small_model(likelihood), data, epochs=1)


def test_bad_validation_data_is_a_data_error() -> None:
    with pytest.raises(DataError, match="validation data"):
        fit(small_model(), synthetic(8), valid=torch.rand(3, D + 1), epochs=1)


@pytest.mark.parametrize("p", [0.0, 1 / 256, 0.3, 0.5, 255 / 256, 1.0])
def test_16bit_bernoulli_draws_have_the_asked_probability(p: float) -> None:
    g = torch.Generator().manual_seed(0)
    n = 400_003  # not a multiple of 4: the last word is partly used
    x = train.bernoulli_16bit(torch.full((n,), p), g)
    assert x.dtype == torch.float32 and x.shape == (n,)
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    # P(1) = ceil(65536 p) / 65536, exactly p here; 5 standard deviations of the mean
    tol = 5 * (p * (1 - p) / n) ** 0.5
    assert abs(float(x.mean()) - p) <= tol
    # each of the four 16-bit lanes of a 64-bit word is uniform (no lane misses its sign bit)
    lanes = x[: n - n % 4].view(-1, 4).mean(0)
    assert torch.all((lanes - p).abs() <= 2 * tol + 1e-12)


def test_16bit_bernoulli_matches_per_pixel_probabilities() -> None:
    g = torch.Generator().manual_seed(1)
    p = torch.linspace(0, 1, 257)[:-1].repeat(4000, 1)  # k/256, every k, 4000 draws each
    freq = train.bernoulli_16bit(p, g).mean(0)
    sd = (p[0] * (1 - p[0]) / 4000).sqrt()
    assert torch.all((freq - p[0]).abs() <= 5 * sd + 1e-12)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_the_gradient_check_sees_any_non_finite_element(bad: float) -> None:
    params = [torch.nn.Parameter(torch.zeros(3, 4)), torch.nn.Parameter(torch.zeros(5))]
    params[0].grad, params[1].grad = torch.ones(3, 4), torch.ones(5)
    assert float(step._grad_sum(params)) == 17.0
    params[1].grad[2] = bad
    assert not torch.isfinite(step._grad_sum(params))
    params[0].grad[0, 0] = -bad  # +inf and -inf in different tensors still show
    assert not torch.isfinite(step._grad_sum(params))


def test_dynamic_binarization_needs_bernoulli() -> None:
    with pytest.raises(ConfigError, match="bernoulli"):
        fit(small_model("gaussian"), torch.rand(8, D), epochs=1, binarize="dynamic")
    with pytest.raises(ConfigError, match="bernoulli"):  # before validation data outside [0, 1]
        fit(small_model("gaussian"), torch.rand(8, D), valid=torch.randn(4, D) * 3, epochs=1,
            binarize="dynamic")  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"grad_clip": -1.0}, "grad_clip"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"optimizer": "sgd"}, "optimizer.*adam"),
        ({"objective": "vr"}, "objective.*elbo"),
        ({"binarize": "static"}, "binarize"),
        ({"max_bad_steps": 0}, "max_bad_steps"),
    ],
)
def test_bad_train_config_names_the_setting(fields: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        TrainConfig(**fields)


def test_elbo_function_is_what_training_maximises(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = objective_spy(monkeypatch, "elbo")
    history = fit(small_model(), synthetic(32), epochs=1, batch_size=32, samples=4)
    ((terms, beta),) = calls
    assert terms.log_w.shape == (4, 32)
    assert history[0]["train_bound"] == pytest.approx(
        float(elbo(terms, beta).mean().detach()), rel=1e-5
    )


# -- checkpoints and resuming ----------------------------------------------------------------------

RESUME = {"epochs": 3, "batch_size": 16, "binarize": "dynamic", "objective": "iwae", "samples": 2}


def without_seconds(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def stop_after(calls: int) -> Callable[[], bool]:
    """A ``stop`` callback that says stop on its (calls + 1)-th poll, i.e. after ``calls`` steps."""
    polls = [0]

    def stop() -> bool:
        polls[0] += 1
        return polls[0] > calls

    return stop


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Tensor], list[dict]]:
    """3 epochs of 3 steps (the last ragged) never stopped: weights and history."""
    model = small_model("bernoulli")
    out = tmp_path_factory.mktemp("reference") / "run"
    history = fit(model, binary(40, 1), valid=binary(10, 2), out=out, **RESUME)
    return model.state_dict(), history


def assert_same_run(model: VAE, history: list[dict], out: Any, reference: tuple) -> None:
    weights, ref_history = reference
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert without_seconds(history) == without_seconds(ref_history)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert without_seconds(lines) == without_seconds(ref_history)  # no epoch lost or repeated
    saved = load(out)
    assert all(torch.equal(weights[k], v) for k, v in saved.state_dict().items())


@pytest.mark.parametrize("steps", range(10))
def test_stopping_after_any_step_and_resuming_is_bit_for_bit(
    tmp_path: Any, reference: tuple, steps: int
) -> None:
    out = tmp_path / "run"
    x, x_valid = binary(40, 1), binary(10, 2)
    if steps < 9:
        with pytest.raises(train.TrainingInterrupted) as info:
            fit(small_model("bernoulli"), x, valid=x_valid, out=out, stop=stop_after(steps),
                **RESUME)  # fmt: skip
        assert info.value.step == steps and info.value.epoch == steps // 3 + 1
    else:  # the stop callback is never polled after the last step
        fit(small_model("bernoulli"), x, valid=x_valid, out=out, stop=stop_after(steps), **RESUME)
    model = small_model("bernoulli", seed=9)  # other initial weights: they must come from disk
    history = fit(model, x, valid=x_valid, out=out, resume=True, **RESUME)
    assert_same_run(model, history, out, reference)


def test_every_periodic_checkpoint_resumes_bit_for_bit(tmp_path: Any, reference: tuple) -> None:
    """With checkpoint_every=1 the file on disk before each step is a state a crash could leave;
    each copy, resumed, ends where the uninterrupted run ends."""
    import shutil

    out, copies = tmp_path / "run", []

    def copy_checkpoint() -> bool:
        copies.append(tmp_path / f"copy{len(copies)}")
        shutil.copytree(out, copies[-1])
        return False

    x, x_valid = binary(40, 1), binary(10, 2)
    fit(small_model("bernoulli"), x, valid=x_valid, out=out, stop=copy_checkpoint,
        checkpoint_every=1, **RESUME)  # fmt: skip
    assert len(copies) == 9
    steps = []
    for copy in copies:
        steps.append((copy / "metrics.jsonl").read_text().count("\n"))
        model = small_model("bernoulli", seed=9)
        history = fit(model, x, valid=x_valid, out=copy, resume=True, **RESUME)
        assert_same_run(model, history, copy, reference)
    assert steps == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # epochs recorded before each step


def test_resuming_a_finished_run_with_more_epochs_extends_it(tmp_path: Any) -> None:
    x = synthetic(40)
    whole = small_model()
    fit(whole, x, epochs=4, batch_size=16, out=tmp_path / "whole")
    part = small_model()
    fit(part, x, epochs=2, batch_size=16, out=tmp_path / "part")
    history = fit(small_model(seed=3), x, epochs=4, batch_size=16, out=tmp_path / "part",
                  resume=True)  # fmt: skip
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    extended = load(tmp_path / "part")
    assert all(torch.equal(v, extended.state_dict()[k]) for k, v in whole.state_dict().items())
    assert json.loads((tmp_path / "part" / "config.json").read_text())["train"]["epochs"] == 4


def test_a_time_limit_ends_the_run_as_finished_and_a_longer_one_resumes_it(tmp_path: Any) -> None:
    """A limit no epoch fits in still runs one epoch; the run is finished (weights written, the
    checkpoint says why); resuming under the same limit runs nothing, under none it goes on to
    the weights of a run never limited, bit for bit (CPU)."""
    x, out = synthetic(40), tmp_path / "run"
    whole = small_model()
    plain = fit(whole, x, epochs=3, batch_size=16)
    assert not any("stopped" in r for r in plain)
    history = fit(small_model(), x, epochs=3, batch_size=16, time_limit=1e-9, out=out)
    assert [r["epoch"] for r in history] == [1] and history[-1]["stopped"] == "time_limit"
    info = read_training_info(out)
    assert info["finished"] and info["time_limit_reached"] and info["epochs_done"] == 1
    assert load(out).state_dict().keys() == whole.state_dict().keys()
    again = fit(small_model(seed=3), x, epochs=3, batch_size=16, time_limit=1e-9, out=out,
                resume=True)  # fmt: skip
    assert [r["epoch"] for r in again] == [1]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    model = small_model(seed=3)
    rest = fit(model, x, epochs=3, batch_size=16, time_limit=0, out=out, resume=True)
    assert [r["epoch"] for r in rest] == [1, 2, 3] and "stopped" not in rest[-1]
    assert not read_training_info(out)["time_limit_reached"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in whole.state_dict().items())
    assert all(torch.equal(v, load(out).state_dict()[k]) for k, v in whole.state_dict().items())


def test_a_run_stopped_mid_epoch_finishes_that_epoch_under_a_time_limit(
    tmp_path: Any, reference: tuple
) -> None:
    """The limit ends runs between epochs: a run stopped in its second epoch and resumed under a
    limit no epoch fits in finishes the epoch it was in (as a run never stopped does, bit for
    bit) and ends there, rather than keeping the weights of part of an epoch."""
    out = tmp_path / "run"
    x, x_valid = binary(40, 1), binary(10, 2)
    with pytest.raises(train.TrainingInterrupted):
        fit(small_model("bernoulli"), x, valid=x_valid, out=out, stop=stop_after(4), **RESUME)
    assert read_training_info(out)["mid_epoch"]
    model = small_model("bernoulli", seed=9)
    history = fit(model, x, valid=x_valid, out=out, resume=True, time_limit=1e-9,
                  **RESUME)  # fmt: skip
    assert [r["epoch"] for r in history] == [1, 2] and history[-1]["stopped"] == "time_limit"
    info = read_training_info(out)
    assert info["finished"] and info["epochs_done"] == 2 and not info["mid_epoch"]
    last = history[1]["seconds"] - history[0]["seconds"]
    # the history's seconds are rounded to 0.1 ms, the run record's are not
    assert info["seconds"] >= history[1]["seconds"] - 5e-5 and info["last_epoch_seconds"] == last
    expected = without_seconds(reference[1][:2])
    expected[-1]["stopped"] = "time_limit"
    assert without_seconds(history) == expected  # validation ELBO after epoch 2 included
    saved = load(out).state_dict()
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def test_a_time_limit_the_epochs_fit_in_changes_nothing() -> None:
    x = synthetic(40)
    a, b = small_model(), small_model()
    fit(a, x, epochs=3, batch_size=16)
    history = fit(b, x, epochs=3, batch_size=16, time_limit=1e6)
    assert [r["epoch"] for r in history] == [1, 2, 3] and "stopped" not in history[-1]
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_a_time_limit_ends_a_fast_loop_run_with_weights_in_their_own_storage(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast loop's optimizer shares one buffer among the parameters; a run the limit ends,
    after an epoch or before any, gives them their own storage back as any finished run does."""
    monkeypatch.setattr(fast, "select_path", lambda *args: ("graph", None))
    x, out = synthetic(48), tmp_path / "run"
    history = fit(small_model(), x, epochs=3, batch_size=16, time_limit=1e-9, out=out)
    assert [(r["epoch"], r["path"]) for r in history] == [(1, "graph")]
    model = small_model(seed=3)
    fit(model, x, epochs=3, batch_size=16, time_limit=1e-9, out=out, resume=True)
    assert all(torch.equal(v, load(out).state_dict()[k]) for k, v in model.state_dict().items())
    storages = [p.untyped_storage().data_ptr() for p in model.parameters()]
    assert len(set(storages)) == len(storages)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_a_bad_time_limit_is_one_line(bad: float) -> None:
    with pytest.raises(
        ConfigError, match=r"time_limit must be 0 \(no limit\) or a number of seconds"
    ):
        TrainConfig(time_limit=bad)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"lr": 0.01}, ConfigError, "lr is 0.01 but .* was trained with 0.001"),
        ({"epochs": 1}, ConfigError, "epochs 1 is fewer than the 2 epochs"),
        ({"data": synthetic(40, seed=5)}, DataError, "train data is not the data"),
        ({"model": small_model("gaussian_fixed")}, ConfigError, "likelihood"),
    ],
)
def test_resume_refuses_another_run(tmp_path: Any, change: dict, error: type, message: str) -> None:
    fit(small_model(), synthetic(40), epochs=2, batch_size=16, out=tmp_path / "run")
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    kwargs = {"epochs": 2, "batch_size": 16, **change}
    model, data = kwargs.pop("model", small_model()), kwargs.pop("data", synthetic(40))
    with pytest.raises(error, match=message):
        fit(model, data, out=tmp_path / "run", resume=True, **kwargs)
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before


def test_too_many_bad_steps_keep_the_last_good_checkpoint(tmp_path: Any) -> None:
    x = synthetic(30, seed=1)
    x[3:] = 1e20  # 3 good examples in 30: runs of bad steps, long ones among them
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"steps in a row.*keeps the last good state \(step"):
        fit(small_model("gaussian_fixed"), x, epochs=3, batch_size=1, max_bad_steps=20,
            checkpoint_every=1, out=out)  # fmt: skip
    state = train.load_training_state(out)
    assert state["loop"]["step"] > 0 and state["run"]["finished"] is False
    assert all(torch.isfinite(v).all() for v in state["loop"]["model"].values())
    assert not (out / "model.safetensors").exists()


def test_resume_refuses_other_conditions(tmp_path: Any) -> None:
    torch.manual_seed(0)
    model = VAE(data_shape=(D,), latent_dim=M, hidden=(16,), likelihood="gaussian", condition_dim=3)
    labels = torch.arange(40) % 3
    fit(model, synthetic(40), conditions=labels, epochs=1, batch_size=16, out=tmp_path / "run")
    with pytest.raises(DataError, match="train conditions data is not the data"):
        fit(model, synthetic(40), conditions=(labels + 1) % 3, epochs=2, batch_size=16,
            out=tmp_path / "run", resume=True)  # fmt: skip
    history = fit(model, synthetic(40), conditions=labels, epochs=2, batch_size=16,
                  out=tmp_path / "run", resume=True)  # fmt: skip
    assert [r["epoch"] for r in history] == [1, 2]


def test_a_mid_epoch_eager_checkpoint_resumes_on_the_eager_loop_under_fast_auto(
    tmp_path: Any, reference: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the fast path would apply on resume (a GPU, say), a run stopped mid-epoch on the
    eager loop finishes there, bit for bit, instead of refusing to resume."""
    out = tmp_path / "run"
    x, x_valid = binary(40, 1), binary(10, 2)
    with pytest.raises(train.TrainingInterrupted):
        fit(small_model("bernoulli"), x, valid=x_valid, out=out, stop=stop_after(4), **RESUME)
    monkeypatch.setattr(fast, "select_path", lambda *args: ("graph", None))
    model = small_model("bernoulli", seed=9)
    history = fit(model, x, valid=x_valid, out=out, resume=True, **RESUME)
    assert history[-1]["path"] == "eager" and "mid-epoch" in history[-1]["notice"]
    weights, ref_history = reference
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())

    def plain(records: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "notice"} for r in without_seconds(records)]

    assert plain(history) == plain(ref_history)


def test_model_terms_use_a_subclass_s_own_terms() -> None:
    class Scaled(VAE):
        def terms(self, x, eps, autocast=None, condition=None):
            t = super().terms(x, eps, autocast, condition)
            return Terms(t.log_px_z * 0, t.log_pz, t.log_qz_x, t.kl)

    torch.manual_seed(0)
    model = Scaled(data_shape=(D,), latent_dim=M, hidden=(16,), likelihood="gaussian")
    eps = torch.randn(1, 5, M)
    terms = train.model_terms(model, synthetic(5), eps)
    assert torch.all(terms.log_px_z == 0)


def test_a_conditional_subclass_s_forward_is_what_the_eager_loop_calls() -> None:
    calls: list[Any] = []

    class Logged(VAE):
        def forward(self, x, k=1, generator=None, condition=None):
            calls.append(condition)
            return super().forward(x, k, generator, condition)

    torch.manual_seed(0)
    model = Logged(data_shape=(D,), latent_dim=M, hidden=(16,), condition_dim=2,
                   likelihood="gaussian")  # fmt: skip
    fit(model, synthetic(20), conditions=torch.arange(20) % 2, epochs=1, batch_size=10)
    assert len(calls) == 2 and all(c is not None and c.shape == (10, 2) for c in calls)

    class Decoded(VAE):  # the fast path would check its conditions at every step: eager
        def decode(self, z, condition=None):
            return super().decode(z, condition)

    decoded = Decoded(data_shape=(D,), latent_dim=M, hidden=(16,), condition_dim=2)
    path, notice = train.select_path(decoded, TrainConfig(), 20)
    assert path == "off" and "Decoded is conditional and overrides" in notice


def test_a_new_run_keeps_files_in_a_folder_that_held_no_run(tmp_path: Any) -> None:
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "my_recording.wav").write_bytes(b"RIFF....")
    (tmp_path / "eval.json").write_text("{}")
    fit(small_model(), synthetic(20), epochs=1, out=tmp_path)
    assert (tmp_path / "samples" / "my_recording.wav").read_bytes() == b"RIFF...."
    assert (tmp_path / "eval.json").read_text() == "{}"
    fit(small_model(), synthetic(20), epochs=1, out=tmp_path)  # now a run was there
    assert not (tmp_path / "eval.json").exists()
    assert not (tmp_path / "samples" / "my_recording.wav").exists()


def test_a_new_run_stopped_in_a_run_s_folder_replaces_it_and_a_failed_one_does_not(
    tmp_path: Any,
) -> None:
    """The run already in ``out`` is kept aside while a new one trains there: a new run that
    stops (Ctrl-C) is the one to resume, a new run that fails leaves the old one as it was."""
    out, x = tmp_path / "run", synthetic(40)
    fit(small_model(), x, epochs=2, batch_size=16, out=out)
    (out / "eval.json").write_text("{}")
    old = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    with pytest.raises(TrainingError, match="is back"):
        fit(small_model("gaussian_fixed"), torch.full((30, D), 1e20), epochs=3, batch_size=1,
            max_bad_steps=3, out=out)  # fmt: skip
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == old
    with pytest.raises(train.TrainingInterrupted) as info:  # stopped in its first epoch
        fit(small_model(), x, epochs=5, batch_size=16, out=out, stop=stop_after(1))
    assert info.value.restored
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == old
    with pytest.raises(train.TrainingInterrupted) as info:  # stopped after an epoch
        fit(small_model(), x, epochs=5, batch_size=16, out=out, stop=stop_after(3))
    assert not info.value.restored
    assert not (out / ".vaekit-previous").exists() and not (out / "eval.json").exists()
    assert not (out / "model.safetensors").exists()  # the new run has not finished
    history = fit(small_model(seed=2), x, epochs=5, batch_size=16, out=out, resume=True)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5]


def test_a_run_without_one_good_step_saves_no_model(tmp_path: Any) -> None:
    # Two batches, both overflowing: fewer bad steps in a row than max_bad_steps, none good.
    x = torch.full((16, D), 1e30)
    with pytest.raises(TrainingError, match=r"^no step of the run .*\(2 skipped\).*data's scale"):
        fit(small_model("gaussian"), x, epochs=1, batch_size=8, out=tmp_path / "run")
    assert not (tmp_path / "run" / "model.safetensors").exists()
    with pytest.raises(TrainingError) as info:  # the starting weights are no "last good state"
        fit(small_model("gaussian"), x, epochs=1, batch_size=8, out=tmp_path / "again")
    assert "keeps the last good state" not in str(info.value)
    # the same run on data of a sane scale saves its model
    fit(small_model("gaussian"), synthetic(16), epochs=1, batch_size=8, out=tmp_path / "ok")
    assert (tmp_path / "ok" / "model.safetensors").is_file()


def test_a_new_run_without_one_good_step_puts_back_the_run_it_was_to_replace(
    tmp_path: Any,
) -> None:
    out = tmp_path / "run"
    fit(small_model(), synthetic(16), epochs=1, batch_size=8, out=out)
    old = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    with pytest.raises(TrainingError, match=r"^no step of the run .*is back"):
        fit(small_model("gaussian"), torch.full((16, D), 1e30), epochs=1, batch_size=8, out=out)
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == old
    assert not (out / ".vaekit-previous").exists()


def test_a_run_that_cannot_be_set_aside_stays_whole(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When moving the old run aside fails part way (a full disk, a link to another file
    system), what was moved goes back and nothing is deleted."""
    import os

    from vaekit import CheckpointError
    from vaekit.checkpoint import PREVIOUS_FOLDER

    out, x = tmp_path / "run", synthetic(40)
    fit(small_model(), x, epochs=1, batch_size=16, out=out)
    (out / "eval.json").write_text("{}")
    old = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    real, calls = os.replace, []

    def failing(src: Any, dst: Any) -> None:
        calls.append(src)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(CheckpointError, match=r"cannot set the run in .* aside"):
        fit(small_model(), x, epochs=1, batch_size=16, out=out)
    monkeypatch.undo()
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == old
    assert not (out / PREVIOUS_FOLDER).exists()


def test_a_resumed_run_that_finishes_drops_a_run_a_killed_process_left_aside(
    tmp_path: Any,
) -> None:
    from vaekit.checkpoint import PREVIOUS_FOLDER

    out, x = tmp_path / "run", synthetic(40)
    with pytest.raises(train.TrainingInterrupted):
        fit(small_model(), x, epochs=2, batch_size=16, out=out, stop=stop_after(4))
    (out / PREVIOUS_FOLDER).mkdir()  # as a process killed during an overwrite leaves it
    (out / PREVIOUS_FOLDER / "config.json").write_text("{}")
    fit(small_model(), x, epochs=2, batch_size=16, out=out, resume=True)
    assert not (out / PREVIOUS_FOLDER).exists()


def test_a_float64_model_trains_and_validates_on_its_float64_data() -> None:
    """fit keeps a float64 model's data in float64: the validation ELBO it reports is the
    model's ELBO of the data as given, not of the data rounded to float32."""
    torch.manual_seed(0)
    model = VAE(
        data_shape=(3,), latent_dim=2, hidden=(4,), likelihood="gaussian_fixed", decoder_std=1e-4
    ).double()
    x = 0.1 + torch.arange(30, dtype=torch.float64).reshape(10, 3) * 1e-9  # apart in float64 only
    history = fit(model, x, valid=x, epochs=1, batch_size=5, lr=1e-4)
    assert history[-1]["valid_elbo"] == float(model.elbo(x).mean())
    assert float(model.elbo(x.float()).mean()) != float(model.elbo(x).mean())  # it would show


def test_nested_lists_are_examples() -> None:
    """A list of examples (lists of numbers) trains as the tensor it holds, not as pairs of an
    example and a label."""
    x = binary(20, 3)
    a, b = small_model("bernoulli"), small_model("bernoulli")
    assert without_seconds(fit(a, x.tolist(), epochs=2)) == without_seconds(fit(b, x, epochs=2))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    with warnings.catch_warnings():  # a list of numpy examples: torch warned it was slow
        warnings.simplefilter("error")
        assert torch.equal(train.as_tensor(list(x.numpy())), x)


def test_data_in_a_form_fit_cannot_read_says_what_to_give() -> None:
    """vaekit's own data set (splits, not examples) and a DataLoader (batches) are named with
    what to pass instead; it said "must be ... a dataset, got Dataset"."""
    from torch.utils.data import DataLoader, TensorDataset

    from vaekit.data import load as load_data

    ds = load_data("digits")
    model = VAE(data_shape=ds.data_shape, latent_dim=2, hidden=(4,))
    with pytest.raises(DataError, match=r"training data is a vaekit data set of splits; give one"):
        fit(model, ds, epochs=1)
    loader = DataLoader(TensorDataset(ds.train), batch_size=10)
    with pytest.raises(DataError, match=r"is a DataLoader, which hands out batches; give its data"):
        fit(model, loader, epochs=1)
    with pytest.raises(DataError, match="validation data must be a tensor, a numpy array, a list"):
        fit(model, ds.train, valid=(row for row in ds.valid), epochs=1)
    assert fit(model, loader.dataset, epochs=1)[-1]["epoch"] == 1  # (example,) tuples


def test_valid_conditions_without_valid_are_refused() -> None:
    model = VAE(data_shape=(D,), latent_dim=2, hidden=(4,), condition_dim=2)
    x, labels = binary(8, 1), torch.tensor([0, 1] * 4)
    with pytest.raises(DataError, match="valid_conditions were given without valid"):
        fit(model, x, conditions=labels, valid_conditions=labels, epochs=1)
