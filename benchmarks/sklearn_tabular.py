"""VAETransformer as a feature extractor beside PCA on scikit-learn's tabular data sets.

For breast-cancer and wine (stratified 75/25 split, seed 0): test accuracy of
Pipeline(StandardScaler, VAETransformer(latent_dim=k), LogisticRegression) against
Pipeline(StandardScaler, PCA(k), LogisticRegression) for k = 2 and 5, and of the raw, unscaled
data through VAETransformer(likelihood="auto") alone (it standardises the columns itself) and,
for contrast, through PCA(k) alone. Then the mean log p(x) of the raw test rows, in the data's
units, under VAETransformer(latent_dim=k), factor analysis with k factors and a full-covariance
Gaussian. The VAE rows give the mean and spread over ``--seeds`` values of random_state; the
split is fixed.

    python benchmarks/sklearn_tabular.py [--seeds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.decomposition import PCA, FactorAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from vaekit.sklearn import VAETransformer

DATASETS = {"breast_cancer": load_breast_cancer, "wine": load_wine}


def accuracy(steps: list, split: tuple[np.ndarray, ...]) -> float:
    X_train, X_test, y_train, y_test = split
    pipe = Pipeline([*steps, ("clf", LogisticRegression(max_iter=1000))])
    return float(pipe.fit(X_train, y_train).score(X_test, y_test))


def density_rows(name: str, split: tuple[np.ndarray, ...], seeds: int) -> list[dict]:
    """Mean log-density of the test rows in the data's own units: the VAE's importance-weighted
    estimate beside factor analysis with k factors and one full-covariance Gaussian."""
    X_train, X_test = split[0], split[1]
    full = GaussianMixture(1, covariance_type="full", random_state=0).fit(X_train)
    rows = [
        {
            "data": name,
            "method": "Gaussian, full covariance",
            "k": "-",
            "log_px": float(full.score(X_test)),
        }
    ]
    for k in (2, 5):
        fa = FactorAnalysis(k, random_state=0).fit(X_train)
        rows.append(
            {"data": name, "method": "factor analysis", "k": k, "log_px": float(fa.score(X_test))}
        )
        scores = [
            VAETransformer(latent_dim=k, random_state=seed).fit(X_train).score(X_test)
            for seed in range(seeds)
        ]
        rows.append(
            {
                "data": name,
                "method": "VAETransformer (auto)",
                "k": k,
                "log_px": float(np.mean(scores)),
                "sd": float(np.std(scores)),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = []
    for name, load in DATASETS.items():
        X, y = load(return_X_y=True)
        split = tuple(train_test_split(X, y, test_size=0.25, stratify=y, random_state=0))
        rows.append(
            {
                "data": name,
                "method": "all features",
                "k": X.shape[1],
                "accuracy": accuracy([("scale", StandardScaler())], split),
            }
        )
        for k in (2, 5):
            pca = accuracy([("scale", StandardScaler()), ("pca", PCA(k))], split)
            rows.append({"data": name, "method": "scaler + PCA", "k": k, "accuracy": pca})
            raw_pca = accuracy([("pca", PCA(k))], split)
            rows.append({"data": name, "method": "raw + PCA", "k": k, "accuracy": raw_pca})
            for method, scaler in (("scaler + VAE", True), ("raw + VAE (auto)", False)):
                start, scores = time.perf_counter(), []
                for seed in range(args.seeds):
                    vae = VAETransformer(latent_dim=k, random_state=seed)
                    steps = [("scale", StandardScaler())] if scaler else []
                    scores.append(accuracy([*steps, ("vae", vae)], split))
                rows.append(
                    {
                        "data": name,
                        "method": method,
                        "k": k,
                        "accuracy": float(np.mean(scores)),
                        "sd": float(np.std(scores)),
                        "seconds_per_fit": (time.perf_counter() - start) / args.seeds,
                    }
                )
        rows += density_rows(name, split, args.seeds)
    print("| data | method | k | test accuracy |")
    print("|---|---|---|---|")
    for r in rows:
        if "accuracy" in r:
            sd = f" ± {r['sd']:.3f}" if "sd" in r else ""
            print(f"| {r['data']} | {r['method']} | {r['k']} | {r['accuracy']:.3f}{sd} |")
    print("\n| data | model of the raw data | k | held-out log p(x), nats per example |")
    print("|---|---|---|---|")
    for r in rows:
        if "log_px" in r:
            sd = f" ± {r['sd']:.2f}" if "sd" in r else ""
            print(f"| {r['data']} | {r['method']} | {r['k']} | {r['log_px']:.2f}{sd} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
