"""How much memory there is, and how to say it: the free memory a new allocation can use (on the
host, or on a CUDA device), sizes for a person, and whether an error is an out-of-memory.

The host's free memory is the smallest of Linux's ``MemAvailable``, what the process's
address-space limit (``ulimit -v``, ``RLIMIT_AS``) leaves beside what it already maps, and what
the memory limit of its cgroup (a container's, v1 or v2, the tightest of its cgroup and their
ancestors) leaves beside what the cgroup uses: under such a limit an allocation past it fails
however much the machine has. A CUDA device's free memory is
what ``torch.cuda.mem_get_info`` reports for it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

#: A cgroup v1 limit at or above this means "no limit" (the kernel's is 2^63 rounded to a page).
_NO_LIMIT = 2**60


def available_memory(device: str | torch.device | None = None) -> int | None:
    """Bytes that a new allocation on ``device`` (None or a CPU: the host) can use now; None where
    the system does not say. For a CUDA device: the device's free memory (``mem_get_info``)."""
    if device is not None and torch.device(device).type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(torch.device(device))
        except (RuntimeError, AssertionError, ValueError):
            return None
        return int(free)
    known = [n for n in (_mem_available(), _address_space_left(), cgroup_left()) if n is not None]
    return min(known) if known else None


def cgroup_left(root: Path = Path("/")) -> int | None:
    """Bytes the memory limits of this process's cgroups leave: for each cgroup on the way from
    the process's own up to the root (v2's ``memory.max``, or v1's ``memory.limit_in_bytes``), the
    limit less what the cgroup uses, page cache that can be dropped (``inactive_file``) counted
    as free; the smallest of them. None where no cgroup sets a limit, or none can be read.
    ``root``: where the file system's root is (``/proc/self/cgroup`` and ``/sys/fs/cgroup``
    under it)."""
    try:
        lines = (root / "proc/self/cgroup").read_text(encoding="ascii").splitlines()
    except (OSError, ValueError):
        return None
    found: list[int] = []
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        hierarchy, controllers, path = fields
        if hierarchy == "0" and not controllers:  # v2: one hierarchy for every controller
            base, names = root / "sys/fs/cgroup", ("memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):
            base = root / "sys/fs/cgroup/memory"
            names = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        else:
            continue
        parts = [p for p in path.split("/") if p and p != ".."]
        for depth in range(len(parts), -1, -1):
            left = _cgroup_level(base.joinpath(*parts[:depth]), *names)
            if left is not None:
                found.append(left)
    return min(found) if found else None


def _cgroup_level(folder: Path, limit_file: str, usage_file: str, cache_key: str) -> int | None:
    """What one cgroup's memory limit leaves (see :func:`cgroup_left`), None without one."""
    try:
        text = (folder / limit_file).read_text(encoding="ascii").strip()
        if text == "max":
            return None
        limit = int(text)
        if limit >= _NO_LIMIT:
            return None
        usage = int((folder / usage_file).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    cache = 0
    try:
        for line in (folder / "memory.stat").read_text(encoding="ascii").splitlines():
            key, _, value = line.partition(" ")
            if key == cache_key:
                cache = int(value)
    except (OSError, ValueError):
        pass
    return max(0, limit - usage + min(cache, usage))


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
