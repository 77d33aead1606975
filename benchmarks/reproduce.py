"""Paper reproductions: the IWAE paper's table 1 rows and the AEVB paper's figure 2 on MNIST.

    .venv/bin/python benchmarks/reproduce.py table configs/iwae-vae1.toml --epochs 30
    .venv/bin/python benchmarks/reproduce.py fig2 --epochs 5 --figure docs/images/aevb-fig2.png

``table`` trains each recipe (its full schedule unless --epochs shortens it; a shortened IWAE
staircase is cut off where the run ends, or squeezed into it with --schedule scaled; cut off
reached -99.8 against -112.0 after 10 passes on CPU, see REPRODUCTION.md), then estimates test
log p(x) with K importance samples on the test split binarised once (seed 0), and prints one
line per recipe beside the paper's number. ``fig2`` trains configs/aevb-mnist.toml at each
latent size and overlays the training bound and validation ELBO against training examples seen
(log axis).
Both write a JSON summary (runs, settings, seconds, device) to --summary and print its path.
Needs mnist.pkl.gz in $VAEKIT_DATA. Results go in REPRODUCTION.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import torch
from _common import ROOT, environment

from vaekit import data as datasets
from vaekit import viz
from vaekit.config import to_dict
from vaekit.estimators import elbo, log_likelihood
from vaekit.models import build_model, model_table
from vaekit.settings import resolve_config
from vaekit.train import binarize, fit

#: Test log p(x) in nats of Burda et al. (2016), table 1, MNIST, K = 5000.
PAPER_IWAE = {
    "iwae-vae1": -86.76,
    "iwae-iwae1-k50": -84.78,
    "iwae-vae2": -85.33,
    "iwae-iwae2-k50": -82.90,
}
#: Latent sizes of Kingma & Welling (2014), figure 2.
FIG2_SIZES = (3, 5, 10, 20, 200)


def git_commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "?"


def train_recipe(
    recipe: Path,
    out: Path,
    *,
    epochs: int | None,
    schedule: str,
    overrides: tuple[str, ...],
    device: torch.device,
    dataset: SimpleNamespace,
) -> tuple[torch.nn.Module, dict, list[dict]]:
    """Train one recipe into ``out``; returns (model, settings, history)."""
    model_cfg, train_cfg, name = resolve_config(str(recipe), overrides, dataset, {})
    if epochs is not None:
        train_cfg = replace(train_cfg, epochs=epochs)
        if schedule == "scaled" and train_cfg.lr_schedule == "iwae":
            train_cfg = replace(train_cfg, lr_schedule="iwae_scaled")
    torch.manual_seed(train_cfg.seed)
    model = build_model(model_cfg).to(device)
    settings = {"model": model_table(model_cfg), "train": to_dict(train_cfg)}
    history = fit(
        model,
        dataset.train,
        valid=dataset.valid,
        config=train_cfg,
        out=out,
        metadata={"data": {"name": name, "source": name, "split_seed": 0}},
    )
    return model, settings, history


def test_log_likelihood(
    model: torch.nn.Module, x_test: torch.Tensor, k: int, n: int | None
) -> dict[str, float]:
    """Test ELBO and K-sample log p(x) (nats) on the first ``n`` test images, binarised once."""
    x = binarize(x_test[:n], seed=0).to(model.device)
    start = time.perf_counter()
    ll = log_likelihood(model, x, k=k, seed=0)
    seconds = time.perf_counter() - start
    return {
        "test_examples": int(x.shape[0]),
        "test_elbo": float(elbo(model, x, seed=0).mean()),
        "test_log_px": float(ll.mean()),
        "test_log_px_stderr": float(ll.std() / len(ll) ** 0.5),
        "k": k,
        "eval_seconds": round(seconds, 1),
    }


def run_table(args: argparse.Namespace, device: torch.device, dataset: SimpleNamespace) -> dict:
    rows = []
    for recipe in args.recipes:
        recipe = Path(recipe)
        out = args.out / recipe.stem
        model, settings, history = train_recipe(
            recipe,
            out,
            epochs=args.epochs,
            schedule=args.schedule,
            overrides=tuple(args.set),
            device=device,
            dataset=dataset,
        )
        last = history[-1]
        row = {
            "recipe": recipe.stem,
            "run": str(out),
            "epochs": last["epoch"],
            "train_seconds": last["seconds"],
            "path": last["path"],
            "train_bound": last["train_bound"],
            "valid_elbo": last.get("valid_elbo"),
            **test_log_likelihood(model, dataset.test, args.k, args.test_examples),
            "paper_test_log_px": PAPER_IWAE.get(recipe.stem) if args.data == "mnist" else None,
            "settings": settings,
        }
        rows.append(row)
        paper = row["paper_test_log_px"]
        gap = f"{row['test_log_px'] - paper:+.2f}" if paper is not None else "n/a"
        print(
            f"{row['recipe']:<16} {row['epochs']:>5} epochs {row['train_seconds']:8.1f} s "
            f"({row['path']})  test ELBO {row['test_elbo']:8.2f}  "
            f"log p(x) K={args.k} {row['test_log_px']:8.2f} +- {row['test_log_px_stderr']:.2f} "
            f"({row['eval_seconds']:.0f} s)  paper {paper if paper is not None else 'n/a'}  "
            f"gap {gap}",
            flush=True,
        )
    return {"kind": "iwae-table1", "rows": rows}


def run_fig2(args: argparse.Namespace, device: torch.device, dataset: SimpleNamespace) -> dict:
    recipe = ROOT / "configs" / "aevb-mnist.toml"
    runs, curves = [], {}
    for size in args.sizes:
        out = args.out / f"z{size}"
        _, settings, history = train_recipe(
            recipe,
            out,
            epochs=args.epochs,
            schedule="paper",
            overrides=(f"latent_dim={size}", *args.set),
            device=device,
            dataset=dataset,
        )
        last = history[-1]
        curves[f"N_z = {size}"] = history
        runs.append(
            {
                "latent_dim": size,
                "run": str(out),
                "epochs": last["epoch"],
                "examples_seen": last["examples_seen"],
                "train_seconds": last["seconds"],
                "path": last["path"],
                "train_bound": last["train_bound"],
                "valid_elbo": last.get("valid_elbo"),
                "curve": [
                    [r["examples_seen"], r["train_bound"], r.get("valid_elbo")] for r in history
                ],
                "settings": settings,
            }
        )
        print(
            f"N_z = {size:<4} {last['epoch']:>5} epochs ({last['examples_seen']:.2e} examples) "
            f"{last['seconds']:8.1f} s ({last['path']})  train bound {last['train_bound']:8.2f}  "
            f"valid ELBO {last.get('valid_elbo', float('nan')):8.2f}",
            flush=True,
        )
    figure = viz.curves(curves, title="AEVB on MNIST (Kingma & Welling 2014, figure 2)")
    path = viz.save(figure, args.figure or args.out / "aevb-fig2.png")
    print(f"wrote {path}")
    return {"kind": "aevb-figure2", "figure": str(path), "runs": runs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    table = sub.add_parser("table", help="IWAE table 1 rows: train, then test log p(x) at K")
    table.add_argument("recipes", nargs="+", help="recipe files, e.g. configs/iwae-vae1.toml")
    table.add_argument("-k", type=int, default=5000, help="importance samples (paper: 5000)")
    table.add_argument(
        "--test-examples", type=int, default=None, help="evaluate on the first N test images"
    )
    table.add_argument(
        "--schedule",
        choices=("paper", "scaled"),
        default="paper",
        help="with --epochs: cut the IWAE staircase off where the run ends (paper) or squeeze "
        "its eight stages into the run (scaled)",
    )
    fig2 = sub.add_parser("fig2", help="AEVB figure 2: bound vs examples seen per latent size")
    fig2.add_argument("--sizes", type=int, nargs="+", default=list(FIG2_SIZES))
    fig2.add_argument("--figure", type=Path, default=None, help="PNG to write")
    for p in (table, fig2):
        p.add_argument("--epochs", type=int, default=None, help="shorten the recipe's schedule")
        p.add_argument("--out", type=Path, default=Path("runs/reproduce"), help="run folders")
        p.add_argument("--summary", type=Path, default=None, help="JSON summary to write")
        p.add_argument("--set", action="append", default=[], help="key=value for every run")
        p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        p.add_argument("--data", default="mnist", help="data set name or path (default mnist)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    dataset = datasets.load(args.data, seed=0)
    start, commit = time.perf_counter(), git_commit()  # the code the runs start from
    result = (run_table if args.what == "table" else run_fig2)(args, device, dataset)
    summary = {
        **result,
        "command": " ".join(["python", *sys.argv]),
        "commit": commit,
        "data": args.data,
        "seconds": round(time.perf_counter() - start, 1),
        "environment": environment(),
    }
    path = args.summary or args.out / f"{args.what}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"total {summary['seconds']:.0f} s on {summary['environment'].get('gpu', 'CPU')}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
