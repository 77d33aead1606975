"""One process of a run over several processes, for test_distributed.py (not a test itself).

``python ddp_worker.py MODE RANK WORLD INIT OUT`` joins a gloo process group through the file
INIT (``init_method="file://..."``) as RANK of WORLD, as a user who sets up the group before
calling ``vaekit.fit`` would, and runs MODE:

- ``fit``: :func:`vaekit.fit` of :func:`setup`'s model (initialised differently on each rank:
  fit starts from rank 0's) and data into OUT;
- ``fast``: the static-shape fast loop (``FastRun``, step by step off CUDA) under the group;
  rank 0 writes its weights and records to OUT;
- ``resume``: fit continuing the run that OUT holds;
- ``early``: fit under early stopping (:data:`EARLY`);
- ``mismatch``: fit with a seed that differs between the ranks;
- ``tiny``: fit on fewer examples than processes;
- ``hang``: rank 1 stops answering (sleeps), rank 0 fits under a group timeout of 5 s.

A vaekit error is one line on stderr and exit status 2.
"""

from __future__ import annotations

import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

import vaekit
from vaekit.errors import VaekitError
from vaekit.train import FastRun, TrainConfig

SETTINGS: dict[str, Any] = {
    "epochs": 2,
    "batch_size": 50,
    "binarize": "dynamic",
    "seed": 3,
    "fast": "off",
}

#: Early stopping that ends the run after epoch 3 whatever the bounds: no epoch beats the first by
#: a million nats.
EARLY: dict[str, Any] = {**SETTINGS, "epochs": 6, "patience": 2, "min_delta": 1e6}


def setup(init_seed: int = 0) -> tuple[vaekit.VAE, torch.Tensor, torch.Tensor]:
    """A small VAE (initialised under ``init_seed``) and the digits' train and valid splits."""
    torch.manual_seed(init_seed)
    model = vaekit.VAE(data_shape=(64,), latent_dim=4, hidden=(32,))
    digits = vaekit.data.load("digits")
    return model, torch.as_tensor(digits.train), torch.as_tensor(digits.valid)


def run(mode: str, rank: int, out: Path) -> None:
    # fit starts from rank 0's weights: the others' differ here and are replaced
    model, x, valid = setup(init_seed=rank if mode == "fit" else 0)
    if mode == "fit":
        vaekit.fit(model, x, valid=valid, out=out, **SETTINGS)
    elif mode == "fast":
        group = vaekit.dist.current()
        cfg = TrainConfig(**{**SETTINGS, "fast": "graph", "steps_per_launch": 4})
        records = list(FastRun(model, x, cfg, "graph", group=group).epochs(False))
        if group.main:
            out.mkdir(parents=True, exist_ok=True)
            weights = {k: v.contiguous() for k, v in model.state_dict().items()}
            save_file(weights, out / "fast.safetensors")
            (out / "fast.json").write_text(json.dumps(records))
    elif mode == "early":
        vaekit.fit(model, x, valid=valid, out=out, **EARLY)
    elif mode == "resume":
        vaekit.fit(model, x, valid=valid, out=out, resume=True, **SETTINGS)
    elif mode == "mismatch":
        vaekit.fit(model, x, out=out, **{**SETTINGS, "seed": rank})
    elif mode == "tiny":
        vaekit.fit(model, x[:1], out=out, **SETTINGS)
    elif mode == "hang":  # rank 1 stops answering; rank 0 waits the group's timeout (5 s)
        if rank == 1:
            time.sleep(10)
            return
        vaekit.fit(model, x, out=out, **SETTINGS)


def main() -> None:
    mode, rank, world, init, out = sys.argv[1:6]
    torch.distributed.init_process_group(
        "gloo",
        init_method=f"file://{init}",
        rank=int(rank),
        world_size=int(world),
        timeout=datetime.timedelta(seconds=5 if mode == "hang" else 60),
    )
    try:
        run(mode, int(rank), Path(out))
        if mode != "hang":
            torch.distributed.barrier()  # every rank done before the group is torn down
    except VaekitError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    finally:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
