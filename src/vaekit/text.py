"""Text: a tokenizer, text-file data sets and a sequence VAE (model kind ``"text"``).

A string becomes a row of token ids: its characters (or words, with ``level="word"``), then the
end token, then padding up to a fixed length T = max_len + 1. Ids 0-3 are the special tokens
``<pad>``, ``<end>``, ``<start>`` and ``<unk>``; the vocabulary (the other tokens, in id order) is
part of the model's config, so config.json restores it with the weights (no pickle).

:class:`TextVAE` (Bowman et al. 2016, "Generating sentences from a continuous space") encodes a
string with a bidirectional GRU into a diagonal Gaussian q(z|x) and decodes with a GRU whose first
state comes from z and whose every input carries z. p(x|z) is categorical per token, each
conditioned on the tokens before it, over strings of at most max_len tokens: padding is masked,
``<pad>`` and ``<start>`` are never produced, and the last position can only be ``<end>``, so
p(x|z) sums to one over all such strings.

The usual failure of text VAEs is a decoder strong enough to ignore z (KL near 0, no active
units). Three remedies are settings: KL warm-up (``TrainConfig.warmup_steps``), free bits
(``free_bits``: in training, a latent dimension whose batch-average KL is below this many nats
costs exactly that much and gets no gradient from the KL, Kingma et al. 2016) and word dropout
(``word_dropout``: in training, each decoder input token is replaced by ``<unk>`` with this
probability, so the decoder must lean on z). Evaluation reports KL and active units.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, kl_divergence
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .config import check_fields, configure
from .data import Dataset
from .errors import ConfigError, DataError
from .evaluate import keeps_mode
from .likelihoods import Likelihood, soft_clamp
from .model import Model, check_count, register_model, rsample
from .objectives import Terms
from .priors import PRIORS

if TYPE_CHECKING:
    pass

PAD, END, START, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<end>", "<start>", "<unk>")
LEVELS = ("char", "word")
#: Longest line, in tokens, that a text data set may hold.
MAX_TOKENS = 256
#: Most frequent words kept in a word-level vocabulary; rarer ones become ``<unk>``.
MAX_WORDS = 20_000
#: Priors of the text model: factorised Gaussians, whose KL splits by latent dimension.
TEXT_PRIORS = ("standard_normal", "learned_gaussian")


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


# -- data -------------------------------------------------------------------------------------


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
    from .data import split

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


def retokenize(ds: TextDataset, config: Any) -> tuple[TextDataset, Any]:
    """The data set and the text model's config made to agree. The file was read at the data
    set's defaults; a config that asks for another ``level`` (``--set level=word``) gets the
    lines read again at that level, with the vocabulary and length that come from them, and one
    that names its own ``vocab`` or ``data_shape`` gets the lines encoded with those."""
    if not isinstance(config, TextVAEConfig):
        raise ConfigError(
            f"{ds.name!r} is text: train it with the text model (kind 'text'), not "
            f"{type(config).__name__}"
        )
    made = ds.defaults["model"]
    if config.level != made["level"]:
        ds = load_text(ds.source, 0, level=config.level)
        made = ds.defaults["model"]
        vocab, shape = tuple(made["vocab"]), tuple(made["data_shape"])
        return ds, replace(config, vocab=vocab, data_shape=shape)
    if config.vocab != tuple(made["vocab"]) or config.data_shape != ds.data_shape:
        tok = Tokenizer(config.vocab, config.level)
        ds = load_text(ds.source, 0, tokenizer=tok, length=config.data_dim)
    return ds, config


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


# -- the distribution p(x|z) ------------------------------------------------------------------


def allowed_tokens(length: int, vocab_size: int, device: torch.device | None = None) -> Tensor:
    """Which token each position may hold, (length, V) bool: never ``<pad>`` or ``<start>``,
    and only ``<end>`` at the last position."""
    allowed = torch.ones((length, vocab_size), dtype=torch.bool, device=device)
    allowed[:, PAD] = False
    allowed[:, START] = False
    allowed[-1, :] = False
    allowed[-1, END] = True
    return allowed


def masked_log_softmax(logits: Tensor, length: int) -> Tensor:
    """log-probabilities (..., t, V) of logits at positions 0..t-1 of strings of ``length``
    positions, with the tokens :func:`allowed_tokens` forbids at -inf."""
    t, v = logits.shape[-2:]
    allowed = allowed_tokens(length, v, logits.device)[:t]
    return torch.log_softmax(logits.masked_fill(~allowed, -math.inf), dim=-1)


def sequence_log_prob(logits: Tensor, x: Tensor, length: int | None = None) -> Tensor:
    """log p(x) (...,) of ids ``x`` (..., t) under per-position ``logits`` (..., t, V), where
    position i's logits are those of token i given the tokens before it. Padding is masked out;
    the end token counts. ``length``: positions in a full string (default t)."""
    logp = masked_log_softmax(logits, length or x.shape[-1])
    ids = x.to(torch.int64)
    picked = logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1)  # (..., t)
    return torch.where(ids != PAD, picked, torch.zeros_like(picked)).sum(-1)


class TokenLikelihood(Likelihood):
    """The likelihood slot of a :class:`TextVAE`: categorical per token over ``vocab_size``
    ids, computed by the model's decoder (see :class:`SequenceDistribution`), not from
    parameters handed in; it tells the training loop what the data is."""

    support = "tokens"

    def __init__(self, data_shape: tuple[int, ...], vocab_size: int) -> None:
        super().__init__(data_shape)
        self.n_params = vocab_size


class SequenceDistribution(Distribution):
    """p(x|z) of a :class:`TextVAE` for latents ``z`` (..., latent_dim): batch shape (...),
    event shape (T,) of token ids.

    ``log_prob(x)`` runs the decoder on x (teacher forcing); ``sample()`` draws strings token by
    token; ``mean`` is the greedy string (the most likely token at each step given those before),
    the string people look at, standing in for E[x|z], as ids (..., T) float32.
    """

    arg_constraints: ClassVar[dict] = {}

    def __init__(self, model: TextVAE, z: Tensor) -> None:
        self.model, self.z = model, z
        super().__init__(z.shape[:-1], torch.Size(model.config.data_shape), validate_args=False)

    def log_prob(self, x: Tensor) -> Tensor:
        return self.model._log_px_z(self.z, x)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        z = self.z.expand(*sample_shape, *self.z.shape)
        return self.model._generate(z, greedy=False)

    @property
    def mean(self) -> Tensor:
        return self.model._generate(self.z, greedy=True)

    @property
    def mode(self) -> Tensor:
        return self.mean


# -- the model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextVAEConfig:
    """A sequence VAE over strings; saved as the ``model`` table of config.json.

    vocab: the tokens after the four specials (``<pad>``, ``<end>``, ``<start>``, ``<unk>``).
    level: "char" or "word" (how a string splits into tokens).
    data_shape: (T,): token positions per string, the end token included (max_len + 1).
    latent_dim: size of z. embed_dim: size of a token's embedding.
    hidden: GRU widths, one per layer (all equal); the encoder is bidirectional.
    word_dropout: in training, probability that a decoder input token is replaced by ``<unk>``.
    free_bits: in training, nats per latent dimension below which its batch-average KL is held
        at this value with no gradient (0 = off). They act on the ELBO's KL term: training with
        objective "iwae" needs free_bits=0.
    likelihood: "categorical" (per token). prior: one of :data:`TEXT_PRIORS`.
    encoder_min_logvar, encoder_max_logvar: soft bounds on q(z|x)'s log-variance.
    """

    vocab: tuple[str, ...] = tuple("abcdefghijklmnopqrstuvwxyz")
    level: str = "char"
    data_shape: tuple[int, ...] = (33,)
    latent_dim: int = 16
    embed_dim: int = 64
    hidden: tuple[int, ...] = (256,)
    word_dropout: float = 0.25
    free_bits: float = 0.125
    likelihood: str = "categorical"
    prior: str = "standard_normal"
    encoder_min_logvar: float = -12.0
    encoder_max_logvar: float = 6.0

    def __post_init__(self) -> None:
        check_fields(self)
        Tokenizer(self.vocab, self.level)  # checks level and duplicates
        if any(t == "" or (self.level == "char" and len(t) != 1) for t in self.vocab):
            raise ConfigError("a character-level vocab holds single characters only")
        if len(self.data_shape) != 1 or self.data_shape[0] < 2:
            raise ConfigError(
                f"text data_shape must be [T] with T >= 2 positions, got {list(self.data_shape)}"
            )
        for name in ("latent_dim", "embed_dim"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not self.hidden or any(h <= 0 for h in self.hidden) or len(set(self.hidden)) != 1:
            raise ConfigError(
                f"hidden must list one positive GRU width per layer, all equal; got "
                f"{list(self.hidden)}"
            )
        if not 0 <= self.word_dropout < 1:
            raise ConfigError(f"word_dropout must be in [0, 1), got {self.word_dropout}")
        if not (self.free_bits >= 0 and math.isfinite(self.free_bits)):
            raise ConfigError(f"free_bits must be zero or more nats, got {self.free_bits}")
        if self.likelihood != "categorical":
            raise ConfigError(
                f"the text model's likelihood is 'categorical', got {self.likelihood!r}"
            )
        if self.prior not in TEXT_PRIORS:
            raise ConfigError(
                f"prior {self.prior!r} does not suit the text model (free bits need a factorised "
                f"Gaussian); choose one of {', '.join(TEXT_PRIORS)}"
            )
        if not self.encoder_min_logvar < self.encoder_max_logvar:
            raise ConfigError("encoder_min_logvar must be below encoder_max_logvar")

    @property
    def data_dim(self) -> int:
        """Token positions per string (T)."""
        return self.data_shape[0]

    @property
    def max_len(self) -> int:
        """Most tokens a string may have (T - 1, the end token aside)."""
        return self.data_shape[0] - 1


@register_model
class TextVAE(Model):
    """Sequence VAE: GRU encoder to a diagonal Gaussian q(z|x), GRU decoder for p(x|z).

    Inputs ``x`` are token ids (B, T) (float, as data sets hold them; see :class:`Tokenizer`);
    latents ``z`` have shape (..., latent_dim). ``encode``, ``decode``, ``forward``, ``sample`` and
    ``reconstruct`` behave as :class:`vaekit.VAE`'s; ``texts`` turns ids into strings.
    """

    kind = "text"
    config_class: type = TextVAEConfig

    def __init__(
        self, config: TextVAEConfig | dict[str, Any] | None = None, /, **fields: Any
    ) -> None:
        super().__init__()
        self.config: TextVAEConfig = configure(TextVAEConfig, config, fields)
        c = self.config
        self.tokenizer = Tokenizer(c.vocab, c.level)
        v, h, layers = self.tokenizer.size, c.hidden[0], len(c.hidden)
        self.prior = PRIORS[c.prior](c.latent_dim)
        self.likelihood = TokenLikelihood(c.data_shape, v)
        self.embedding = nn.Embedding(v, c.embed_dim, padding_idx=PAD)
        self.encoder = nn.GRU(
            c.embed_dim, h, num_layers=layers, batch_first=True, bidirectional=True
        )
        self.to_q = nn.Linear(2 * h, 2 * c.latent_dim)
        self.to_h0 = nn.Linear(c.latent_dim, layers * h)
        self.decoder = nn.GRU(c.embed_dim + c.latent_dim, h, num_layers=layers, batch_first=True)
        self.to_logits = nn.Linear(h, v)

    # -- the model ---------------------------------------------------------------------------

    def pz(self) -> Distribution:
        """The prior p(z), event shape (latent_dim,)."""
        return self.prior()

    def encode(self, x: Tensor) -> Distribution:
        """q(z|x) for ids (B, T): a diagonal Gaussian, batch shape (B,), event (latent_dim,)."""
        ids = self._check(x)
        c = self.config
        emb = self.embedding(ids)  # (B, T, E)
        n_tokens = lengths(ids).cpu()
        packed = pack_padded_sequence(emb, n_tokens, batch_first=True, enforce_sorted=False)
        _, h_n = self.encoder(packed)  # (layers * 2, B, H)
        h_last = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # last layer, both directions (B, 2H)
        loc, raw = self.to_q(h_last).chunk(2, dim=-1)
        logvar = soft_clamp(raw, c.encoder_min_logvar, c.encoder_max_logvar)
        return Independent(Normal(loc, torch.exp(0.5 * logvar), validate_args=False), 1)

    def decode(self, z: Tensor) -> SequenceDistribution:
        """p(x|z) for z (..., latent_dim): batch shape (...), event shape (T,). z is read in the
        model's dtype, on its device."""
        return SequenceDistribution(self, self._latents(z))

    def forward(self, x: Tensor, k: int = 1, generator: torch.Generator | None = None) -> Terms:
        """Bound terms for ids ``x`` (B, T) with ``k`` samples each: log p(x|z), log p(z),
        log q(z|x) of shape (k, B) and the closed-form KL (B,) where the prior has one.

        In training mode the KL carries free bits (see :class:`TextVAEConfig`), and the decoder
        inputs word dropout; in eval mode both are off and the terms are the model's own.
        """
        qz_x = self.encode(x)
        z = rsample(qz_x, check_count("k", k), generator)  # (k, B, latent_dim)
        pz = self.pz()
        kl = None
        if self.prior.analytic_kl:
            base = qz_x.base_dist
            kl_dims = kl_divergence(base, pz.base_dist)  # (B, latent_dim)
            kl = self._free_bits(kl_dims).sum(-1)
        return Terms(
            log_px_z=self._log_px_z(z, x, generator),
            log_pz=pz.log_prob(z),
            log_qz_x=qz_x.log_prob(z),
            kl=kl,
        )

    def _free_bits(self, kl_dims: Tensor) -> Tensor:
        """KL per example and dim (B, L); in training, dims whose batch mean is below
        ``free_bits`` are replaced by that constant (no gradient)."""
        lam = self.config.free_bits
        if not (self.training and lam > 0):
            return kl_dims
        below = kl_dims.mean(0, keepdim=True) < lam  # (1, L)
        return torch.where(below, torch.full_like(kl_dims, lam), kl_dims)

    def _decoder_logits(self, z: Tensor, inputs: Tensor, n_tokens: Tensor) -> Tensor:
        """Logits (N, t, V) for latents (N, L), input ids (N, t) and tokens per row (N,)."""
        c = self.config
        layers, h = len(c.hidden), c.hidden[0]
        h0 = torch.tanh(self.to_h0(z)).reshape(-1, layers, h).transpose(0, 1).contiguous()
        emb = self.embedding(inputs)  # (N, t, E)
        emb = torch.cat([emb, z[:, None, :].expand(-1, emb.shape[1], -1)], dim=-1)
        packed = pack_padded_sequence(emb, n_tokens.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.decoder(packed, h0)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=inputs.shape[1])
        return self.to_logits(out)

    def _log_px_z(self, z: Tensor, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """log p(x|z) (...,) for z (..., L) and ids x (B, T) broadcasting against z's (...)."""
        ids = self._check(x)
        batch = torch.broadcast_shapes(z.shape[:-1], ids.shape[:1])
        t = int(lengths(ids).max())  # positions that any string of the batch reaches
        ids = ids[:, :t].expand(*batch, t).reshape(-1, t)  # (N, t)
        zf = z.expand(*batch, z.shape[-1]).reshape(-1, z.shape[-1])
        inputs = torch.cat([torch.full_like(ids[:, :1], START), ids[:, :-1]], dim=1)
        p = self.config.word_dropout
        if self.training and p > 0:
            u = torch.rand(inputs.shape, generator=generator, device=inputs.device)
            drop = (u < p) & (inputs != PAD)
            drop[:, 0] = False  # the start token stays
            inputs = torch.where(drop, torch.full_like(inputs, UNK), inputs)
        logits = self._decoder_logits(zf, inputs, lengths(ids))
        return sequence_log_prob(logits, ids, self.config.data_dim).reshape(batch)

    @torch.no_grad()
    def _generate(self, z: Tensor, *, greedy: bool) -> Tensor:
        """Strings for latents z (..., L) token by token: ids (..., T) float32. Greedy takes the
        most likely token at each step; otherwise each is drawn (torch's global RNG)."""
        c = self.config
        batch = z.shape[:-1]
        zf = z.reshape(-1, z.shape[-1])
        n, length = zf.shape[0], c.data_dim
        layers, h = len(c.hidden), c.hidden[0]
        state = torch.tanh(self.to_h0(zf)).reshape(n, layers, h).transpose(0, 1).contiguous()
        allowed = allowed_tokens(length, self.tokenizer.size, zf.device)
        token = torch.full((n,), START, dtype=torch.int64, device=zf.device)
        out = torch.zeros((n, length), dtype=torch.int64, device=zf.device)
        done = torch.zeros(n, dtype=torch.bool, device=zf.device)
        for i in range(length):
            emb = torch.cat([self.embedding(token), zf], dim=-1)[:, None]  # (n, 1, E + L)
            y, state = self.decoder(emb, state)
            logits = self.to_logits(y[:, 0]).masked_fill(~allowed[i], -math.inf)
            if greedy:
                token = logits.argmax(-1)
            else:
                token = torch.multinomial(torch.softmax(logits, -1), 1)[:, 0]
            out[:, i] = torch.where(done, torch.zeros_like(token), token)
            done |= token == END
            if bool(done.all()):
                break
        return out.to(torch.float32).reshape(*batch, length)

    def _check(self, x: Tensor) -> Tensor:
        """Ids (B, T) as int64 on the model's device, after checking shape and range."""
        t = self.config.data_dim
        x = torch.as_tensor(x)
        if x.ndim != 2 or x.shape[1] != t:
            raise DataError(
                f"input has example shape {tuple(x.shape[1:])} but the text model expects ({t},) "
                "token ids"
            )
        ids = x.to(self.device)
        if ids.is_floating_point():
            ids = ids.round().to(torch.int64)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.tokenizer.size):
            raise DataError(
                f"token ids must be in [0, {self.tokenizer.size}), got "
                f"[{int(ids.min())}, {int(ids.max())}]"
            )
        if ids.numel() and bool((ids[:, 0] == PAD).any()):
            raise DataError("a text example is empty (all padding); give at least one token")
        return ids

    # -- conveniences ------------------------------------------------------------------------

    def texts(self, ids: Tensor) -> list[str]:
        """The strings of ids (N, T)."""
        return self.tokenizer.decode(ids)

    def ids(self, lines: Sequence[str], where: str = "text") -> Tensor:
        """Token ids (N, T) of ``lines`` in this model's vocabulary."""
        return self.tokenizer.encode(lines, self.config.data_dim, where)

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = True) -> Tensor:
        """``n`` strings as ids (n, T) for z ~ p(z): greedy (``mean=True``) or drawn."""
        z = self.pz().sample((check_count("n", n),))
        px_z = self.decode(z)
        return px_z.mean if mean else px_z.sample()

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """The greedy string at z = the posterior mean of q(z|x); ids of ``x``'s shape."""
        return self.decode(self.encode(x).mean).mean

    def log_likelihood(self, x: Tensor, k: int = 1000, *, seed: int = 0) -> Tensor:
        """Importance-weighted log p(x) in nats per string (N,)."""
        from .evaluate import log_likelihood

        return log_likelihood(self, x, k=k, seed=seed)

    def _closed_form(self) -> bool:
        return False


# -- evaluation -------------------------------------------------------------------------------


@keeps_mode
@torch.no_grad()
def evaluate_text(
    model: TextVAE, x: Tensor, *, k: int = 100, seed: int = 0, progress: bool = False
) -> dict[str, Any]:
    """The report on strings ``x`` (N, T) of token ids (a tensor or numpy array) as plain
    numbers.

    Keys: ``n``, ``elbo`` and ``log_likelihood`` (nats per string, the latter a K-sample
    importance-weighted estimate), ``k``, ``tokens_per_string`` (end token included),
    ``bits_per_char`` (-log2 p(x) per token, end token included; ``bits_per_word`` instead for a
    word-level model, whose tokens are words; also as ``bits_per_dim``),
    ``kl`` (nats) and ``kl_per_dim``, ``active_units`` (Var_x E[z_d|x] > 0.01), and of the
    greedy reconstructions at E[z|x]: ``exact_reconstruction`` (fraction of strings) and
    ``token_accuracy`` (fraction of tokens, end token included).
    """
    from .evaluate import elbo, examples, latent_stats, log_likelihood

    x = examples(model, x)  # a numpy array of ids too, checked once
    model.eval()
    elbos = elbo(model, x, seed=seed)
    ll = log_likelihood(model, x, k=k, seed=seed, progress=progress)
    stats = latent_stats(model, x)
    n_tokens = lengths(x)
    exact = hits = 0
    for i in range(0, x.shape[0], 1000):
        xb = x[i : i + 1000].to(model.device)
        rec = model.reconstruct(xb)
        mask = xb != PAD
        hits += int(((rec == xb) & mask).sum())
        exact += int((rec == xb).all(-1).sum())
    total_tokens = int(n_tokens.sum())
    bits = float(-ll.sum() / (total_tokens * math.log(2)))
    return {
        "n": int(x.shape[0]),
        "elbo": float(elbos.mean()),
        "log_likelihood": float(ll.mean()),
        "k": int(k),
        "tokens_per_string": total_tokens / x.shape[0],
        f"bits_per_{'word' if model.config.level == 'word' else 'char'}": bits,
        "bits_per_dim": bits,
        "kl": float(stats["kl_per_dim"].sum()),
        "kl_per_dim": [round(float(v), 6) for v in stats["kl_per_dim"]],
        "active_units": int((stats["activity"] > 0.01).sum()),
        "exact_reconstruction": exact / x.shape[0],
        "token_accuracy": hits / total_tokens,
    }


def interpolate(model: TextVAE, a: str, b: str, steps: int = 8) -> list[str]:
    """Greedy strings at ``steps`` evenly spaced points from E[z|a] to E[z|b] (ends included)."""
    with torch.no_grad():
        mu = model.encode(model.ids([a, b], "the interpolation's ends")).mean
        t = torch.linspace(0, 1, steps, dtype=mu.dtype, device=mu.device)[:, None]
        z = (1 - t) * mu[0] + t * mu[1]  # (steps, latent_dim)
        return model.texts(model.decode(z).mean)
