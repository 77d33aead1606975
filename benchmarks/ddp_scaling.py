"""Scaling of `vaekit train` over processes: the same run (same global batch and seed) under
torchrun with 1, 2, 4, ... processes, its seconds per epoch, the speed-up against one process and
the largest weight difference from the one-process run.

On GPUs (one process per GPU, nccl, the CUDA-graph fast path with one all-reduce per step):

    python benchmarks/ddp_scaling.py --procs 1 2 4 8 --data mnist --epochs 5 \\
        --set batch_size=1024 --set hidden=[1024,1024]

On CPU (gloo; OMP_NUM_THREADS=1 per process, so N processes use N cores):

    OMP_NUM_THREADS=1 python benchmarks/ddp_scaling.py --procs 1 2 --data digits --epochs 20

The first epoch (CUDA-graph capture, compilation, the rendezvous) is left out of the per-epoch
time. The figures printed are wall-clock seconds of training, validation included; the weight
difference says how close each run is to the one-process run (floating-point sum order only).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from safetensors.torch import load_file


def torchrun(nproc: int, args: list[str]) -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    launcher = [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]
    return [*launcher, "--standalone", "--nproc_per_node", str(nproc), "-m", "vaekit", *args]


def seconds_per_epoch(run: Path) -> float:
    """Mean seconds of the epochs after the first, from metrics.jsonl."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    times = [r["seconds"] for r in records]
    if len(times) < 2:
        return times[0]
    return (times[-1] - times[0]) / (len(times) - 1)


def max_diff(a: Path, b: Path) -> float:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--keep", type=Path, default=None, help="Keep the runs in this folder.")
    opts = parser.parse_args()
    root = opts.keep or Path(tempfile.mkdtemp(prefix="vaekit-ddp-"))
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    rows = []
    try:
        for n in opts.procs:
            out = root / f"procs-{n}"
            args = ["train", "--data", opts.data, "--out", str(out), "--overwrite", "-q"]
            args += ["--epochs", str(opts.epochs), "-k", "1"]
            args += [a for s in opts.overrides for a in ("--set", s)]
            subprocess.run(torchrun(n, args), check=True, env=env, stdout=subprocess.DEVNULL)
            rows.append((n, seconds_per_epoch(out), out))
    finally:
        base = rows[0] if rows else None
        print(f"{'procs':>5} {'s/epoch':>9} {'speed-up':>8} {'max |dw|':>10}")
        for n, sec, out in rows:
            assert base is not None
            print(f"{n:>5} {sec:>9.4f} {base[1] / sec:>8.2f} {max_diff(base[2], out):>10.2e}")
        if opts.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
