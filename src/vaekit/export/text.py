"""The text model's GRUs for ONNX, without packed sequences.

The model runs its GRUs on packed sequences (each string at its own length). The graphs here
compute the same values on padded rows instead, so they need no sequence lengths at trace time:

- encoder: each layer runs a forward GRU on the rows as they are and a backward GRU on each
  string reversed within its length (padding stays at the end), then puts the backward outputs
  back in order; the final states are the forward output at the last token and the backward
  output at the first. Ids (B, T) int64 -> mean, logvar of q(z|x).
- decoder: teacher forcing. Inputs are <start> then ids[:, :-1]; the GRU is causal, so row i
  of the output depends only on the tokens before position i. Ids (B, T) and z -> log_probs
  (B, T, V), log p(x_i = v | x_<i, z) with the tokens the model never produces at -inf. Rows up
  to the number of tokens given are meaningful (row n is the next token after n tokens, what
  generation reads); later rows are not.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..distributions import soft_clamp
from ..models.text import masked_log_softmax
from ..tokenizer import END, PAD, START
from .graphs import Call, Draw, Graph, Port, Unexportable, draw_normal


def _direction(gru: nn.GRU, layer: int, suffix: str) -> nn.GRU:
    """One layer and direction of ``gru`` as a one-layer unidirectional GRU (weights copied)."""
    width = gru.weight_ih_l0.shape[1] if layer == 0 else 2 * gru.hidden_size
    one = nn.GRU(width, gru.hidden_size, batch_first=True).to(gru.weight_ih_l0.dtype)
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    state = {f"{n}_l0": getattr(gru, f"{n}_l{layer}{suffix}").detach().clone() for n in names}
    one.load_state_dict(state)
    return one


class TextEncoder(nn.Module):
    """q(z|x)'s mean and log-variance for ids (B, T) int64, as :meth:`TextVAE.encode` gives them.

    Each row needs at least one token (the end token counts); padding (id 0) only after them.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        gru = model.encoder
        layers = range(gru.num_layers)
        self.forward_grus = nn.ModuleList(_direction(gru, i, "") for i in layers)
        self.backward_grus = nn.ModuleList(_direction(gru, i, "_reverse") for i in layers)

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        m, c = self.model, self.model.config
        n = (ids != PAD).sum(-1)  # (B,) tokens per row
        pos = torch.arange(ids.shape[1], device=ids.device)[None, :]  # (1, T)
        rev = torch.where(pos < n[:, None], n[:, None] - 1 - pos, pos)  # (B, T), an involution
        h = m.embedding(ids)  # (B, T, E)
        width = c.hidden[0]
        fwd = bwd = h
        for forward_gru, backward_gru in zip(self.forward_grus, self.backward_grus, strict=True):
            fwd, _ = forward_gru(h)  # (B, T, H)
            flipped = h.gather(1, rev[..., None].expand(-1, -1, h.shape[-1]))
            bwd_flipped, _ = backward_gru(flipped)
            bwd = bwd_flipped.gather(1, rev[..., None].expand(-1, -1, width))
            h = torch.cat([fwd, bwd], dim=-1)
        last = (n - 1)[:, None, None].expand(-1, 1, width)
        h_last = torch.cat([fwd.gather(1, last)[:, 0], bwd[:, 0]], dim=-1)  # (B, 2H)
        loc, raw = m.to_q(h_last).chunk(2, dim=-1)
        return loc, soft_clamp(raw, c.encoder_min_logvar, c.encoder_max_logvar)


def text_decoder(model: Any, z: Tensor, ids: Tensor) -> tuple[Tensor]:
    """log p(x_i = v | x_<i, z), (B, T, V), for latents z (B, L) and ids (B, T) int64."""
    c = model.config
    layers, h = len(c.hidden), c.hidden[0]
    h0 = torch.tanh(model.to_h0(z)).reshape(-1, layers, h).transpose(0, 1).contiguous()
    inputs = torch.cat([torch.full_like(ids[:, :1], START), ids[:, :-1]], dim=1)
    emb = model.embedding(inputs)  # (B, T, E)
    emb = torch.cat([emb, z[:, None, :].expand(-1, emb.shape[1], -1)], dim=-1)
    out, _ = model.decoder(emb, h0)
    return (masked_log_softmax(model.to_logits(out), c.data_dim),)


def draw_ids(vocab_size: int, positions: int) -> Draw:
    """Random strings as ids (batch, T) int64: 0 to T-1 ordinary tokens, the end token, then
    padding."""

    def draw(batch: int, g: torch.Generator) -> tuple[Tensor, ...]:
        n = torch.randint(1, positions + 1, (batch, 1), generator=g)  # tokens, end included
        tokens = torch.randint(4, max(vocab_size, 5), (batch, positions), generator=g)
        pos = torch.arange(positions)[None, :]
        ids = torch.where(pos < n - 1, tokens, torch.where(pos == n - 1, END, PAD))
        return (ids.clamp(max=vocab_size - 1),)

    return draw


def text_graphs(model: Any) -> list[Graph | Unexportable]:
    """Encoder and teacher-forced decoder of a :class:`vaekit.models.TextVAE`."""
    c = model.config
    v, t = model.tokenizer.size, c.data_dim
    ids = Port("ids", "int64", (t,), "token ids: the tokens, <end> (1), then <pad> (0)")
    encoder = Graph(
        "encoder",
        TextEncoder(model),
        (ids,),
        (("mean", "mean of q(z|x)"), ("logvar", "log-variance of q(z|x), natural log")),
        draw_ids(v, t),
        "q(z|x): a diagonal Gaussian",
    )
    z_draw, ids_draw = draw_normal(c.latent_dim), draw_ids(v, t)
    prefix = Port("ids", "int64", (t,), "the tokens so far, then <pad> (0)")
    decoder = Graph(
        "decoder",
        Call(model, lambda z, ids: text_decoder(model, z, ids)),
        (Port("z", "float32", (c.latent_dim,), "latents"), prefix),
        (("log_probs", "row i: log p(x_i = v | x_<i, z), rows 0..n for n tokens given"),),
        lambda batch, g: (*z_draw(batch, g), *ids_draw(batch, g)),
        "p(x|z) token by token: a categorical per position given the tokens before it",
    )
    return [encoder, decoder]
