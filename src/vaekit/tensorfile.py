"""safetensors files written tensor by tensor, straight from each tensor's memory.

``safetensors.torch.save`` builds the whole file in memory, twice (Rust's buffer, then Python's
bytes), and a failed allocation there aborts the process. :func:`write_tensors` writes the same
bytes (the header, then each tensor's data in safetensors' order) into an open file without a
copy of the whole, so writing a checkpoint needs no memory beyond its tensors. safetensors reads
the result like its own: the layout is the format's (8-byte little-endian header length, the
header's JSON padded with spaces to a multiple of 8, then the data, largest items first so that
each tensor starts aligned to its item size).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from .errors import CheckpointError
from .files import atomic_write
from .memory import available_memory, is_out_of_memory, size_text

#: torch dtype -> safetensors' name, in the order safetensors lays the data out (first first).
DTYPES: dict[torch.dtype, str] = {
    torch.uint64: "U64",
    torch.int64: "I64",
    torch.float64: "F64",
    torch.float32: "F32",
    torch.uint32: "U32",
    torch.int32: "I32",
    torch.bfloat16: "BF16",
    torch.float16: "F16",
    torch.uint16: "U16",
    torch.int16: "I16",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_RANK = {dtype: i for i, dtype in enumerate(DTYPES)}


def _order(tensors: dict[str, torch.Tensor]) -> list[str]:
    """The tensors' names in the order of their data in the file: by dtype (widest first, as
    safetensors), then by name."""
    for name, t in tensors.items():
        if t.dtype not in DTYPES:
            raise ValueError(f"tensor {name!r} has dtype {t.dtype}, which safetensors cannot hold")
    return sorted(tensors, key=lambda name: (_RANK[tensors[name].dtype], name))


def header_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> bytes:
    """The file's first part: its length (8 bytes) and the JSON header, padded with spaces to a
    multiple of 8 bytes. Reads only the tensors' shapes and dtypes."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(sorted(metadata.items()))
    offset = 0
    for name in _order(tensors):
        t = tensors[name]
        size = t.numel() * t.element_size()
        header[name] = {
            "dtype": DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text


def file_size(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> int:
    """Bytes of the file :func:`write_tensors` writes."""
    data = sum(t.numel() * t.element_size() for t in tensors.values())
    return len(header_bytes(tensors, metadata)) + data


def write_tensors(
    f: BinaryIO, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write ``tensors`` (CPU, contiguous; any shapes) and the string table ``metadata`` to the
    open binary file ``f`` in safetensors format, each tensor's bytes straight from its memory."""
    if sys.byteorder != "little":  # safetensors stores little-endian data
        raise ValueError("writing safetensors files needs a little-endian machine")
    f.write(header_bytes(tensors, metadata))
    for name in _order(tensors):
        t = tensors[name]
        if t.device.type != "cpu" or not t.is_contiguous():
            raise ValueError(f"tensor {name!r} must be contiguous and on the CPU to be written")
        if t.numel():
            f.write(memoryview(t.detach().reshape(-1).view(torch.uint8).numpy()))


def on_cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` as :func:`write_tensors` takes them: those on another device moved to the CPU,
    the others as they are (no copy)."""
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}


def tensor_bytes(obj: Any, elsewhere: bool = False) -> int:
    """Bytes of the tensors in ``obj`` (a tensor, or nested dicts, lists and tuples of them);
    ``elsewhere``: only of those not on the CPU."""
    if isinstance(obj, torch.Tensor):
        keep = not elsewhere or obj.device.type != "cpu"
        return obj.numel() * obj.element_size() if keep else 0
    if isinstance(obj, dict):
        return sum(tensor_bytes(v, elsewhere) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(tensor_bytes(v, elsewhere) for v in obj)
    return 0


def write_safetensors(
    file: Path,
    contents: Callable[[], tuple[dict[str, torch.Tensor], dict[str, str]]],
    where: str,
    need: int,
) -> None:
    """Write the tensors and string table that ``contents()`` gives into ``file``, atomically and
    tensor by tensor. ``need``: the bytes of memory ``contents`` allocates (copies it makes).

    A write that needs more memory than is free is refused before ``contents`` runs, and an
    allocation that fails while it runs or writes gives the same :class:`CheckpointError`: "out
    of memory while writing FILE (needs X, Y free)", with the file as it was. Another OSError
    is a :class:`CheckpointError` that starts with ``where``."""
    have = available_memory()
    if have is not None and need > have:
        raise out_of_memory(file, need, have)
    try:
        tensors, metadata = contents()
        atomic_write(file, lambda f: write_tensors(f, tensors, metadata))
        return
    except OSError as err:
        if not is_out_of_memory(err):
            raise CheckpointError(f"{where}: {err.strerror or err}") from None
    except (MemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
    raise out_of_memory(file, need)  # here, what the failed write allocated is freed


def out_of_memory(file: Path, need: int, have: int | None = None) -> CheckpointError:
    """The one-line error of a write of ``file`` that ran out of memory, with the ``need`` bytes
    it takes and the bytes free (``have``; None: as free now)."""
    have = available_memory() if have is None else have
    free = "" if have is None else f", {size_text(have)} free"
    return CheckpointError(
        f"out of memory while writing {str(file)!r} (needs {size_text(need)}{free}); the file "
        "there is unchanged: free memory, or make the model smaller"
    )
