"""The training state of a checkpoint, checked against the loop that is to continue it before
anything is applied or written: every optimizer moment shaped like its parameter, counters
whole numbers in range, random generator states that the generator takes, the data order a
permutation of the examples, the weights the model's (names, shapes, dtypes).

A damaged checkpoint is one :class:`CheckpointError` naming the file and the field, raised while
the run folder is still untouched."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import CheckpointError
from ..reading import check_metrics_record, conform_tensors, is_number

#: Optimizer moments every entry of an Adam state holds beside ``step``.
ADAM_MOMENTS = ("exp_avg", "exp_avg_sq")
_COUNTERS = ("pos", "step", "skipped", "bad_in_row")


def check_loop_state(state: Any, loop: Any, where: str) -> dict[str, Any]:
    """``state`` (a checkpoint's ``loop`` table, read from ``where``), checked for ``loop`` (an
    :class:`~vaekit.train.step.Loop`): returns it with the weights and moments in the model's
    dtypes. Raises :class:`CheckpointError` naming the first field that is wrong."""

    def bad(field: str, what: str) -> CheckpointError:
        return CheckpointError(f"{where}: {field} {what}; the checkpoint is damaged")

    if not isinstance(state, dict):
        raise bad("loop", "is not a table")
    state = dict(state)
    for key in ("kind", "device"):
        if not isinstance(state.get(key), str):
            raise bad(key, "must be a string")
    if type(state.get("epoch")) is not int or not 1 <= state["epoch"] < 2**31:
        raise bad("epoch", "must be a whole number from 1")
    for key in _COUNTERS:
        if type(state.get(key)) is not int or not 0 <= state[key] < 2**62:
            raise bad(key, "must be a whole number >= 0")
    per_epoch = getattr(loop, "steps_per_epoch", None)
    if isinstance(per_epoch, int) and state["pos"] > per_epoch:
        raise bad("pos", f"is {state['pos']}, past the {per_epoch} steps of an epoch")
    if not is_number(state.get("elapsed")) or not 0 <= state["elapsed"] < math.inf:
        raise bad("elapsed", "must be a finite number of seconds >= 0")
    if "seen" in state and (type(state["seen"]) is not int or state["seen"] < 0):
        raise bad("seen", "must be a whole number >= 0")
    if state.get("bound_sum") is not None:
        state["bound_sum"] = _scalar(state["bound_sum"], "bound_sum", bad)
    same = state["kind"] == getattr(loop, "kind", None) and state["device"] == loop.device.type
    if same:  # the streams are taken only by a loop of the same kind on the same device
        _check_generator(state.get("generator"), loop.g, "generator", bad)
        order_g = getattr(loop, "g_order", loop.g)
        if order_g is not loop.g:  # the fast loop's own stream of data orders
            _check_generator(state.get("generator_order"), order_g, "generator_order", bad)
    if state.get("order") is not None:
        _check_order(state["order"], getattr(loop, "n", None), bad)
    state["model"] = conform_tensors(
        state.get("model"), loop.model.state_dict(), f"{where}: the model", CheckpointError
    )
    state["optimizer"] = _check_optimizer(state.get("optimizer"), loop, bad)
    return state


def _scalar(value: Any, field: str, bad: Any) -> Tensor:
    """A one-value floating or integer tensor, finite or not."""
    if not isinstance(value, Tensor) or value.numel() != 1 or value.is_complex():
        raise bad(field, "must be a tensor of one number")
    if value.dtype == torch.bool:
        raise bad(field, "must be a number, not a bool")
    return value.reshape(())


def _check_generator(value: Any, generator: torch.Generator, field: str, bad: Any) -> None:
    """A state that ``generator``'s kind of generator takes (same size, uint8, accepted)."""
    own = generator.get_state()
    if not isinstance(value, Tensor) or value.dtype != torch.uint8 or value.shape != own.shape:
        raise bad(field, f"must be a uint8 tensor of {own.numel()} bytes (a generator's state)")
    trial = torch.Generator(device=generator.device)
    try:
        trial.set_state(value)
    except (RuntimeError, ValueError) as err:
        raise bad(field, f"is not a state the generator takes ({str(err)[:80]})") from None


def _check_order(value: Any, n: int | None, bad: Any) -> None:
    """An int64 permutation of ``n`` examples."""
    if not isinstance(value, Tensor) or value.dtype != torch.int64 or value.dim() != 1:
        raise bad("order", "must be a one-dimensional int64 tensor")
    if n is not None and value.shape[0] != n:
        raise bad("order", f"has {value.shape[0]} examples, the data {n}")
    if value.numel() and (int(value.min()) < 0 or int(value.max()) >= value.numel()):
        raise bad("order", "holds an index out of range")
    if value.numel() and not bool(
        (torch.bincount(value.cpu(), minlength=value.numel()) == 1).all()
    ):
        raise bad("order", "is not a permutation of the examples")


def _check_optimizer(value: Any, loop: Any, bad: Any) -> dict[str, Any]:
    """An optimizer state_dict whose every entry matches its parameter."""
    if not isinstance(value, dict) or not isinstance(value.get("state", {}), dict):
        raise bad("optimizer", "must be a table with a state table")
    optimizer = loop.optimizer
    params = getattr(optimizer, "params", None)
    if params is None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
    moments = tuple(getattr(optimizer, "moments", ADAM_MOMENTS))
    if isinstance(optimizer, torch.optim.Optimizer) and not isinstance(
        optimizer, torch.optim.Adam | torch.optim.AdamW
    ):
        moments = ()  # another optimizer: its entries are checked for shape only
    entries = value.get("state") or {}
    if entries and set(entries) != set(range(len(params))):
        raise bad(
            "optimizer.state",
            f"covers {len(entries)} parameters, the model has {len(params)}",
        )
    state = {}
    for i, p in enumerate(params):
        if not entries:
            break
        entry = entries[i]
        if not isinstance(entry, dict):
            raise bad(f"optimizer.state[{i}]", "must be a table")
        for name in ("step", *moments):
            if name not in entry:
                raise bad(f"optimizer.state[{i}]", f"lacks {name}")
        entry = dict(entry)
        for name, v in entry.items():
            field = f"optimizer.state[{i}].{name}"
            if name == "step":
                entry[name] = _step(v, field, bad)
            elif isinstance(v, Tensor):
                if tuple(v.shape) != tuple(p.shape):
                    raise bad(field, f"has shape {list(v.shape)}, its parameter {list(p.shape)}")
                if not v.is_floating_point():
                    raise bad(field, f"is {v.dtype}, not a floating dtype")
                entry[name] = v.to(p.dtype)
        state[i] = entry
    return {**value, "state": state}


def _step(value: Any, field: str, bad: Any) -> Any:
    """An optimizer's step count: a finite number >= 0, as a one-value tensor or a number."""
    if isinstance(value, Tensor):
        value = _scalar(value, field, bad)
        number = float(value)
    elif is_number(value):
        number = float(value)
    else:
        raise bad(field, "must be a number of steps")
    if not 0 <= number < 2**53:
        raise bad(field, "must be a finite number of steps >= 0")
    return value.to(torch.float32) if isinstance(value, Tensor) else value


def check_history(history: Any, where: str) -> list[dict[str, Any]]:
    """A checkpoint's ``history``: a list of epoch records (as metrics.jsonl holds them)."""
    if history is None:
        return []
    if not isinstance(history, list):
        raise CheckpointError(f"{where}: history must be a list of epochs; the file is damaged")
    for i, record in enumerate(history):
        check_metrics_record(record, f"{where}: history[{i}]", CheckpointError)
        if not is_number(record.get("seconds", 0.0)):
            raise CheckpointError(f"{where}: history[{i}].seconds must be a number")
    return history
