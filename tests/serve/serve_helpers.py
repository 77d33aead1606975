"""What the server tests share: the fixture runs' folder, the test server's limits and a client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from vaekit.serve import ServeSettings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs-c6fb4d5"
#: The limits of the main test server: small, so that going past them is cheap.
LIMITS = ServeSettings(max_batch=64, max_k=500, max_body_bytes=256 * 1024, max_points=300)


class Client:
    """An httpx client of a server at ``url``, with helpers that return the JSON answer."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=60)

    def post(self, path: str, body: Any, status: int = 200) -> dict[str, Any]:
        answer = self.http.post(path, json=body)
        assert answer.status_code == status, answer.text
        return answer.json()

    def get(self, path: str, status: int = 200) -> dict[str, Any]:
        answer = self.http.get(path)
        assert answer.status_code == status, answer.text
        return answer.json()


def run_cli(capsys: Any, *args: object) -> tuple[int, str, str]:
    """Run ``vaekit args`` in this process; returns (exit status, stdout, stderr)."""
    from vaekit.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
