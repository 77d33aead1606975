"""Strings <-> rows of token ids: the codec of the text model and of text data sets.

A string becomes a row of token ids: its characters (or words, with ``level="word"``), then the
end token, then padding up to a fixed length T = max_len + 1. Ids 0-3 are the special tokens
``<pad>``, ``<end>``, ``<start>`` and ``<unk>``; the vocabulary (the other tokens, in id order) is
part of the text model's config, so config.json restores it with the weights (no pickle).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor

from .errors import ConfigError, DataError

PAD, END, START, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<end>", "<start>", "<unk>")
LEVELS = ("char", "word")
#: Longest line, in tokens, that a text data set may hold.
MAX_TOKENS = 256
#: Most frequent words kept in a word-level vocabulary; rarer ones become ``<unk>``.
MAX_WORDS = 20_000

# -- tokenizer --------------------------------------------------------------------------------


class Tokenizer:
    """Strings <-> rows of token ids (float32, as every vaekit data set) of a fixed length.

    vocab: the tokens after the four specials, in id order (id = position + 4).
    level: "char" (each character a token) or "word" (whitespace-separated words, joined by one
        space when decoded).
    """

    def __init__(self, vocab: Sequence[str], level: str = "char") -> None:
        if level not in LEVELS:
            raise ConfigError(f"unknown text level {level!r}; choose one of {', '.join(LEVELS)}")
        self.vocab = tuple(vocab)
        self.level = level
        self.ids = {t: i + len(SPECIALS) for i, t in enumerate(self.vocab)}
        if len(self.ids) != len(self.vocab):
            raise ConfigError("the text vocabulary lists a token twice; each must appear once")

    @classmethod
    def build(cls, lines: Sequence[str], level: str = "char", max_words: int = MAX_WORDS):
        """The vocabulary of ``lines``: every character (sorted), or the ``max_words`` most
        frequent words (ties in sorted order)."""
        if level == "char":
            return cls(sorted({c for line in lines for c in line}), level)
        counts = Counter(w for line in lines for w in line.split())
        ranked = sorted(counts, key=lambda w: (-counts[w], w))[:max_words]
        return cls(sorted(ranked), level)

    @property
    def size(self) -> int:
        """Number of token ids, specials included."""
        return len(SPECIALS) + len(self.vocab)

    def tokens(self, line: str) -> list[str]:
        return list(line) if self.level == "char" else line.split()

    def encode(self, lines: Sequence[str], length: int, where: str = "text") -> Tensor:
        """Token ids (N, length) float32: tokens, ``<end>``, then ``<pad>`` (0).

        Unknown tokens become ``<unk>``. A line with more than ``length - 1`` tokens is a
        :class:`DataError` naming it.
        """
        out = torch.zeros((len(lines), length), dtype=torch.float32)
        for i, line in enumerate(lines):
            toks = self.tokens(line)
            if len(toks) > length - 1:
                raise DataError(
                    f"line {i + 1} of {where} has {len(toks)} {self._unit(len(toks))} but the "
                    f"model takes at most {length - 1}; shorten or split it ({line[:40]!r})"
                )
            ids = [self.ids.get(t, UNK) for t in toks] + [END]
            out[i, : len(ids)] = torch.tensor(ids, dtype=torch.float32)
        return out

    def decode(self, ids: Tensor) -> list[str]:
        """Strings of rows of ids (N, T): tokens up to the first ``<end>``; ``<unk>`` shows as
        U+FFFD; ``<pad>`` and ``<start>`` are skipped."""
        rows = ids.detach().to("cpu", torch.int64).tolist()
        sep = "" if self.level == "char" else " "
        out = []
        for row in rows:
            toks = []
            for t in row:
                if t == END:
                    break
                if t == UNK:
                    toks.append("\ufffd")
                elif t >= len(SPECIALS) and t < self.size:
                    toks.append(self.vocab[t - len(SPECIALS)])
            out.append(sep.join(toks))
        return out

    def _unit(self, n: int) -> str:
        word = "character" if self.level == "char" else "word"
        return word if n == 1 else word + "s"


def lengths(x: Tensor) -> Tensor:
    """Tokens per row of ids (B, T), the end token included: (B,) int64."""
    return (x != PAD).sum(-1).to(torch.int64)
