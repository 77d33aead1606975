"""The README's Python example runs as written (with fewer epochs and samples, and a temporary
run folder), so the first thing a user copies keeps working."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path: Path) -> None:
    (code,) = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    shortened = (
        code.replace("epochs=50", "epochs=2")
        .replace("k=1000", "k=5")
        .replace('"runs/mine"', repr(str(tmp_path / "mine")))
    )
    assert shortened.count(str(tmp_path)) == 2, "the example's run folder moved; update this test"
    namespace: dict = {}
    exec(compile(shortened, str(README), "exec"), namespace)
    assert namespace["z"].shape == (namespace["ds"].test.shape[0], 8)
    assert (namespace["same"].encode(namespace["ds"].test).mean == namespace["z"]).all()
    rows = namespace["rows"]  # in the table's units: "mean area" (column 3) is in the hundreds
    assert rows.shape == (10, 30) and 100 < float(rows[:, 3].mean()) < 3000


def test_every_python_name_the_readme_gives_exists() -> None:
    """Each `vaekit.x.y(...)` the prose names resolves as written (`vaekit.evaluate` is the
    report function, so `vaekit.evaluate.refine_posterior` is no name)."""
    import functools

    import vaekit

    names = set(re.findall(r"`(vaekit(?:\.\w+)+)[(`]", README.read_text()))
    assert "vaekit.models.categorical.log_likelihood_exact" in names  # the pattern finds them
    for name in sorted(names):
        parts = name.split(".")[1:]
        assert functools.reduce(getattr, parts, vaekit) is not None, name
