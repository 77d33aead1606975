"""A bounded load test of ``vaekit serve`` on loopback: requests/s and latency of /decode and
/log-likelihood, with every answer checked against its own request.

The server runs as a process of its own (``python -m vaekit serve RUN --port 0``); a few client
threads, each with a keep-alive connection, send a fixed number of requests per endpoint and the
test stops by itself. Each request carries different numbers (its own latents, its own test
image and seed), and each answer is compared with the model's answer to that request, computed
in this process before the clock starts: an answer mixed up with another request's fails the
comparison. While /log-likelihood is under load a further thread asks /healthz every 50 ms.

    PYTHONPATH=src python benchmarks/serve_load.py                     # trains the digits demo
    PYTHONPATH=src python benchmarks/serve_load.py --run runs/demo --requests 400 --clients 4
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

import vaekit
from vaekit.data import load as load_data
from vaekit.models import read_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, environment


def train_demo(folder: Path) -> Path:
    """The digits demo run (configs/digits.toml: 64-200-8, 300 epochs, about 10 s)."""
    from vaekit.cli import main

    out = folder / "digits"
    try:
        main(["train", "--config", str(ROOT / "configs" / "digits.toml"), "--out", str(out), "-q",
              "-k", "10"])  # fmt: skip
    except SystemExit as exit_:
        if exit_.code:
            raise
    return out


def start_server(run: Path, threads: int) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaekit", "serve", str(run), "--port", "0", "--points", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    for line in proc.stdout:
        found = re.search(r"listening on (http://[\d.]+:\d+)", line)
        if found:
            return proc, found.group(1)
    raise SystemExit(f"the server did not start: {proc.stderr.read()}")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def load(url: str, bodies: list[dict], check: Any, clients: int, deadline: float) -> dict[str, Any]:
    """Send ``bodies`` (each once) from ``clients`` threads; ``check(i, answer)`` says whether
    answer i is right. Returns req/s, p50 and p99 latency (ms), errors and mismatches."""
    path = bodies[0].pop("_path")
    for b in bodies[1:]:
        b.pop("_path")
    local = threading.local()
    latencies = [0.0] * len(bodies)
    errors, wrong = [], []

    def one(i: int) -> None:
        if time.monotonic() > deadline:
            errors.append((i, "deadline"))
            return
        http = getattr(local, "http", None)
        if http is None:
            http = local.http = httpx.Client(base_url=url, timeout=60)
        t0 = time.perf_counter()
        answer = http.post(path, json=bodies[i])
        latencies[i] = time.perf_counter() - t0
        if answer.status_code != 200:
            errors.append((i, answer.status_code))
        elif not check(i, answer.json()):
            wrong.append(i)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(len(bodies))))
    wall = time.perf_counter() - t0
    done = [v for v in latencies if v > 0]
    return {
        "path": path,
        "requests": len(bodies),
        "clients": clients,
        "seconds": round(wall, 3),
        "requests_per_s": round(len(bodies) / wall, 1),
        "p50_ms": round(1000 * percentile(done, 50), 2),
        "p99_ms": round(1000 * percentile(done, 99), 2),
        "errors": len(errors),
        "mismatched": len(wrong),
    }


def healthz_probe(url: str, stop: threading.Event) -> list[float]:
    """/healthz latencies (s), one request every 50 ms until ``stop``."""
    out = []
    with httpx.Client(base_url=url, timeout=60) as http:
        while not stop.is_set():
            t0 = time.perf_counter()
            http.get("/healthz").raise_for_status()
            out.append(time.perf_counter() - t0)
            stop.wait(0.05)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--run", type=Path, default=None, help="Run folder (default: train the digits demo)."
    )
    p.add_argument("--requests", type=int, default=300, help="Requests per endpoint.")
    p.add_argument("--clients", type=int, default=4, help="Concurrent client threads.")
    p.add_argument("--batch", type=int, default=1, help="Latents or examples per request.")
    p.add_argument("--k", type=int, default=100, help="K of /log-likelihood.")
    p.add_argument("--server-threads", type=int, default=1, help="OMP_NUM_THREADS of the server.")
    p.add_argument("--timeout", type=float, default=300, help="Seconds before giving up.")
    p.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    args = p.parse_args()
    deadline = time.monotonic() + args.timeout
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or train_demo(Path(tmp))
        model = vaekit.load(run)
        source = read_config(run).get("data", {}).get("source", "digits")
        test = load_data(source).test.reshape(-1, *model.config.data_shape)
        g = torch.Generator().manual_seed(0)
        n, b = args.requests, args.batch
        z = torch.randn(n, b, model.config.latent_dim, generator=g)
        with torch.no_grad():
            decoded = [model.decode(z[i]).mean.numpy() for i in range(n)]
        rows = torch.randint(0, len(test), (n, b), generator=g)
        scores = [vaekit.log_likelihood(model, test[rows[i]], args.k, seed=i).numpy()
                  for i in range(n)]  # fmt: skip
        proc, url = start_server(run, args.server_threads)
        try:
            results = [
                load(
                    url,
                    [{"_path": "/decode", "z": z[i].tolist()} for i in range(n)],
                    lambda i, a: np.allclose(a["x"], decoded[i], rtol=1e-5, atol=1e-6),
                    args.clients,
                    deadline,
                )
            ]
            stop = threading.Event()
            probe: list[float] = []
            prober = threading.Thread(target=lambda: probe.extend(healthz_probe(url, stop)))
            prober.start()
            bodies = [{"_path": "/log-likelihood", "x": test[rows[i]].tolist(), "k": args.k,
                       "seed": i} for i in range(n)]  # fmt: skip
            results.append(
                load(
                    url,
                    bodies,
                    lambda i, a: np.allclose(a["log_likelihood"], scores[i], rtol=1e-6),
                    args.clients,
                    deadline,
                )
            )
            stop.set()
            prober.join()
        finally:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=60)
    report = {
        "environment": {**environment(), "server_threads": args.server_threads},
        "model": f"{model.kind} {list(model.config.data_shape)}-{list(model.config.hidden)}-"
        f"{model.config.latent_dim}, {source}",
        "batch": b,
        "k": args.k,
        "results": results,
        "healthz_during_log_likelihood": {
            "requests": len(probe),
            "p50_ms": round(1000 * percentile(probe, 50), 2) if probe else None,
            "p99_ms": round(1000 * percentile(probe, 99), 2) if probe else None,
        },
    }
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    bad = sum(r["errors"] + r["mismatched"] for r in results)
    if bad:
        raise SystemExit(f"{bad} requests failed or got another request's answer")


if __name__ == "__main__":
    main()
