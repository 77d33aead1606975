"""A sequence VAE of strings (model kind ``"text"``); strings are rows of token ids as
:mod:`vaekit.tokenizer` makes them, and the vocabulary is part of the config.

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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, kl_divergence
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..config import Constraints, check_count, check_settings, configure, fraction, positive_int
from ..distributions import diag_normal, rsample, soft_clamp
from ..errors import ConfigError, DataError
from ..estimators import as_input
from ..likelihoods import Likelihood
from ..objectives import Terms
from ..priors import PRIORS
from ..tokenizer import END, PAD, START, UNK, Tokenizer, lengths
from .base import Capabilities, Model, graph_in_training
from .registry import register_model
from .vae import ENCODER_CONSTRAINTS

#: Priors of the text model: factorised Gaussians, whose KL splits by latent dimension.
TEXT_PRIORS = ("standard_normal", "learned_gaussian")


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
        check_settings(self, TEXT_CONSTRAINTS)

    @property
    def data_dim(self) -> int:
        """Token positions per string (T)."""
        return self.data_shape[0]

    @property
    def max_len(self) -> int:
        """Most tokens a string may have (T - 1, the end token aside)."""
        return self.data_shape[0] - 1


def _vocab(names: tuple[str, str], values: tuple[tuple[str, ...], str]) -> None:
    vocab, level = values
    Tokenizer(vocab, level)  # checks level and duplicates
    if any(t == "" or (level == "char" and len(t) != 1) for t in vocab):
        raise ConfigError("a character-level vocab holds single characters only")


def _positions(name: str, value: tuple[int, ...]) -> None:
    if len(value) != 1 or value[0] < 2:
        raise ConfigError(f"text data_shape must be [T] with T >= 2 positions, got {list(value)}")


def _gru_widths(name: str, value: tuple[int, ...]) -> None:
    if not value or any(h <= 0 for h in value) or len(set(value)) != 1:
        raise ConfigError(
            f"hidden must list one positive GRU width per layer, all equal; got {list(value)}"
        )


def _nats(name: str, value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be zero or more nats, got {value}")


def _categorical(name: str, value: str) -> None:
    if value != "categorical":
        raise ConfigError(f"the text model's likelihood is 'categorical', got {value!r}")


def _text_prior(name: str, value: str) -> None:
    if value not in TEXT_PRIORS:
        raise ConfigError(
            f"prior {value!r} does not suit the text model (free bits need a factorised "
            f"Gaussian); choose one of {', '.join(TEXT_PRIORS)}"
        )


TEXT_CONSTRAINTS: Constraints = {
    ("vocab", "level"): _vocab,
    "data_shape": _positions,
    "latent_dim": positive_int,
    "embed_dim": positive_int,
    "hidden": _gru_widths,
    "word_dropout": fraction,
    "free_bits": _nats,
    "likelihood": _categorical,
    "prior": _text_prior,
    **ENCODER_CONSTRAINTS,
}


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

    @graph_in_training
    def encode(self, x: Tensor, condition: Any = None) -> Distribution:
        """q(z|x) for ids (B, T): a diagonal Gaussian, batch shape (B,), event (latent_dim,).
        The model is not conditional: ``condition`` must be None."""
        ids = self._check(x)
        self.condition(condition, ids.shape[0])
        c = self.config
        emb = self.embedding(ids)  # (B, T, E)
        n_tokens = lengths(ids).cpu()
        packed = pack_padded_sequence(emb, n_tokens, batch_first=True, enforce_sorted=False)
        _, h_n = self.encoder(packed)  # (layers * 2, B, H)
        h_last = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # last layer, both directions (B, 2H)
        loc, raw = self.to_q(h_last).chunk(2, dim=-1)
        logvar = soft_clamp(raw, c.encoder_min_logvar, c.encoder_max_logvar)
        return diag_normal(loc, logvar)

    @graph_in_training
    def decode(self, z: Tensor, condition: Any = None) -> SequenceDistribution:
        """p(x|z) for z (..., latent_dim): batch shape (...), event shape (T,). z is read in the
        model's dtype, on its device. ``condition`` must be None."""
        self.condition(condition, 1)
        return SequenceDistribution(self, self._latents(z))

    def forward(
        self,
        x: Tensor,
        k: int = 1,
        generator: torch.Generator | None = None,
        condition: Any = None,
    ) -> Terms:
        """Bound terms for ids ``x`` (B, T) with ``k`` samples each: log p(x|z), log p(z),
        log q(z|x) of shape (k, B) and the closed-form KL (B,) where the prior has one.

        In training mode the KL carries free bits (see :class:`TextVAEConfig`), and the decoder
        inputs word dropout; in eval mode both are off and the terms are the model's own.
        """
        qz_x = self.encode(x, condition)
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
        x = as_input(x)
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
    def sample(self, n: int, *, mean: bool = True, condition: Any = None) -> Tensor:
        """``n`` strings as ids (n, T) for z ~ p(z): greedy (``mean=True``) or drawn."""
        self.condition(condition, n)
        z = self.pz().sample((check_count("n", n),))
        px_z = self.decode(z)
        return px_z.mean if mean else px_z.sample()

    @torch.no_grad()
    def reconstruct(self, x: Tensor, condition: Any = None) -> Tensor:
        """The greedy string at z = the posterior mean of q(z|x); ids of ``x``'s shape."""
        return self.decode(self.encode(x, condition).mean).mean

    def log_likelihood(
        self, x: Tensor, k: int = 1000, *, seed: int = 0, condition: Any = None
    ) -> Tensor:
        """Importance-weighted log p(x) in nats per string (N,)."""
        return super().log_likelihood(x, k, seed=seed, condition=condition)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(refinable=True, tokens=True)

    @property
    def free_bits(self) -> float:
        """The config's ``free_bits``: nats per latent dimension (see :class:`TextVAEConfig`)."""
        return self.config.free_bits


def interpolate(model: TextVAE, a: str, b: str, steps: int = 8) -> list[str]:
    """Greedy strings at ``steps`` evenly spaced points from E[z|a] to E[z|b] (ends included)."""
    with torch.no_grad():
        mu = model.encode(model.ids([a, b], "the interpolation's ends")).mean
        t = torch.linspace(0, 1, steps, dtype=mu.dtype, device=mu.device)[:, None]
        z = (1 - t) * mu[0] + t * mu[1]  # (steps, latent_dim)
        return model.texts(model.decode(z).mean)
