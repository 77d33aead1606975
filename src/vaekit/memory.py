"""How much memory there is, and how to say it: the free memory a new allocation can use (on the
host, or on a CUDA device), sizes for a person, and whether an error is an out-of-memory.

The host's free memory is the smaller of Linux's ``MemAvailable`` and what the process's
address-space limit (``ulimit -v``, ``RLIMIT_AS``) leaves beside what it already maps: under such
a limit an allocation past it fails however much the machine has. A CUDA device's free memory is
what ``torch.cuda.mem_get_info`` reports for it.
"""

from __future__ import annotations

import os

import torch


def available_memory(device: str | torch.device | None = None) -> int | None:
    """Bytes that a new allocation on ``device`` (None or a CPU: the host) can use now; None where
    the system does not say. For a CUDA device: the device's free memory (``mem_get_info``)."""
    if device is not None and torch.device(device).type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(torch.device(device))
        except (RuntimeError, AssertionError, ValueError):
            return None
        return int(free)
    free = _mem_available()
    room = _address_space_left()
    if free is None or room is None:
        return room if free is None else free
    return min(free, room)


def _mem_available() -> int | None:
    """Linux's MemAvailable (memory a new program can have without swapping), else the free
    physical pages; None where neither is known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _address_space_left() -> int | None:
    """Bytes the address-space limit (RLIMIT_AS) leaves to this process beyond what it maps
    now (VmSize); None without a limit, or where it cannot be read."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, OSError, ValueError):
        return None
    if limit == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return max(0, limit - int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    return None


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` says an allocation failed: a MemoryError, torch's OutOfMemoryError (CUDA),
    the RuntimeError of torch's CPU allocator, or an OSError ENOMEM."""
    if isinstance(err, MemoryError | torch.OutOfMemoryError):
        return True
    if isinstance(err, OSError):
        return err.errno == 12  # ENOMEM
    text = str(err)
    return isinstance(err, RuntimeError) and (
        "can't allocate memory" in text or "not enough memory" in text
    )


def size_text(n: float) -> str:
    """Bytes for a person: 512 bytes, 3.2 GiB, 1.0e+27 bytes past a pebibyte."""
    if n < 1024:
        return f"{int(n)} bytes"
    for unit, scale in (("KiB", 2**10), ("MiB", 2**20), ("GiB", 2**30), ("TiB", 2**40)):
        if n < 1024 * scale:
            return f"{n / scale:.1f} {unit}"
    return f"{float(n):.1e} bytes"
