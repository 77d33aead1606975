"""Where a fast-path training step spends its GPU time: kernels per step and their durations.

    PYTHONPATH=src python benchmarks/profile_step.py

For each loop (graph, compile) and precision, runs steps of the fast path outside a CUDA graph
under the profiler (sum of kernel durations per step, the largest kernels), then times replays
of the captured graph (wall time per step). The difference is launch overhead inside the graph.
"""

from __future__ import annotations

import argparse
import collections
import time

import torch
from _common import environment, load_mnist
from torch.profiler import ProfilerActivity, profile

from vaekit import VAE
from vaekit.train import FastRun, TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paths", default="graph,compile")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--top", type=int, default=12)
    a = ap.parse_args()
    print(environment())
    x = load_mnist().train
    dev = torch.device("cuda")
    for path in a.paths.split(","):
        for prec in a.precisions.split(","):
            torch.manual_seed(0)
            model = VAE(data_shape=(784,), latent_dim=20, hidden=(400,), activation="relu").to(dev)
            cfg = TrainConfig(
                epochs=1, batch_size=a.batch_size, binarize="dynamic", fast=path, precision=prec
            )
            run = FastRun(model, x, cfg, path)
            order = torch.randperm(run.n, device=dev)
            run._fill(order, 0, run.G, 0)
            for _ in range(20):
                run._step(0)
            torch.cuda.synchronize()
            n = 50
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(n):
                    run._step(0)
                torch.cuda.synchronize()
            per_kernel: dict[str, list[float]] = collections.defaultdict(list)
            for e in prof.events():
                if e.device_type == torch.autograd.DeviceType.CUDA:
                    per_kernel[e.name].append(e.device_time)
            total = sum(sum(v) for v in per_kernel.values()) / n
            count = sum(len(v) for v in per_kernel.values()) / n
            replay = run.graphs[run.G]
            for _ in range(5):
                replay()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            reps = 200
            for _ in range(reps):
                replay()
            torch.cuda.synchronize()
            wall = (time.perf_counter() - t0) / (reps * run.G) * 1e6
            print(
                f"\n{path} {prec}: {count:.0f} kernels/step, kernel time {total:.1f} us/step, "
                f"graph replay {wall:.1f} us/step ({run.steps} steps/epoch: "
                f"{wall * run.steps / 1e6:.4f} s/epoch)"
            )
            top = sorted(per_kernel.items(), key=lambda kv: -sum(kv[1]))[: a.top]
            for name, times in top:
                print(f"  {sum(times) / n:7.2f} us  x{len(times) / n:.0f}  {name[:110]}")


if __name__ == "__main__":
    main()
