"""The Python API refuses what is not examples with vaekit's own DataError, naming the argument,
before torch sees it: strings, dicts, ragged lists, object or complex arrays, datasets whose items
hold no example."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import vaekit
from vaekit import VAE, DataError, VaekitError


class Items:
    """A map-style dataset whose items are what it is given."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


BAD = {
    "a list of strings": (["a", "b"], "item 0 of"),
    "a string": ("0101", "is a string"),
    "bytes": (b"\x00\x01", "is a string"),
    "a dict": ({"x": [[0.0] * 6]}, "is a dict (keys 'x')"),
    "a ragged list": ([[0.0] * 6, [0.0] * 5], "differ in shape"),
    "None": (None, "got NoneType"),
    "an object array": (np.array([[object()] * 6], dtype=object), "dtype object"),
    "a complex array": (np.ones((2, 6), dtype=complex), "dtype complex128"),
    "a complex tensor": (torch.ones(2, 6, dtype=torch.complex64), "dtype torch.complex64"),
    "a dataset of dicts without an example key": (
        Items([{"pixels": torch.rand(6), "y": 0}] * 3),
        "keys 'pixels', 'y'",
    ),
    "a dataset of strings": (Items(["ab", "cd"]), "item 0 of"),
}


def _model() -> VAE:
    torch.manual_seed(0)
    return VAE(data_shape=(6,), latent_dim=2, hidden=(4,)).eval()


ENTRIES = {
    "fit": lambda m, x: vaekit.fit(m, x, epochs=1),
    "encode": lambda m, x: m.encode(x),
    "reconstruct": lambda m, x: m.reconstruct(x),
    "elbo": lambda m, x: m.elbo(x),
    "model.log_likelihood": lambda m, x: m.log_likelihood(x, k=2),
    "vaekit.log_likelihood": lambda m, x: vaekit.log_likelihood(m, x, k=2),
    "vaekit.evaluate": lambda m, x: vaekit.evaluate(m, x, k=2),
}


@pytest.mark.parametrize("entry", sorted(ENTRIES))
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_examples_are_a_data_error(entry: str, case: str) -> None:
    value, words = BAD[case]
    with pytest.raises(DataError, match=None) as info:
        ENTRIES[entry](_model(), value)
    message = str(info.value)
    assert words in message and "\n" not in message, message


def test_a_dataset_of_dicts_gives_its_example_key() -> None:
    rows = torch.rand(8, 6).round()
    items = Items([{"image": r, "label": i % 2} for i, r in enumerate(rows)])
    model = _model()
    torch.testing.assert_close(model.elbo(items), model.elbo(rows))
    vaekit.fit(model, items, epochs=1)  # trains


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=3)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=2), inner, max_size=2),
        st.tuples(inner, inner),
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(value=_values)
def test_any_python_value_is_a_vaekit_error_or_works(value: Any) -> None:
    model = _model()
    for entry in ("encode", "elbo", "fit"):
        try:
            ENTRIES[entry](model, value)
        except VaekitError as err:
            assert "\n" not in str(err)
