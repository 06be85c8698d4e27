from __future__ import annotations

from pathlib import Path

import pytest

from tessera.settings import Settings
from tests.conftest import test_settings


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # The regex PII detector: the learned-wording check runs without loading spaCy. The fake mailer
    # keeps hand-off e-mails in `FakeMailer.outbox`.
    return test_settings(
        database_url=database_url, data_dir=tmp_path / "data", privacy={"detector": "fake"},
        notifications={"mailer": "fake"},
    )  # fmt: skip
