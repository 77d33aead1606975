"""Networks from installed packages: the entry-point group ``vaekit.networks``.

Each test installs a real distribution (a module beside an ``.dist-info`` folder with METADATA
and entry_points.txt) into a folder on the import path, as pip would lay it out. The package of
the end-to-end test is the one docs/architecture.md shows, read from that page.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import digest
from torch import nn

import vaekit
from vaekit import VAE, ConfigError
from vaekit.nets import ENTRY_POINT_GROUP, NETWORKS, NetSpec, build_networks, network_builder

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "architecture.md"


def documented_package() -> tuple[str, str]:
    """The example plug-in of docs/architecture.md's "Network plug-ins": (module source,
    pyproject.toml)."""
    text = DOCS.read_text()
    section = text.split("## Network plug-ins", 1)[1].split("\n## ", 1)[0]
    python = re.search(r"```python\n(.*?)```", section, re.S)
    toml = re.search(r"```toml\n(.*?)```", section, re.S)
    assert python and toml, "the section shows the package's module and its pyproject.toml"
    return python.group(1), toml.group(1)


def install(site: Path, module: str, source: str, entry_points: dict[str, str]) -> Path:
    """Lay out distribution ``module`` 0.1 in ``site`` (module file, METADATA, entry points of
    the group vaekit.networks: name -> "module:function") as an installer would."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")
    return site


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``plugin(module, source, {name: target})``: installs a distribution on sys.path for this
    test (its modules forgotten afterwards)."""

    def add(module: str, source: str, entry_points: dict[str, str]) -> Path:
        site = install(tmp_path / f"site-{module}", module, textwrap.dedent(source), entry_points)
        monkeypatch.syspath_prepend(str(site))
        monkeypatch.delitem(sys.modules, module, raising=False)
        return site

    yield add
    for name in [m for m in sys.modules if m.startswith("plug_")]:
        del sys.modules[name]


def cli(*args: object, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vaekit", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=REPO,
    )


# -- end to end: a run trained with a plug-in, read back in other processes -------------------


def test_a_run_of_an_installed_plugin_is_read_back_only_where_the_package_is(
    tmp_path: Path,
) -> None:
    source, pyproject = documented_package()
    assert 'wide = "example_nets:build"' in pyproject
    site = install(tmp_path / "site", "example_nets", source, {"wide": "example_nets:build"})
    base = {**os.environ, "OMP_NUM_THREADS": "1"}  # its PYTHONPATH (if any) without the site
    with_pkg = {
        **base,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), base.get("PYTHONPATH")])),
    }
    run = tmp_path / "run"
    settings = ["--set", "network=wide", "--set", "latent_dim=3", "--set", "hidden=[16]"]
    done = cli("train", "--data", "digits", "--out", run, "--epochs", "2", *settings, "-k", "2",
               "-q", env=with_pkg)  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["network"] == "wide"
    # the weights are the plug-in's: two hidden layers of 2 x 16 units
    from safetensors import safe_open

    with safe_open(run / "model.safetensors", "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    assert shapes["encoder.net.2.weight"] == (32, 32)
    assert shapes["decoder.net.4.weight"] == (64, 32)  # 64 pixels, one Bernoulli logit each

    out = tmp_path / "drawn.png"
    done = cli("sample", run, "-n", "4", "-o", out, env=with_pkg)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0

    before = digest(run)
    done = cli("sample", run, "-n", "4", "-o", tmp_path / "never.png", env=base)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("vaekit: error: ")
    assert "Traceback" not in done.stderr
    for words in ("'wide'", "'vaekit.networks'", "install the package that provides it", "mlp"):
        assert words in done.stderr
    assert digest(run) == before
    assert not (tmp_path / "never.png").exists()


# -- in one process: the lookup and its errors ------------------------------------------------

WIDE = """
    import math
    from torch import nn
    from vaekit.nets import MLP

    def build(spec):
        d = math.prod(spec.shape)
        return (MLP(d + spec.condition_dim, (24,), spec.encoder_out),
                MLP(spec.decoder_in + spec.condition_dim, (24,), spec.out_per_dim * d))
"""


def test_an_installed_builder_is_found_saved_by_name_and_rebuilt_by_load(
    plugin, tmp_path: Path
) -> None:
    plugin("plug_wide", WIDE, {"wide": "plug_wide:build"})
    assert network_builder("mlp") is NETWORKS["mlp"]
    model = VAE(data_shape=(6,), latent_dim=2, hidden=(8,), network="wide", condition_dim=3,
                prior="mog", likelihood="gaussian_per_dim")  # fmt: skip
    assert model.encoder[0].in_features == 9 and model.encoder[0].out_features == 24
    x = torch.rand(5, 6)
    model.fit(x, conditions=torch.arange(5) % 3, epochs=1, batch_size=5)
    model.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model"]["network"] == "wide"
    again = vaekit.load(tmp_path / "m")
    labels = torch.tensor([0, 1, 2, 0, 1])
    torch.testing.assert_close(again.encode(x, labels).mean, model.encode(x, labels).mean)
    assert again.floats_per_row == 48  # the leaf modules' outputs per example: 24 + 24


def test_a_builtin_name_wins_over_an_entry_point_of_that_name(plugin) -> None:
    source = textwrap.dedent(WIDE) + "\ndef never(spec):\n    raise RuntimeError('never called')\n"
    plugin("plug_shadow", source, {"mlp": "plug_shadow:never", "wide": "plug_shadow:build"})
    builtin = VAE(data_shape=(4,), latent_dim=2, hidden=(8,), network="mlp")
    assert [m.out_features for m in builtin.encoder if isinstance(m, nn.Linear)] == [8, 4]
    plugged = VAE(data_shape=(4,), latent_dim=2, hidden=(8,), network="wide")
    assert [m.out_features for m in plugged.encoder if isinstance(m, nn.Linear)] == [24, 4]


def test_an_unknown_network_names_the_group_and_what_is_installed(plugin) -> None:
    plugin("plug_wide", WIDE, {"wide": "plug_wide:build"})
    for call in (lambda: network_builder("narrow"), lambda: VAE(network="narrow")):
        with pytest.raises(ConfigError) as err:
            call()
        message = str(err.value)
        assert "\n" not in message
        for words in ("'narrow'", "'vaekit.networks'", "install the package that provides it",
                      "mlp, conv, resnet", "wide"):  # fmt: skip
            assert words in message


#: A linear layer that takes the condition argument the VAE passes (None here).
LINEAR = """import torch
class L(torch.nn.Linear):
    def forward(self, x, condition=None):
        return super().forward(x)
def build(spec):
"""


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("def build(spec):\n    raise ValueError('no such size')\n",
         "failed to build for NetSpec(shape=(6,)"),
        (LINEAR + "    return L(6, 4)\n", "returned a L; a builder returns (encoder, decoder)"),
        (LINEAR + "    return L(6, 4), 'decoder'\n", "returned a tuple of L, str"),
        (LINEAR + "    return L(6, 5), L(2, 6)\n",
         "the encoder maps (2, 6) to (2, 5), not (2, 4)"),
        (LINEAR + "    return L(6, 4), L(2, 12)\n",
         "the decoder maps (3, 2, 2) to (3, 2, 12), not (3, 2, 6)"),
        (LINEAR + "    return L(7, 4), L(2, 6)\n",
         "the encoder fails on inputs (2, 6): RuntimeError: mat1 and mat2"),
        (LINEAR + "    return torch.nn.Linear(6, 4), L(2, 6)\n",
         "the encoder fails on inputs (2, 6): TypeError: Linear.forward() takes 2 positional"),
        ("build = 3\n", "is not callable (int); it must name a builder function of a NetSpec"),
        ("import no_such_module_anywhere\n",
         "cannot be loaded (ModuleNotFoundError: No module named 'no_such_module_anywhere')"),
    ],
)  # fmt: skip
def test_a_bad_builder_is_a_config_error_naming_its_entry_point(
    plugin, body: str, words: str
) -> None:
    plugin("plug_bad", body, {"bad": "plug_bad:build"})
    with pytest.raises(ConfigError) as err:
        VAE(data_shape=(6,), latent_dim=2, network="bad")
    message = str(err.value)
    assert "\n" not in message
    assert (
        "network 'bad' (entry point bad = plug_bad:build (vaekit.networks of package plug_bad 0.1))"
        in message
    )
    assert words in message


def test_a_builder_that_cannot_run_on_the_meta_device_still_builds_and_saves(
    plugin, tmp_path: Path
) -> None:
    """Sizing a model before allocating it builds it on PyTorch's meta device, where reading a
    value fails: that is no fault of the plug-in, and neither building nor saving refuses it."""
    plugin("plug_meta", textwrap.dedent(WIDE).replace(
        "def build(spec):\n", "def build(spec):\n    import torch\n    torch.ones(1).item()\n"
    ), {"meta": "plug_meta:build"})  # fmt: skip
    from vaekit.models.registry import build_model, weight_bytes

    config = vaekit.VAEConfig(data_shape=(6,), latent_dim=2, network="meta")
    assert weight_bytes(config) is None
    model = build_model(config)
    assert model.encoder[0].out_features == 24
    model.save(tmp_path / "m")
    torch.testing.assert_close(
        vaekit.load(tmp_path / "m").decoder[0].weight, model.decoder[0].weight
    )


def test_the_check_moves_no_running_statistic(plugin) -> None:
    plugin("plug_norm", """
        import torch
        from torch import nn

        class Net(nn.Sequential):
            def forward(self, x, condition=None):
                return super().forward(x)

        def build(spec):
            return (Net(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, spec.encoder_out)),
                    Net(nn.Linear(spec.decoder_in, 6 * spec.out_per_dim)))
    """, {"norm": "plug_norm:build"})  # fmt: skip
    model = VAE(data_shape=(6,), latent_dim=2, network="norm", likelihood="gaussian")
    norm = model.encoder[1]
    assert norm.training and int(norm.num_batches_tracked) == 0
    assert torch.equal(norm.running_mean, torch.zeros(8))
    spec = NetSpec(shape=(6,), encoder_out=4, decoder_in=2, out_per_dim=1)
    assert isinstance(build_networks("norm", spec)[0], nn.Module)


# -- modules handed over directly cannot be saved and loaded: refused, naming the plug-in way --


def test_encoder_and_decoder_arguments_point_to_the_entry_point_group() -> None:
    for role in ("encoder", "decoder"):
        with pytest.raises(ConfigError) as err:
            VAE(data_shape=(4,), **{role: nn.Linear(4, 4)})
        message = str(err.value)
        assert message.startswith(f"{role}= is not a setting") and "\n" not in message
        assert "'vaekit.networks'" in message and "Network plug-ins" in message


def test_fit_given_a_network_points_to_the_entry_point_group() -> None:
    import vaekit

    model = VAE(data_shape=(4,), latent_dim=2, hidden=(8,), likelihood="gaussian")
    with pytest.raises(ConfigError) as err:
        vaekit.fit(model, torch.randn(20, 4), epochs=1, decoder=nn.Linear(2, 4))
    message = str(err.value)
    assert message.startswith("decoder= is not a setting") and "'vaekit.networks'" in message


def test_a_swapped_network_is_refused_before_training(tmp_path: Path) -> None:
    model = VAE(data_shape=(4,), latent_dim=2, hidden=(8,), likelihood="gaussian")
    encoder = model.encoder
    with pytest.raises(
        ConfigError, match=r"encoder is built from its network setting.*vaekit\.networks"
    ):
        model.encoder = nn.Linear(4, 4)
    assert model.encoder is encoder


@pytest.mark.parametrize("how", ["method", "function", "one file"])
def test_save_refuses_a_network_changed_in_place(tmp_path: Path, how: str) -> None:
    import vaekit

    model = VAE(data_shape=(4,), latent_dim=2, hidden=(8,), likelihood="gaussian")
    model.decoder[0] = nn.Linear(2, 16)  # what load could not rebuild
    target = tmp_path / ("m.safetensors" if how == "one file" else "m")
    with pytest.raises(ConfigError) as err:
        model.save(target) if how == "method" else vaekit.save(model, target)
    message = str(err.value)
    assert "\n" not in message and "'vaekit.networks'" in message
    assert "decoder.0.bias is [16], not [8]" in message
    assert not target.exists()
