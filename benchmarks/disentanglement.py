"""Disentanglement on ``shapes`` (procedural dSprites): VAE, beta-VAE (beta = 4), beta-TCVAE
(beta = 6) and FactorVAE (gamma = 10), the same networks for all, several seeds each, scored
with MIG, DCI disentanglement and the FactorVAE score of :mod:`vaekit.metrics`.

The networks are those of Higgins et al. (2017) and Locatello et al. (2019): four 4x4 stride-2
convolutions of 32, 32, 64 and 64 channels, a dense layer of 256, 10 latents, the mirror image
in the decoder, ReLU, a Bernoulli p(x|z) (vaekit's ``network=conv`` with these settings). The
budget is what a shared 2-core machine allows: ``--steps`` steps of batch 64 per run, one thread
each, ``--jobs`` runs at a time; Locatello et al. train 300,000 steps. Each run lives in
``OUT/NAME-sSEED`` (a vaekit run folder, with ``disentanglement.json``); the table goes to
stdout and, with ``--table``, to a Markdown file.

    OMP_NUM_THREADS=1 python benchmarks/disentanglement.py --steps 400 --jobs 2 \\
        --out /tmp/disent-runs --table /tmp/disent-table.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: Objective settings of each method (the issue's: beta-VAE 4, beta-TCVAE 6, FactorVAE 10).
METHODS: dict[str, dict[str, Any]] = {
    "vae": {"objective": "elbo"},
    "beta-vae": {"objective": "elbo", "beta": 4.0},
    "beta-tcvae": {"objective": "btcvae", "beta": 6.0},
    "factorvae": {"objective": "factorvae", "gamma": 10.0},
}
#: The convolutional networks of Locatello et al. (2019), table 1.
NETWORK: dict[str, Any] = {
    "network": "conv",
    "conv_upsample": "transpose",  # the paper's decoder: 4x4 stride-2 transposed convolutions
    "channels": (32, 32, 64, 64),
    "hidden": (256,),
    "latent_dim": 10,
    "activation": "relu",
    "likelihood": "bernoulli",
}
METRICS = ("mig", "dci_disentanglement", "factor_vae_score")
#: The KL parts of the aggregate posterior on held-out data (nats per example), for any data.
PARTS = ("mi", "tc", "dim_kl", "elbo")
#: Networks for 28x28 data that has no factors (the fallback: MNIST), where only PARTS apply.
MLP_NETWORK: dict[str, Any] = {"hidden": (400,), "latent_dim": 10, "activation": "relu"}


def kl_parts_on(model: Any, x: Any, batch: int = 1000, seed: int = 0) -> dict[str, float]:
    """Index-code MI, total correlation and dimension-wise KL of ``model``'s q(z) on ``x`` (N,
    ...), each the mean over examples of :func:`vaekit.objectives.kl_parts` with minibatch-
    stratified sampling over batches of ``batch`` (N the size of ``x``), and the ELBO, in nats."""
    import torch

    from vaekit.objectives import elbo, kl_parts

    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(x.shape[0], generator=g)
    sums = dict.fromkeys(PARTS, 0.0)
    model.eval()
    with torch.no_grad():
        for i in range(0, x.shape[0] - batch + 1, batch):
            terms = model(x[order[i : i + batch]], k=1, generator=g)
            parts = kl_parts(terms, x.shape[0], "mss")
            for name in ("mi", "tc", "dim_kl"):
                sums[name] += float(getattr(parts, name).sum())
            sums["elbo"] += float(elbo(terms).sum())
    n = (x.shape[0] // batch) * batch
    return {k: v / n for k, v in sums.items()}


def load_run(folder: Path) -> Any:
    """The model of a run folder, rebuilt from its config.json's model table and its weights
    (only what this script wrote, so older or newer run records read alike)."""
    from safetensors.torch import load_file

    from vaekit import VAE

    table = dict(json.loads((folder / "config.json").read_text())["model"])
    table.pop("kind", None)
    model = VAE(**{k: tuple(v) if isinstance(v, list) else v for k, v in table.items()})
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.eval()


def train_one(name: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train one method under one seed (unless OUT/NAME-sSEED holds it already) and score it:
    the KL parts on held-out data, and on shapes the disentanglement metrics once
    :mod:`vaekit.metrics` is there. Writes OUT/NAME-sSEED/disentanglement.json."""
    import torch

    import vaekit
    from vaekit import VAE
    from vaekit.data import load
    from vaekit.train.step import binarize

    torch.set_num_threads(1)
    ds = load(args.data, seed=0)
    shapes = args.data != "mnist"
    folder = Path(args.out) / f"{name}-s{seed}"
    done = folder / "disentanglement.json"
    test = ds.test[: args.test]
    if (folder / "model.safetensors").is_file() and done.is_file():
        model, record = load_run(folder), json.loads(done.read_text())
    else:
        model_settings = dict(NETWORK if shapes else MLP_NETWORK, data_shape=tuple(ds.data_shape))
        if shapes and len(ds.data_shape) != 3:
            model_settings["image_shape"] = tuple(ds.image_shape)
        if name == "factorvae":
            model_settings["discriminator"] = (1000,) * 6
        torch.manual_seed(seed)
        model = VAE(**model_settings)
        used = min(args.steps * args.batch_size, ds.train.shape[0])
        epochs = max(1, round(args.steps * args.batch_size / used))  # passes over `used`
        start = time.perf_counter()
        vaekit.fit(
            model,
            ds.train[:used],
            out=folder,
            epochs=epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=seed,
            binarize="dynamic",
            **METHODS[name],
        )
        record = {"method": name, "seed": seed, "examples": used, "epochs": epochs,
                  "train_seconds": time.perf_counter() - start}  # fmt: skip
        record.update(kl_parts_on(model, binarize(test, seed=1), seed=seed))
        done.write_text(json.dumps(record, indent=1))
    if shapes and record.get("scoring") != SCORING:
        if "dci_disentanglement" in record:  # scored otherwise before: kept for the record
            record["dci_disentanglement_boosting"] = record["dci_disentanglement"]
        with contextlib.suppress(ImportError):  # no vaekit.metrics yet: the KL parts only
            record.update(score(model, ds, test, seed))
        done.write_text(json.dumps(record, indent=1))
    return record


#: How the scores below are computed; a stored record scored otherwise is scored again.
SCORING = "mig; dci forest; factorvae 500/300 votes, 5000 for the scales"


def score(model: Any, ds: Any, test: Any, seed: int) -> dict[str, Any]:
    """MIG and DCI disentanglement of ``model``'s posterior means on ``test`` (DCI with the
    random-forest importances of :func:`vaekit.metrics.dci`, tens of times faster than
    disentanglement_lib's gradient boosting on a CPU), and the FactorVAE score with 500 / 300
    votes (disentanglement_lib: 10,000 / 5,000) and 5,000 examples for the latents' scales."""
    import torch

    from vaekit import metrics

    with torch.no_grad():
        z = metrics.representation(model, test)
    factors = ds.test_factors[: test.shape[0]]
    fvae = metrics.factor_vae_score(
        model, ds, train_votes=500, eval_votes=300, variance_examples=5000, seed=seed
    )
    return {
        "mig": float(metrics.mig(z, factors)),
        "dci_disentanglement": float(
            metrics.dci(z, factors, importance="forest", seed=seed)["disentanglement"]
        ),
        "factor_vae_score": float(fvae),
        "scoring": SCORING,
    }


def table(records: list[dict[str, Any]]) -> str:
    """Markdown: per method, the median and the per-seed values of each measure."""
    names = {"mig": "MIG", "dci_disentanglement": "DCI disent.", "factor_vae_score":
             "FactorVAE score", "mi": "MI (nats)", "tc": "TC (nats)", "dim_kl": "dim-KL (nats)",
             "elbo": "ELBO (nats)"}  # fmt: skip
    columns = [m for m in (*METRICS, *PARTS) if records and m in records[0]]
    lines = [
        "| method | " + " | ".join(names[m] for m in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name in METHODS:
        rows = sorted((r for r in records if r["method"] == name), key=lambda r: r["seed"])
        if not rows:
            continue
        cells = []
        for m in columns:
            values = [r[m] for r in rows]
            digits = 3 if m in METRICS else 2
            each = ", ".join(f"{v:.{digits}f}" for v in values)
            cells.append(f"{statistics.median(values):.{digits}f} ({each})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="shapes", choices=["shapes", "mnist"])
    parser.add_argument("--steps", type=int, default=1250, help="steps of training per run")
    parser.add_argument("--test", type=int, default=10_000, help="held-out examples scored")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, one thread each")
    parser.add_argument("--out", default="/tmp/vaekit-disentanglement")
    parser.add_argument("--table", default=None, help="also write the table to this file")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # NAME:SEED, a worker
    args = parser.parse_args()
    if args.one is not None:
        name, seed = args.one.split(":")
        print(json.dumps(train_one(name, int(seed), args)))
        return
    jobs = [(name, seed) for seed in args.seeds for name in args.methods]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    running: list[tuple[str, subprocess.Popen[str]]] = []
    records = []
    base = [sys.executable, __file__, "--data", args.data, "--steps", str(args.steps),
            "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--out", args.out,
            "--test", str(args.test)]  # fmt: skip
    while jobs or running:
        while jobs and len(running) < args.jobs:
            name, seed = jobs.pop(0)
            proc = subprocess.Popen(
                [*base, "--one", f"{name}:{seed}"], env=env, stdout=subprocess.PIPE, text=True
            )
            running.append((f"{name}:{seed}", proc))
        time.sleep(1.0)
        for job, proc in list(running):
            if proc.poll() is None:
                continue
            running.remove((job, proc))
            out = proc.stdout.read() if proc.stdout else ""
            if proc.returncode != 0 or not out.strip():
                print(f"{job}: failed (exit {proc.returncode})", file=sys.stderr)
                continue
            records.append(json.loads(out.strip().splitlines()[-1]))
            r = records[-1]
            print(
                f"{job}: {r['train_seconds']:.0f} s, "
                + ", ".join(f"{m} {r[m]:.3f}" for m in (*METRICS, *PARTS) if m in r),
                flush=True,
            )
    text = table(records)
    print(text)
    if args.table:
        Path(args.table).write_text(text + "\n")


if __name__ == "__main__":
    main()
