"""Training speed and quality: the pytorch/examples VAE loop against vaekit, same data and seed.

    PYTHONPATH=src python benchmarks/bench_train.py --epochs 10 --out results.json

Prints seconds per epoch of each loop, their ratio, peak memory and the final test
log-likelihood (importance-weighted, K samples, the same evaluation for both), then how vaekit's
time per epoch grows with batch size and with width. Results go in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import tempfile
import time

import torch
from _common import (
    environment,
    load_mnist,
    reference_as_vaekit,
    reference_epochs,
    reference_train,
    sync,
)

import vaekit.train
from vaekit import VAE
from vaekit.estimators import log_likelihood
from vaekit.train import fit


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process high-water mark


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def per_epoch(times: list[float]) -> float:
    """Median seconds per epoch, leaving out the first epoch when there are more than two."""
    return statistics.median(times[1:] if len(times) > 2 else times)


def vaekit_model(width: int, device: torch.device) -> VAE:
    torch.manual_seed(0)
    return VAE(data_shape=(784,), latent_dim=20, hidden=(width,), activation="relu").to(device)


def run_vaekit(
    x, device, *, epochs, batch_size=128, width=400, fast="auto", precision="fp32", launch=8
):
    model = vaekit_model(width, device)
    reset_peak(device)
    sync(device)
    t0 = time.perf_counter()
    history = fit(
        model,
        x,
        epochs=epochs,
        batch_size=batch_size,
        lr=1e-3,
        binarize="dynamic",
        seed=0,
        fast=fast,
        precision=precision,
        steps_per_launch=launch,
    )
    sync(device)
    wall = time.perf_counter() - t0
    stamps = [0.0] + [r["seconds"] for r in history]
    times = [b - a for a, b in itertools.pairwise(stamps)]
    return model, {
        "path": history[-1]["path"],
        "notice": history[-1].get("notice"),
        "epoch_seconds": times,
        "s_per_epoch": per_epoch(times),
        "setup_seconds": wall - stamps[-1],
        "wall_seconds": wall,
        "peak_mb": peak_memory_mb(device),
        "train_bound": history[-1]["train_bound"],
    }


def run_interleaved(x, device, *, epochs, fast="auto", precision="fp32"):
    """vaekit and the reference loop taking turns, one epoch each, so that both see the same
    machine: on a shared VM whose speed drifts from minute to minute, separate runs can differ
    by 20% for that reason alone. vaekit's epochs come from ``fit(resume=True)`` extending its
    run folder by one epoch at a time (a resumed CPU run is bit for bit an uninterrupted one);
    the seconds of each epoch are those of the training loop, without the checkpoint writes
    between epochs. Returns (vaekit model, vaekit record, reference model, reference seconds)."""
    model = vaekit_model(400, device)
    ref = reference_epochs(x, device, epochs=epochs)
    ref_model, ref_times, history = None, [], []
    with tempfile.TemporaryDirectory() as run:
        for e in range(1, epochs + 1):
            ref_model, seconds = next(ref)
            ref_times.append(seconds)
            sync(device)
            history = fit(
                model, x, out=run, resume=e > 1, epochs=e, batch_size=128, lr=1e-3,
                binarize="dynamic", seed=0, fast=fast, precision=precision,
            )  # fmt: skip
    stamps = [0.0] + [r["seconds"] for r in history]
    times = [b - a for a, b in itertools.pairwise(stamps)]
    record = {
        "path": history[-1]["path"],
        "notice": history[-1].get("notice"),
        "epoch_seconds": times,
        "s_per_epoch": per_epoch(times),
        "peak_mb": peak_memory_mb(device),
        "train_bound": history[-1]["train_bound"],
        "interleaved": True,
    }
    return model, record, ref_model, ref_times


def test_ll(model: VAE, x_test, k: int, device) -> tuple[float, float]:
    sync(device)
    t0 = time.perf_counter()
    ll = float(log_likelihood(model, x_test.to(device), k=k, seed=0).mean())
    sync(device)
    return ll, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--ref-epochs", type=int, default=None, help="epochs of the reference loop")
    ap.add_argument("--k", type=int, default=5000)
    ap.add_argument("--test-n", type=int, default=10000, help="test images evaluated")
    ap.add_argument("--train-n", type=int, default=50000)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--modes", default="auto", help="vaekit fast modes, comma-separated")
    ap.add_argument("--precision", default="fp32", help="fp32 or bf16, comma-separated")
    ap.add_argument("--steps-per-launch", default="8", help="comma-separated, e.g. 8,32,390")
    ap.add_argument("--batch-sizes", default="", help="e.g. 32,128,512,4096 for the scaling table")
    ap.add_argument("--widths", default="", help="e.g. 200,400,800,1600 for the scaling table")
    ap.add_argument("--scaling-epochs", type=int, default=3)
    ap.add_argument("--scaling-mode", default="auto", help="vaekit fast mode of the scaling runs")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode of the compile path")
    ap.add_argument(
        "--interleave",
        action="store_true",
        help="alternate epochs of the two loops (for a machine whose speed drifts, e.g. a VM)",
    )
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.compile_mode:
        vaekit.train.COMPILE_OPTIONS["mode"] = a.compile_mode
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    data = load_mnist()
    x_train, x_test = data.train[: a.train_n], data.test[: a.test_n]
    result: dict = {"env": environment(), "args": vars(a)}
    print(json.dumps(result["env"]))

    if a.interleave:
        interleaved(a, x_train, x_test, device, result)
        return
    ref, times = reference_train(x_train, device, epochs=a.ref_epochs or a.epochs)
    reset_peak(device)
    ref_peak = None
    if device.type == "cuda":  # peak of a separate one-epoch run, measured from a clean state
        reset_peak(device)
        reference_train(x_train, device, epochs=1)
        ref_peak = peak_memory_mb(device)
    ref_vae = reference_as_vaekit(ref, vaekit_model(400, device))
    ll, ll_s = test_ll(ref_vae, x_test, a.k, device)
    result["reference"] = {
        "epoch_seconds": times,
        "s_per_epoch": per_epoch(times),
        "peak_mb": ref_peak if ref_peak is not None else peak_memory_mb(device),
        "test_ll": ll,
        "eval_seconds": ll_s,
    }
    print("reference", json.dumps(result["reference"]))
    variants = itertools.product(
        a.modes.split(","), a.precision.split(","), [int(g) for g in a.steps_per_launch.split(",")]
    )
    for mode, precision, launch in variants:
        model, r = run_vaekit(
            x_train, device, epochs=a.epochs, fast=mode, precision=precision, launch=launch
        )
        r["test_ll"], r["eval_seconds"] = test_ll(model, x_test, a.k, device)
        r["speedup"] = result["reference"]["s_per_epoch"] / r["s_per_epoch"]
        r["ll_gap"] = r["test_ll"] - result["reference"]["test_ll"]
        r.update(precision=precision, steps_per_launch=launch)
        name = mode if (precision, launch) == ("fp32", 8) else f"{mode}-{precision}-{launch}"
        result[f"vaekit_{name}"] = r
        print(f"vaekit {name}", json.dumps(r))

    scaling = []
    for bs in [int(b) for b in a.batch_sizes.split(",") if b]:
        _, r = run_vaekit(
            x_train, device, epochs=a.scaling_epochs, batch_size=bs, fast=a.scaling_mode
        )
        _, ref_t = reference_train(x_train, device, epochs=1, batch_size=bs, max_steps=None)
        scaling.append(
            {"batch_size": bs, "width": 400, "s_per_epoch": r["s_per_epoch"], "path": r["path"],
             "reference_s_per_epoch": ref_t[0], "setup_seconds": r["setup_seconds"]}
        )  # fmt: skip
        print("scaling", json.dumps(scaling[-1]))
    for w in [int(w) for w in a.widths.split(",") if w]:
        _, r = run_vaekit(x_train, device, epochs=a.scaling_epochs, width=w, fast=a.scaling_mode)
        _, ref_t = reference_train(x_train, device, epochs=1, width=w)
        scaling.append(
            {"batch_size": 128, "width": w, "s_per_epoch": r["s_per_epoch"], "path": r["path"],
             "reference_s_per_epoch": ref_t[0], "setup_seconds": r["setup_seconds"]}
        )  # fmt: skip
        print("scaling", json.dumps(scaling[-1]))
    result["scaling"] = scaling

    print("\n| loop | s/epoch | vs reference | peak MB | test log p(x) |")
    print("| --- | --- | --- | --- | --- |")
    rr = result["reference"]
    print(
        f"| examples loop | {rr['s_per_epoch']:.4f} | 1.00x | {rr['peak_mb']:.0f} "
        f"| {rr['test_ll']:.2f} |"
    )
    for key, r in result.items():
        if key.startswith("vaekit_"):
            print(
                f"| vaekit {key[7:]} ({r['path']}) | {r['s_per_epoch']:.4f} | {r['speedup']:.2f}x "
                f"| {r['peak_mb']:.0f} | {r['test_ll']:.2f} |"
            )
    save(result, a.out)


def save(result: dict, path: str | None) -> None:
    """Write the results as JSON to ``path`` (nothing without one)."""
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=1)


def interleaved(a, x_train, x_test, device, result: dict) -> None:
    """--interleave: each vaekit variant against its own reference run, epoch by epoch."""
    print(
        "\n| loop | reference s/epoch | vaekit s/epoch | vs reference "
        "| test log p(x) ref / vaekit |"
    )
    print("| --- | --- | --- | --- | --- |")
    for mode, precision in itertools.product(a.modes.split(","), a.precision.split(",")):
        model, r, ref_model, ref_times = run_interleaved(
            x_train, device, epochs=a.epochs, fast=mode, precision=precision
        )
        ref_ll, _ = test_ll(
            reference_as_vaekit(ref_model, vaekit_model(400, device)), x_test, a.k, device
        )
        r["test_ll"], r["eval_seconds"] = test_ll(model, x_test, a.k, device)
        r["reference"] = {
            "epoch_seconds": ref_times,
            "s_per_epoch": per_epoch(ref_times),
            "test_ll": ref_ll,
        }
        r["speedup"] = r["reference"]["s_per_epoch"] / r["s_per_epoch"]
        r["precision"] = precision
        result[f"vaekit_{mode}-{precision}"] = r
        print(
            f"| vaekit {mode} {precision} ({r['path']}) | {per_epoch(ref_times):.4f} "
            f"| {r['s_per_epoch']:.4f} | {r['speedup']:.2f}x | {ref_ll:.2f} / {r['test_ll']:.2f} |"
        )
    save(result, a.out)


if __name__ == "__main__":
    main()
