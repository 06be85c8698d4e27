"""Tessera itself in real processes (`python -m tessera.cli serve ...`), for tests that need more
than one: kill one, watch the other degrade, start it again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import TEST_SECRET


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tessera_env(**settings: str) -> dict[str, str]:
    """This environment without any TESSERA_ variable, plus the test secret and `settings`."""
    return {
        **{key: value for key, value in os.environ.items() if not key.startswith("TESSERA_")},
        "TESSERA_SECRET_KEY": TEST_SECRET,
        "TESSERA_LOG_LEVEL": "WARNING",
        "TESSERA_RATE_LIMIT__ENABLED": "false",
        # Models load on first use: a warm-up would spend seconds of CPU in every process started.
        "TESSERA_AI__WARM_UP": "false",
        **settings,
    }


class TesseraProcess:
    """`tessera serve <args>` on a free port (kept across restarts), logging to `log`."""

    def __init__(self, env: dict[str, str], log: Path, *, args: tuple[str, ...] = (), ready_path: str) -> None:
        self.port = free_port()
        self.env = env
        self.log = log
        self.args = args
        self.ready_path = ready_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def migrate(self) -> None:
        subprocess.run([sys.executable, "-m", "tessera.cli", "migrate"], env=self.env, check=True, capture_output=True)

    def start(self, timeout: float = 90) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tessera.cli", "serve", "--port", str(self.port), *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}{self.ready_path}", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"tessera {' '.join(self.args)} did not start:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
