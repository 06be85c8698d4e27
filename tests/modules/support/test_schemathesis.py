"""Schemathesis over the support module's OpenAPI operations, against a real server: generated
requests (valid and invalid, from the schema) never get a 5xx."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.processes import TesseraProcess, tessera_env

SUPPORT_PATHS = r"^/api/v1/(faqs|faq-categories|support|analytics)(/|$)"


SCHEMATHESIS = shutil.which("schemathesis", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(SCHEMATHESIS is None, reason="schemathesis is not installed (a dev dependency)")
def test_generated_requests_never_get_a_5xx(tmp_path: Path) -> None:
    server = TesseraProcess(
        tessera_env(
            TESSERA_DATA_DIR=str(tmp_path / "data"),
            TESSERA_EMBEDDINGS__PROVIDER="fake",
            TESSERA_PRIVACY__DETECTOR="fake",
            TESSERA_NOTIFICATIONS__MAILER="fake",
            TESSERA_JOBS__ENABLED="false",
        ),
        tmp_path / "server.log",
        ready_path="/health/ready",
    )
    server.migrate()
    server.start()
    try:
        registered = httpx.post(
            f"{server.url}/api/v1/auth/register",
            json={"email": "fuzz@example.com", "password": "Analytical-Engine-1843", "name": "Fuzz"},
        )
        assert registered.status_code == 201, registered.text
        token = registered.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        faq = {"question": "How do I reset my PIN?", "answer": "In the app.", "status": "published"}
        assert httpx.post(f"{server.url}/api/v1/faqs", json=faq, headers=headers).status_code == 201
        result = subprocess.run(
            [
                str(SCHEMATHESIS), "run", f"{server.url}/openapi.json",
                "--include-path-regex", SUPPORT_PATHS, "--checks", "not_a_server_error",
                "--max-examples", "15", "--seed", "7", "--generation-deterministic",
                "--phases", "examples,coverage,fuzzing", "--workers", "1", "--request-timeout", "30",
                "-H", f"Authorization: Bearer {token}",
            ],
            capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path,  # its cache goes there
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
        tested = re.search(r"Tested: (\d+)", result.stdout)
        assert tested is not None, result.stdout[-3000:]
        assert int(tested.group(1)) >= 20  # every support operation, not a regex that matched nothing
    finally:
        server.stop()
