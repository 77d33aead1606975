"""One run over several processes: the process group that ``torchrun`` describes in the
environment (or one the caller set up with ``torch.distributed.init_process_group``), which share
of each batch a process takes, and the few collective operations that training and evaluation
use. Nothing here draws a random number or touches a file.

A run over N processes is the run of one process, cut into N: every process draws each step's
random numbers for the whole global batch from the run's generator and keeps its rows
(:meth:`Group.shard`), and the per-rank sums are all-reduced (summed) and divided by the global
batch. A collective that fails because another process died or stopped answering raises
:class:`PeerLost`, one line, instead of a traceback or a hang (the group's timeout bounds the
wait).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .errors import ConfigError, VaekitError

#: Backends a run may use: gloo on CPU, nccl on CUDA.
BACKENDS = ("gloo", "nccl")
#: Environment variable that overrides the backend chosen from the device.
BACKEND_VARIABLE = "VAEKIT_DIST_BACKEND"
#: Environment variable: seconds a collective waits for the other processes before failing.
TIMEOUT_VARIABLE = "VAEKIT_DIST_TIMEOUT"
#: Seconds a collective waits by default (an evaluation between two steps must fit in it).
DEFAULT_TIMEOUT = 600.0
#: What torchrun sets in each process's environment.
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class PeerLost(VaekitError):
    """Another process of the run died, or stopped answering within the group's timeout."""


@dataclass(frozen=True)
class Group:
    """This process's place in the run: ``rank`` of ``world_size`` processes over ``backend``
    (None: one process, no group). ``device``: where the collectives' tensors live."""

    rank: int = 0
    world_size: int = 1
    backend: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def active(self) -> bool:
        """Whether more than one process shares the run."""
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Whether this process is rank 0, the one that prints and writes."""
        return self.rank == 0

    def shard(self, n: int) -> tuple[int, int]:
        """This rank's rows [lo, hi) of ``n``: contiguous, in rank order, the first
        ``n % world_size`` ranks one row more than the others (a share may be empty)."""
        return shard(n, self.rank, self.world_size)

    def describe(self) -> str:
        """``world_size=2 backend=gloo``: what the settings that ``train`` prints say."""
        return f"world_size={self.world_size} backend={self.backend or 'none'}"


def shard(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows [lo, hi) of ``n`` for ``rank`` of ``world_size`` (see :meth:`Group.shard`)."""
    base, extra = divmod(n, world_size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def current() -> Group:
    """The process group this process belongs to, or ``Group()`` (one process) when none is
    initialised."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return Group()
    backend = str(dist.get_backend())
    device = torch.device("cpu")
    if backend == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    return Group(dist.get_rank(), dist.get_world_size(), backend, device)


def launched() -> bool:
    """Whether torchrun (or another launcher setting its variables) started this process."""
    return all(name in os.environ for name in LAUNCH_VARIABLES)


def local_device() -> torch.device:
    """The device of this process under torchrun: its own GPU (``LOCAL_RANK``) where CUDA is
    available, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    local, count = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    if local >= count:
        raise ConfigError(
            f"local rank {local} has no GPU of its own: this node has {count}; start at most "
            f"{count} processes per node (torchrun --nproc_per_node {count})"
        )
    return torch.device("cuda", local)


def timeout_seconds() -> float:
    """The group's timeout: ``VAEKIT_DIST_TIMEOUT`` seconds, else :data:`DEFAULT_TIMEOUT`."""
    text = os.environ.get(TIMEOUT_VARIABLE, "")
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{TIMEOUT_VARIABLE}={text!r}: give a positive number of seconds")
    return value


def backend_for(device: torch.device) -> str:
    """``VAEKIT_DIST_BACKEND`` if set, else nccl on a CUDA device and gloo elsewhere."""
    backend = os.environ.get(BACKEND_VARIABLE) or ("nccl" if device.type == "cuda" else "gloo")
    if backend not in BACKENDS:
        raise ConfigError(
            f"{BACKEND_VARIABLE}={backend!r} is not a backend vaekit runs on; give "
            f"{' or '.join(BACKENDS)}"
        )
    if backend == "nccl" and device.type != "cuda":
        raise ConfigError(f"{BACKEND_VARIABLE}=nccl needs CUDA devices; give gloo on the CPU")
    return backend


def start(device: torch.device) -> Group:
    """Join the process group that torchrun describes in the environment (``env://``), with the
    backend of ``device`` (see :func:`backend_for`) and the timeout of :func:`timeout_seconds`.
    A rendezvous that fails is a :class:`ConfigError` of one line."""
    dist = torch.distributed
    if dist.is_initialized():
        return current()
    backend = backend_for(device)
    timeout = datetime.timedelta(seconds=timeout_seconds())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend, init_method="env://", timeout=timeout)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(
            f"cannot join the run's process group ({first_line(err)}); check the rendezvous "
            "address and that every node runs the same command"
        ) from None
    return current()


def finish() -> None:
    """Leave the process group (when one is initialised)."""
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def first_line(err: BaseException) -> str:
    """The first sentence of an error's first line, without the source location that gloo
    and c10d put in front (at most 160 characters)."""
    lines = str(err).strip().splitlines()
    text = re.sub(r"^(\[[^\]]*\]\s*)+", "", lines[0] if lines else "")
    text = text.split(". ")[0].rstrip(".")
    return (text or type(err).__name__)[:160]


@contextmanager
def collective(group: Group, what: str) -> Iterator[None]:
    """Around a collective operation: a failure (a process died, or the timeout passed) is a
    :class:`PeerLost` that says so in one line."""
    try:
        yield
    except RuntimeError as err:
        raise PeerLost(
            f"rank {group.rank} of {group.world_size}: another process of the run died or "
            f"stopped answering during {what} ({first_line(err)})"
        ) from None


def all_reduce_sum(group: Group, t: Tensor, what: str = "a gradient all-reduce") -> Tensor:
    """Sum ``t`` over the processes, in place (every process gets the same values); ``t``
    itself is returned. A no-op for one process."""
    if group.active:
        with collective(group, what):
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
    return t


def broadcast(group: Group, tensors: list[Tensor], what: str) -> None:
    """Copy rank 0's ``tensors`` into every other process's, in place (``what`` names them)."""
    if not group.active:
        return
    with collective(group, f"the broadcast of {what}"), torch.no_grad():
        for t in tensors:
            torch.distributed.broadcast(t, src=0)


def any_of(group: Group, flag: bool, what: str = "an agreement to stop") -> bool:
    """Whether ``flag`` holds on any process (every process gets the same answer): decisions
    that each takes from its own clock or signals, and that all must take together."""
    if not group.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=group.device)
    return bool(all_reduce_sum(group, t, what).item() > 0)


def settings_digest(settings: Any) -> int:
    """A 63-bit digest of ``settings`` (anything JSON can write, keys sorted)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def check_same(group: Group, settings: Any, what: str) -> None:
    """Raise :class:`ConfigError` on every process unless all of them give equal ``settings``
    (compared by :func:`settings_digest`, gathered from each rank); ``what`` names them."""
    if not group.active:
        return
    mine = torch.tensor([settings_digest(settings)], dtype=torch.int64, device=group.device)
    gathered = [torch.zeros_like(mine) for _ in range(group.world_size)]
    with collective(group, f"the check of the {what}"):
        torch.distributed.all_gather(gathered, mine)
    digests = [int(t) for t in gathered]
    if len(set(digests)) > 1:
        odd = next(r for r, d in enumerate(digests) if d != digests[0])
        raise ConfigError(
            f"the {what} differ between the processes of the run (rank {odd} has other "
            f"{what} than rank 0); start every process with the same command and data"
        )
