"""The optimizers of training and their learning rate: torch's Adam or Adagrad for the eager loop
(:func:`make_optimizer`), the same updates over one flat parameter vector for the fast path and the
per-example refinement (:class:`FlatOptimizer`, :func:`flat_optimizer`: a few fused tensor
operations, captured in a CUDA graph), and the schedule (:func:`learning_rate`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .config import IWAE_PASSES, IWAE_STAGES, TrainConfig

#: Adagrad's epsilon (torch's default), on the eager and the fast loop alike.
ADAGRAD_EPS = 1e-10
#: Keyword arguments of torch.compile on the "compile" path, e.g. {"mode": "max-autotune"}.
COMPILE_OPTIONS: dict[str, Any] = {}


def _flat_gradient(
    flat: Tensor, grads: list[Tensor], bound_sum: Tensor, weight_decay: float, grad_clip: float
) -> tuple[Tensor, Tensor]:
    """The gradient (P,) an update of ``flat`` uses: ``grads`` concatenated, its global norm
    clipped to ``grad_clip`` when positive (as ``clip_grad_norm_`` does), plus the L2 weight
    decay term; and whether the step is finite (every gradient and ``bound_sum``), 0-dim bool."""
    g = torch.cat([t.reshape(-1) for t in grads])  # (P,)
    finite = torch.isfinite(g).all() & torch.isfinite(bound_sum)
    if grad_clip > 0:
        norm = torch.linalg.vector_norm(g)
        g = g * torch.clamp(grad_clip / (norm + 1e-6), max=1.0)
    if weight_decay:
        g = g + weight_decay * flat
    return g, finite


def adam_update(
    flat: Tensor,
    grads: list[Tensor],
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: Tensor,
    lr: Tensor,
    bound_sum: Tensor,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    grad_clip: float,
) -> Tensor:
    """One Adam step on the flat parameter vector ``flat`` (P,), skipped where it is not finite.

    ``grads`` are the gradients of the tensors that view ``flat``, in order; ``exp_avg`` and
    ``exp_avg_sq`` (P,) are Adam's moments and ``step`` (a 0-dim float tensor) its count of
    steps taken; all four are updated in place. The update is torch.optim.Adam's (L2 weight
    decay, bias-corrected moments), after clipping the global gradient norm to ``grad_clip``
    when it is positive, as ``clip_grad_norm_`` does. When any gradient or ``bound_sum`` is not
    finite, nothing changes. Returns that condition as a 0-dim bool tensor, with no host sync.
    Pure tensor code: torch.compile turns it into a few kernels over the whole flat vector.
    """
    beta1, beta2 = betas
    g, finite = _flat_gradient(flat, grads, bound_sum, weight_decay, grad_clip)
    new_step = step + 1
    m = torch.lerp(exp_avg, g, 1 - beta1)
    v = exp_avg_sq * beta2 + (1 - beta2) * g * g
    bias1 = 1 - torch.pow(beta1, new_step)
    bias2_sqrt = torch.sqrt(1 - torch.pow(beta2, new_step))
    new = flat - (lr / bias1) * m / (torch.sqrt(v) / bias2_sqrt + eps)
    flat.copy_(torch.where(finite, new, flat))
    exp_avg.copy_(torch.where(finite, m, exp_avg))
    exp_avg_sq.copy_(torch.where(finite, v, exp_avg_sq))
    step.copy_(torch.where(finite, new_step, step))
    return finite


def adagrad_update(
    flat: Tensor,
    grads: list[Tensor],
    state_sum: Tensor,
    step: Tensor,
    lr: Tensor,
    bound_sum: Tensor,
    eps: float,
    weight_decay: float,
    grad_clip: float,
) -> Tensor:
    """One Adagrad step on ``flat`` (P,), skipped where it is not finite: :func:`adam_update`
    for torch.optim.Adagrad's update (L2 weight decay, no lr decay, accumulator from 0):
    ``state_sum`` (P,) += g^2, then ``flat`` -= lr * g / (sqrt(state_sum) + eps)."""
    g, finite = _flat_gradient(flat, grads, bound_sum, weight_decay, grad_clip)
    total = state_sum + g * g
    new = flat - lr * (g / (torch.sqrt(total) + eps))
    flat.copy_(torch.where(finite, new, flat))
    state_sum.copy_(torch.where(finite, total, state_sum))
    step.copy_(torch.where(finite, step + 1, step))
    return finite


class FlatOptimizer:
    """An optimizer over parameters that view one flat buffer, for captured and compiled steps.

    torch's fused Adam splits its work into chunks of 65,536 elements, one thread block each,
    which leaves most of a large GPU idle for a model of a few hundred thousand parameters. Here
    the parameters are moved into one flat buffer (P,) that they then view, the optimizer's
    per-element state (``moments``) is flat buffers too, and one update function changes all of
    them at once, elementwise, with the skip of a non-finite step and gradient clipping in the
    same pass. The learning rate is a device tensor, so it can change without recapture.
    :meth:`state_dict` gives the torch optimizer's state dict, so a run can move between loops.
    Subclasses: :class:`FlatAdam`, :class:`FlatAdagrad`.
    """

    #: Names of the per-element state buffers, as in the torch optimizer's state dict.
    moments: tuple[str, ...] = ()

    def __init__(
        self,
        params: list[Tensor],
        lr: float,
        update: Callable[..., Tensor],
        options: dict[str, Any],
        compile: bool = False,
    ) -> None:
        if len({(p.device, p.dtype) for p in params}) != 1:
            raise ValueError(f"{type(self).__name__} needs all parameters on one device and dtype")
        self.params = params
        self.flat = torch.cat([p.detach().reshape(-1) for p in params])  # (P,)
        at = 0
        for p in params:
            p.data = self.flat[at : at + p.numel()].view_as(p)
            at += p.numel()
        for name in self.moments:
            setattr(self, name, torch.zeros_like(self.flat))
        self.step = torch.zeros((), device=self.flat.device, dtype=self.flat.dtype)
        self.lr = torch.tensor(float(lr), device=self.flat.device, dtype=self.flat.dtype)
        self.options = options
        self.update = update
        if compile:
            self.update = torch.compile(update, dynamic=False, **COMPILE_OPTIONS)

    def __call__(self, bound_sum: Tensor) -> Tensor:
        """Step with the parameters' ``.grad``; returns whether the step was finite (0-dim)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        state = [getattr(self, name) for name in self.moments]
        return self.update(
            self.flat, grads, *state, self.step, self.lr, bound_sum, **self.options
        )  # fmt: skip

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def reset(self) -> None:
        """Forget the moments and the step count (in place: captured graphs keep pointers)."""
        for t in (*(getattr(self, name) for name in self.moments), self.step):
            t.zero_()

    def group(self) -> dict[str, Any]:
        """The torch optimizer's settings (one parameter group, without ``params``)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The state in the torch optimizer's layout (one group, parameters in order)."""
        state, at = {}, 0
        for i, p in enumerate(self.params):
            n = p.numel()
            state[i] = {"step": self.step.detach().clone()}
            for name in self.moments:
                state[i][name] = getattr(self, name)[at : at + n].view_as(p).clone()
            at += n
        group = {"lr": float(self.lr), **self.group(), "params": list(range(len(self.params)))}
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take the moments and step count from the torch optimizer's state dict of these
        parameters."""
        state = [state_dict["state"][i] for i in sorted(state_dict["state"])]
        with torch.no_grad():
            if not state:
                self.reset()
                return
            for name in self.moments:
                flat = torch.cat([st[name].reshape(-1) for st in state])
                if flat.shape != self.flat.shape:
                    raise ValueError(
                        f"{name} holds {flat.numel()} values, the parameters {self.flat.numel()}"
                    )
                getattr(self, name).copy_(flat)
            self.step.copy_(torch.as_tensor(state[0]["step"]))

    def release(self) -> None:
        """Give each parameter its own storage again (checkpoints refuse shared storage)."""
        for p in self.params:
            p.data = p.data.clone()


class FlatAdam(FlatOptimizer):
    """torch.optim.Adam (L2 weight decay, bias-corrected moments) as a :class:`FlatOptimizer`,
    with :func:`adam_update`."""

    moments = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: list[Tensor],
        lr: float,
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        grad_clip: float = 0.0,
        compile: bool = False,
    ) -> None:
        options = {"betas": betas, "eps": eps, "weight_decay": weight_decay, "grad_clip": grad_clip}
        super().__init__(params, lr, adam_update, options, compile)

    def group(self) -> dict[str, Any]:
        o = self.options
        return {
            "betas": o["betas"],
            "eps": o["eps"],
            "weight_decay": o["weight_decay"],
            "amsgrad": False,
        }


class FlatAdagrad(FlatOptimizer):
    """torch.optim.Adagrad (the AEVB paper's optimizer; L2 weight decay, no lr decay) as a
    :class:`FlatOptimizer`, with :func:`adagrad_update`."""

    moments = ("sum",)

    def __init__(
        self,
        params: list[Tensor],
        lr: float,
        *,
        eps: float = ADAGRAD_EPS,
        weight_decay: float = 0.0,
        grad_clip: float = 0.0,
        compile: bool = False,
    ) -> None:
        options = {"eps": eps, "weight_decay": weight_decay, "grad_clip": grad_clip}
        super().__init__(params, lr, adagrad_update, options, compile)

    def group(self) -> dict[str, Any]:
        o = self.options
        return {
            "lr_decay": 0.0,
            "eps": o["eps"],
            "weight_decay": o["weight_decay"],
            "initial_accumulator_value": 0.0,
        }


def flat_optimizer(params: list[Tensor], config: TrainConfig, compile: bool) -> FlatOptimizer:
    """The :class:`FlatOptimizer` of ``config.optimizer`` over ``params`` (one device and dtype);
    ``compile``: its update compiled by torch.compile."""
    common = {"weight_decay": config.weight_decay, "grad_clip": config.grad_clip}
    if config.optimizer == "adagrad":
        return FlatAdagrad(params, config.lr, compile=compile, **common)
    return FlatAdam(params, config.lr, eps=config.adam_eps, compile=compile, **common)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """torch's Adam or Adagrad (``config.optimizer``) over all of the model's parameters, for the
    eager loop. Adam is torch's fused implementation (one pass over each parameter) where the
    parameters allow it: on CPU its step takes a fraction of the multi-tensor one's time."""
    params = list(model.parameters())
    if config.optimizer == "adagrad":
        return torch.optim.Adagrad(
            params, lr=config.lr, eps=ADAGRAD_EPS, weight_decay=config.weight_decay
        )
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(
        params,
        lr=config.lr,
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
        fused=fused or None,
    )


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """The learning rate of epoch ``epoch`` (1-based) under ``config.lr_schedule``."""
    if config.lr_schedule == "constant":
        return config.lr
    passes = epoch - 1  # passes already made
    if config.lr_schedule == "iwae_scaled":
        passes = passes * IWAE_PASSES / config.epochs
    # stage i covers passes [(3^i - 1) / 2, (3^(i+1) - 1) / 2)
    stage = min(IWAE_STAGES - 1, int(math.log(2 * passes + 1, 3) + 1e-9))
    return config.lr * 10 ** (-stage / 7)


def set_learning_rate(optimizer: torch.optim.Optimizer | FlatOptimizer, lr: float) -> None:
    """Set every parameter group's lr, in place where it is a tensor (captured graphs)."""
    if isinstance(optimizer, FlatOptimizer):
        optimizer.lr.fill_(lr)
        return
    for group in optimizer.param_groups:
        if isinstance(group["lr"], Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr
