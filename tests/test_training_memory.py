"""The memory training takes, estimated before anything is allocated (models.registry
.training_memory): weights, gradients and optimizer state, then a batch's activations or a
checkpoint's snapshot; a run that would not fit is refused in one line with the estimate."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import run_cli

from vaekit import ConfigError, VAEConfig
from vaekit import memory as memory_module
from vaekit.models import registry
from vaekit.models.registry import (
    ACTIVATION_COPIES,
    build_model,
    check_training_fits,
    training_memory,
    weight_bytes,
)

SMALL = VAEConfig(data_shape=(6,), latent_dim=2, hidden=(4,))


def _train(batch_size: int = 100, samples: int = 1, optimizer: str = "adam") -> SimpleNamespace:
    return SimpleNamespace(batch_size=batch_size, samples=samples, optimizer=optimizer)


def test_the_estimate_by_hand() -> None:
    model = build_model(SMALL)
    params = sum(p.numel() for p in model.parameters())
    assert params == (6 * 4 + 4) + (4 * 4 + 4) + (2 * 4 + 4) + (4 * 6 + 6)  # 6-4-(2+2), 2-4-6
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())  # the prior's
    need = training_memory(SMALL, batch_size=10, samples=3)
    assert need is not None
    assert need.weights == weight_bytes(SMALL) == 4 * params + buffers
    assert need.state == 3 * 4 * params  # gradients, Adam's two moments
    # per (sample, example): hidden 4 + 4 (encoder, decoder), 6 logits, 4 x latent_dim
    assert need.per_example == 4 * ACTIVATION_COPIES * 3 * (8 + 6 + 8) == 792
    assert need.activations == 10 * 792
    assert need.snapshot == need.weights + 2 * 4 * params  # what a checkpoint copies
    assert need.total == need.weights + need.state + max(need.activations, need.snapshot)
    adagrad = training_memory(SMALL, 10, 3, optimizer="adagrad")
    assert adagrad is not None and adagrad.state == 2 * 4 * params
    assert training_memory(SMALL, 10, 3, checkpoints=False).snapshot == 0  # type: ignore[union-attr]


def test_the_estimate_grows_with_the_batch_and_the_image() -> None:
    conv = VAEConfig(data_shape=(3, 32, 32), latent_dim=8, hidden=(16,), network="conv",
                     likelihood="gaussian")  # fmt: skip
    small, large = training_memory(conv, 10), training_memory(conv, 1000)
    assert small is not None and large is not None
    assert large.activations == 100 * small.activations and large.weights == small.weights
    bigger = training_memory(VAEConfig(**{**conv.__dict__, "data_shape": (3, 64, 64)}), 10)
    assert bigger is not None and bigger.per_example > 3 * small.per_example


def test_weights_that_fit_and_training_that_does_not_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    need = training_memory(SMALL, batch_size=1000)
    assert need is not None and need.activations > need.snapshot
    fixed = need.weights + need.state
    have = fixed + 300 * need.per_example + 7  # room for 300 examples' activations
    monkeypatch.setattr(registry, "available_memory", lambda device=None: have)
    build_model(SMALL)  # its weights fit
    with pytest.raises(ConfigError) as err:
        check_training_fits(SMALL, _train(1000))
    message = str(err.value)
    assert message.startswith("training a vae model with these settings would run out of memory: ")
    assert (
        "for a batch of 1000 examples" in message and "lower batch_size to 300 or less" in message
    )
    check_training_fits(SMALL, _train(300))  # what it suggests fits
    check_training_fits(SMALL, _train(1000), examples=250)  # the data caps the batch
    with pytest.raises(ConfigError, match=r"a batch of 301 examples x 2 samples"):
        check_training_fits(SMALL, _train(301, samples=2))


def test_a_model_whose_state_does_not_fit_names_the_model_not_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = VAEConfig(data_shape=(3, 16, 16), latent_dim=2, hidden=(64,))
    need = training_memory(config, 1)
    assert need is not None
    monkeypatch.setattr(registry, "available_memory", lambda device=None: need.weights * 2)
    with pytest.raises(ConfigError) as err:
        check_training_fits(config, _train(1))
    assert str(err.value).endswith("; lower image_size, hidden, channels or latent_dim")


def test_available_memory_takes_the_address_space_limit_into_account() -> None:
    import resource

    host = memory_module.available_memory()
    assert host is not None and host > 0
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as f:
        size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (size + 2**30, hard))  # 1 GiB more than mapped
    try:
        limited = memory_module.available_memory()
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert limited is not None and limited <= min(host, 2**30)
    assert limited > 2**29  # what the process maps meanwhile is well under 512 MiB


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_device_reports_its_own_free_memory() -> None:
    free, total = torch.cuda.mem_get_info(0)
    got = memory_module.available_memory("cuda:0")
    assert got is not None and 0 < got <= total and abs(got - free) < total // 10


def test_train_refuses_in_one_line_before_building(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = VAEConfig(data_shape=(64,), latent_dim=2, hidden=(32,))
    need = training_memory(config, batch_size=1000)
    assert need is not None
    monkeypatch.setattr(registry, "available_memory", lambda device=None: 3 * need.weights)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", "digits", "--out", out, "--epochs", "1",
                           "--set", "hidden=[32]", "--set", "latent_dim=2",
                           "--set", "batch_size=1000")  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "vaekit: error: training a vae model with these settings would run out of memory" in err
    assert "a batch of 1000 examples" in err and "Traceback" not in err
    assert not out.exists()


def test_fit_refuses_before_allocating_the_optimizer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vaekit

    model = build_model(SMALL)
    x = (torch.rand(500, 6) < 0.5).float()
    need = training_memory(SMALL, batch_size=500)
    assert need is not None
    have = need.state + 100 * need.per_example  # the weights are there already
    monkeypatch.setattr(registry, "available_memory", lambda device=None: have)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ConfigError) as err:
        vaekit.fit(model, x, batch_size=500, epochs=1)
    message = str(err.value)
    assert message.startswith("training this vae model with these settings would run out of ")
    assert " more (" in message and "of weights" not in message  # built: not counted again
    assert "lower batch_size to 100 or less" in message and "checkpoint" not in message
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    vaekit.fit(model, x, batch_size=100, epochs=1)  # what it suggests trains
    with pytest.raises(ConfigError, match="to write a checkpoint"):
        vaekit.fit(model, x, batch_size=500, epochs=1, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_snapshot_counts_on_the_host_only(monkeypatch: pytest.MonkeyPatch) -> None:
    need = training_memory(SMALL, batch_size=1)
    assert need is not None and need.snapshot > need.activations
    have = need.weights + need.state + need.activations  # room for a step, not a snapshot
    monkeypatch.setattr(registry, "available_memory", lambda device=None: have)
    with pytest.raises(ConfigError, match="to write a checkpoint"):
        check_training_fits(SMALL, _train(1), device="cpu")
    check_training_fits(SMALL, _train(1), device="meta")  # another device: the host copies


def _cgroup_tree(root: Path, lines: list[str], files: dict[str, str]) -> Path:
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text("".join(f"{line}\n" for line in lines))
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_cgroup_v2_limit_and_its_ancestors(tmp_path: Path) -> None:
    from vaekit.memory import cgroup_left

    gib = 2**30
    root = _cgroup_tree(
        tmp_path,
        ["0::/box/job"],
        {
            "sys/fs/cgroup/box/memory.max": f"{8 * gib}\n",
            "sys/fs/cgroup/box/memory.current": f"{5 * gib}\n",
            "sys/fs/cgroup/box/memory.stat": f"anon 1\ninactive_file {1 * gib}\n",
            "sys/fs/cgroup/box/job/memory.max": "max\n",
            "sys/fs/cgroup/box/job/memory.current": f"{4 * gib}\n",
        },
    )
    # the job has no limit of its own; its parent's 8 GiB less 5 GiB used, 1 GiB of it cache
    assert cgroup_left(root) == 4 * gib
    (root / "sys/fs/cgroup/box/job/memory.max").write_text(f"{6 * gib}\n")
    assert cgroup_left(root) == 2 * gib  # the tighter one wins


def test_a_cgroup_v1_limit_and_no_limit(tmp_path: Path) -> None:
    from vaekit.memory import cgroup_left

    mib = 2**20
    root = _cgroup_tree(
        tmp_path,
        ["4:memory:/docker/abc", "3:cpu:/", "0::/"],
        {
            "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
            "sys/fs/cgroup/memory/memory.usage_in_bytes": f"{900 * mib}\n",
            "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": f"{512 * mib}\n",
            "sys/fs/cgroup/memory/docker/abc/memory.usage_in_bytes": f"{500 * mib}\n",
            "sys/fs/cgroup/memory/docker/abc/memory.stat": f"total_inactive_file {100 * mib}\n",
        },
    )
    assert cgroup_left(root) == 112 * mib
    (root / "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes").write_text(
        "9223372036854771712\n"
    )
    assert cgroup_left(root) is None  # v1's "no limit"
    assert cgroup_left(tmp_path / "nowhere") is None
