"""Importance-weighted evaluation: log p(x) of the MNIST test set at K samples.

    PYTHONPATH=src python benchmarks/bench_eval.py --k 5000 --out eval.json

Times vaekit's log_likelihood (fused kernel where it applies, at each matmul precision, and the
general chunked path) against a per-example loop, on a model briefly trained with vaekit, and
reports how far each estimate is from the float32 one. Slow baselines run on a subset and are
scaled to the full set (marked "extrapolated").
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from _common import environment, load_mnist, sync

from vaekit import VAE
from vaekit.estimators import log_likelihood
from vaekit.estimators.fused import fused_applies
from vaekit.train import fit


@torch.no_grad()
def per_example_loop(model: VAE, x: torch.Tensor, k: int) -> torch.Tensor:
    """The naive estimate: one example at a time, all K samples at once."""
    g = torch.Generator(device=model.device).manual_seed(0)
    out = []
    for i in range(x.shape[0]):
        log_w = model(x[i : i + 1], k=k, generator=g).log_w  # (K, 1)
        out.append(torch.logsumexp(log_w.double(), 0) - math.log(k))
    return torch.cat(out).cpu()


def timed(fn, device):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=5000)
    ap.add_argument("--test-n", type=int, default=10000)
    ap.add_argument("--train-epochs", type=int, default=3)
    ap.add_argument("--loop-n", type=int, default=200, help="examples for the per-example loop")
    ap.add_argument("--chunked-n", type=int, default=500, help="examples for the chunked path")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    device = torch.device(a.device)
    data = load_mnist()
    x_test = data.test[: a.test_n].to(device)
    n = x_test.shape[0]
    torch.manual_seed(0)
    model = VAE(data_shape=(784,), latent_dim=20, hidden=(400,), activation="relu").to(device)
    fit(model, data.train, epochs=a.train_epochs, batch_size=128, binarize="dynamic")
    result: dict = {"env": environment(), "args": vars(a), "fused": fused_applies(model) or "yes"}
    print(json.dumps(result["env"]))
    rows = []

    def row(method: str, ll: torch.Tensor, seconds: float, **extra) -> None:
        rows.append({"method": method, "n": ll.shape[0], "seconds": seconds,
                     "seconds_full": seconds * n / ll.shape[0], "mean_ll": float(ll.mean()),
                     "mean_ll_subset": float(ll[: a.chunked_n].mean()), **extra})  # fmt: skip

    sub = x_test[: a.chunked_n]
    chunked = lambda: log_likelihood(model, sub, k=a.k, fused=False)  # noqa: E731
    row("chunked (general path)", *timed(chunked, device))
    sub_l = x_test[: a.loop_n]
    row("per-example loop", *timed(lambda: per_example_loop(model, sub_l, a.k), device))
    if result["fused"] == "yes":
        lls = {}
        for prec in ("ieee", "tf32x3", "tf32"):
            log_likelihood(model, x_test[:64], k=a.k, matmul_precision=prec)  # compile
            fn = lambda p=prec: log_likelihood(model, x_test, k=a.k, matmul_precision=p)  # noqa: E731
            lls[prec], t = timed(fn, device)
            diff = float((lls[prec] - lls["ieee"]).abs().max())
            row(f"fused {prec}", lls[prec], t, max_abs_diff_vs_ieee=diff)
    result["rows"] = rows
    print("\n| method | examples timed | seconds | seconds for the full set | mean log p(x) |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['method']} | {r['n']} | {r['seconds']:.3f} | {r['seconds_full']:.2f} "
              f"| {r['mean_ll']:.3f} |")  # fmt: skip
    print(json.dumps(rows))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
