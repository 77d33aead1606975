"""Text files as data sets: one example per line, as rows of token ids."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import DataError
from ..tokenizer import MAX_TOKENS, Tokenizer
from .dataset import Dataset, split


@dataclass
class TextDataset(Dataset):
    """A :class:`vaekit.data.Dataset` of token ids that also keeps each split's lines."""

    texts: dict[str, list[str]] = field(default_factory=dict)


def read_lines(path: str | Path, at_least: int = 3) -> list[str]:
    """The non-empty lines of a UTF-8 text file, without their line endings (or a byte-order
    mark at its start); fewer than ``at_least`` is a :class:`DataError`."""
    return numbered_lines(path, at_least)[1]


def numbered_lines(path: str | Path, at_least: int = 3) -> tuple[list[int], list[str]]:
    """(line numbers in the file, counted from 1; lines) of :func:`read_lines`."""
    path = Path(path)
    where = repr(str(path))
    if not path.is_file():
        raise DataError(f"text file {where} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")  # Notepad's UTF-8 starts with a BOM
    except UnicodeDecodeError as err:
        raise DataError(
            f"{where} is not UTF-8 text (byte {err.start}); convert it, e.g. with iconv"
        ) from None
    except OSError as err:
        raise DataError(f"cannot read {where}: {err.strerror or err}") from None
    every = [line.rstrip("\r") for line in text.split("\n")]
    numbers = [i + 1 for i, line in enumerate(every) if line.strip()]
    if len(numbers) < at_least:
        raise DataError(
            f"{where} holds {len(numbers)} non-empty lines; it needs one example per line and at "
            f"least {at_least}"
        )
    return numbers, [every[i - 1] for i in numbers]


def load_text(
    path: str | Path,
    seed: int = 0,
    *,
    level: str = "char",
    tokenizer: Tokenizer | None = None,
    length: int | None = None,
) -> Dataset:
    """A text file with one example per line, split 80/10/10 under ``seed``, as token ids.

    The vocabulary and the length T (the longest line plus the end token, at most
    ``MAX_TOKENS + 1``) come from the file, unless ``tokenizer`` and ``length`` are given (a
    trained model's, to read other text the way it was trained). ``Dataset.texts`` holds the lines
    of each split; ``defaults`` configure a :class:`TextVAE` for them.
    """
    path = Path(path)
    where = repr(str(path))
    numbers, lines = numbered_lines(path)
    tok = tokenizer or Tokenizer.build(lines, level)
    counts = [len(tok.tokens(line)) for line in lines]
    longest = max(counts)
    if length is None:
        if longest > MAX_TOKENS:
            i = counts.index(longest)
            raise DataError(
                f"line {numbers[i]} of {where} has {longest} {tok._unit(longest)}; text examples "
                f"may have at most {MAX_TOKENS}: shorten or split it"
            )
        length = longest + 1
    ids = tok.encode(lines, length, where)
    parts, _ = split(torch.arange(len(lines)), None, (0.1, 0.1), seed)
    train, valid, test = (ids[p] for p in parts)
    return TextDataset(
        path.stem,
        train,
        valid,
        test,
        binary=False,
        defaults=text_defaults(tok, length, len(train)),
        source=str(path),
        media={"kind": "text"},
        texts={
            name: [lines[i] for i in part.tolist()]
            for name, part in zip(("train", "valid", "test"), parts, strict=True)
        },
    )


def text_defaults(tok: Tokenizer, length: int, n_train: int) -> dict[str, dict[str, Any]]:
    """Settings for a text data set: the text model for its vocabulary and length, and KL
    warm-up over about two epochs (at least 500 steps)."""
    batch = 64
    return {
        "model": {
            "kind": "text",
            "vocab": list(tok.vocab),
            "level": tok.level,
            "data_shape": [length],
            "likelihood": "categorical",
        },
        "train": {
            "epochs": 20,
            "batch_size": batch,
            "lr": 1e-3,
            "grad_clip": 5.0,
            "warmup_steps": max(500, 2 * math.ceil(n_train / batch)),
        },
    }
