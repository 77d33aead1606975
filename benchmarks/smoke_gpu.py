"""Quick checks on a CUDA machine before the benchmarks: the fused log-likelihood against the
general path, the graph and streaming training paths (Adam and Adagrad, conditional models)
against the eager loop, and a fast-path run stopped (at an epoch's end and mid-epoch) and
resumed against one never stopped."""

import tempfile
import time
from pathlib import Path

import torch
from _common import load_mnist

from vaekit import VAE
from vaekit.estimators import log_likelihood
from vaekit.train import TrainingInterrupted, fit

data = load_mnist()
dev = torch.device("cuda")
print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())
for act in ("relu", "tanh"):
    torch.manual_seed(0)
    m = VAE(data_shape=(784,), latent_dim=20, hidden=(400,), activation=act).to(dev)
    fit(m, data.train[:5000], epochs=1, batch_size=100, binarize="dynamic", fast="off")
    x = data.test[:64].to(dev)
    ref = log_likelihood(m, x, k=500, fused=False)
    for prec in ("ieee", "tf32x3", "tf32"):
        ll = log_likelihood(m, x, k=500, fused=True, matmul_precision=prec)
        print(act, prec, "mean", float(ll.mean()), "ref", float(ref.mean()),
              "max|diff|", float((ll - ref).abs().max()))  # fmt: skip
for kw in ({"fast": "off"}, {"fast": "graph"}, {"fast": "graph", "resident": "no"},
           {"fast": "graph", "precision": "bf16"}, {"fast": "compile"}):  # fmt: skip
    torch.manual_seed(0)
    m = VAE(data_shape=(784,), latent_dim=20, hidden=(400,), activation="relu").to(dev)
    t0 = time.perf_counter()
    h = fit(m, data.train[:10000], epochs=3, batch_size=128, binarize="dynamic", **kw)
    torch.cuda.synchronize()
    print(kw, round(time.perf_counter() - t0, 2), [round(r["train_bound"], 2) for r in h],
          [r["seconds"] for r in h], h[-1]["path"], h[-1].get("notice"))  # fmt: skip

# A conditional VAE (MNIST labels) on each loop: the fast path should say graph / compile and end
# near the eager loop's bound; with the data streamed it falls back to the eager loop with a notice.
for kw in ({"fast": "off"}, {"fast": "graph"}, {"fast": "compile"},
           {"fast": "graph", "resident": "no"}):  # fmt: skip
    torch.manual_seed(0)
    m = VAE(data_shape=(784,), latent_dim=20, hidden=(400,), condition_dim=10).to(dev)
    h = fit(m, data.train[:10000], conditions=data.train_labels[:10000], epochs=3,
            batch_size=128, binarize="dynamic", **kw)  # fmt: skip
    print("conditional", kw, [round(r["train_bound"], 2) for r in h], h[-1]["path"],
          h[-1].get("notice"))  # fmt: skip
    expected = "eager" if kw.get("resident") == "no" or kw["fast"] == "off" else kw["fast"]
    assert h[-1]["path"] == expected, (kw, h[-1]["path"], h[-1].get("notice"))

# Adagrad (the AEVB recipes') on each loop: the fast path should say graph / compile and end near
# the eager loop's bound.
for kw in ({"fast": "off"}, {"fast": "graph"}, {"fast": "compile"}):
    torch.manual_seed(0)
    m = VAE(data_shape=(784,), latent_dim=20, hidden=(500,)).to(dev)
    t0 = time.perf_counter()
    h = fit(m, data.train[:10000], epochs=3, batch_size=100, binarize="dynamic",
            optimizer="adagrad", lr=0.02, weight_decay=2e-5, **kw)  # fmt: skip
    torch.cuda.synchronize()
    print("adagrad", kw, round(time.perf_counter() - t0, 2),
          [round(r["train_bound"], 2) for r in h], [r["seconds"] for r in h], h[-1]["path"],
          h[-1].get("notice"))  # fmt: skip
    assert h[-1]["path"] == ("eager" if kw["fast"] == "off" else kw["fast"]), h[-1]

# Resume on the fast path: the state is saved at epoch ends; a stop mid-epoch resumes from the last.


def stop_after(polls: int):
    """A stop callback that says stop on its (polls + 1)-th call (one call per graph launch)."""
    count = [0]

    def stop() -> bool:
        count[0] += 1
        return count[0] > polls

    return stop


def vae() -> VAE:
    return VAE(data_shape=(784,), latent_dim=20, hidden=(400,), activation="relu").to(dev)


kw = {"epochs": 4, "batch_size": 128, "binarize": "dynamic", "fast": "graph", "seed": 3}
x = data.train[:10000]  # 78 steps an epoch: 10 launches of up to 8
for where in ("epoch end", "mid-epoch"):
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        whole = vae()
        h_whole = fit(whole, x, out=Path(tmp) / "whole", **kw)
        out = Path(tmp) / "stopped"
        torch.manual_seed(0)
        if where == "epoch end":
            fit(vae(), x, out=out, **{**kw, "epochs": 2})
        else:
            try:
                fit(vae(), x, out=out, stop=stop_after(25), **kw)
            except TrainingInterrupted as err:
                print("stopped:", err)
        torch.manual_seed(1)
        resumed = vae()  # other initial weights: they must come from the checkpoint
        h = fit(resumed, x, out=out, resume=True, **kw)
        diff = max(
            float((p - q).abs().max())
            for p, q in zip(whole.parameters(), resumed.parameters(), strict=True)
        )
        print("resume at", where, "max|dw|", diff, h[-1]["path"],
              [round(r["train_bound"], 3) for r in h_whole],
              [round(r["train_bound"], 3) for r in h])  # fmt: skip

# beta-TCVAE (both estimators) and FactorVAE (its discriminator trained in the same step) on each
# loop: the fast path should say graph / compile and end near the eager loop's bound.
TC_RUNS = (
    ({"objective": "btcvae", "beta": 6.0}, {}),
    ({"objective": "btcvae", "beta": 6.0, "tc_estimator": "mss"}, {}),
    ({"objective": "factorvae", "gamma": 10.0}, {"discriminator": (1000,) * 6}),
)
for objective, extra in TC_RUNS:
    for kw in ({"fast": "off"}, {"fast": "graph"}, {"fast": "compile"}):
        torch.manual_seed(0)
        m = VAE(data_shape=(784,), latent_dim=10, hidden=(400,), activation="relu", **extra).to(dev)
        h = fit(m, data.train[:10000], epochs=3, batch_size=128, binarize="dynamic", **objective,
                **kw)  # fmt: skip
        print(objective, kw, [round(r["train_bound"], 2) for r in h], h[-1]["path"],
              h[-1].get("notice"))  # fmt: skip
        assert h[-1]["path"] == ("eager" if kw["fast"] == "off" else kw["fast"]), h[-1]
