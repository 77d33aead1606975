"""Errors say what to do in the library's words; a front end can word the remedy its own way."""

import pytest

from vaekit.errors import REMEDIES, CheckpointError, ConfigError, Remedy, VaekitError


def test_a_remedy_is_worded_after_the_message() -> None:
    remedy = Remedy("resume", "runs/a")
    err = CheckpointError("'runs/a' has no model.safetensors yet", remedy=remedy)
    assert err.message == "'runs/a' has no model.safetensors yet"
    assert str(err) == (
        "'runs/a' has no model.safetensors yet; continue it with "
        "vaekit.fit(model, data, out='runs/a', resume=True)"
    )
    assert "--" not in str(err)  # no command-line flag in a library message


def test_an_error_without_a_remedy_is_its_message() -> None:
    err = ConfigError("latent_dim must be a positive integer, got 0")
    assert str(err) == err.message and err.remedy is None
    assert isinstance(err, ValueError)  # bad settings are also ValueErrors


@pytest.mark.parametrize("action", sorted(REMEDIES))
def test_every_remedy_names_the_run(action: str) -> None:
    assert "runs/x" in str(VaekitError("m", remedy=Remedy(action, "runs/x")))
