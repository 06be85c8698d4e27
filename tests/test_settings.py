from __future__ import annotations

import re
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError

from tessera.settings import MIN_SECRET_KEY_LENGTH, SECRET_KEY_FILE, Settings, format_settings_error

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
LONG_SECRET = "s" * MIN_SECRET_KEY_LENGTH
# Variables the docs may name that are not settings.
NOT_SETTINGS = {"TESSERA_TEST_BACKENDS"}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No TESSERA_* variable or .env file of the machine running the tests leaks in."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("TESSERA_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(**values: Any) -> Settings:
    return Settings(**values)


def settings_error(**values: Any) -> str:
    with pytest.raises(ValidationError) as raised:
        Settings(**values)
    return format_settings_error(raised.value)


def env_names(model: type[BaseModel], prefix: str = "TESSERA_") -> list[str]:
    """Every setting's environment variable, nested sections included."""
    names = []
    for field_name, field in model.model_fields.items():
        name = prefix + field_name.upper()
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names.extend(env_names(annotation, name + "__"))
        else:
            names.append(name)
    return names


class TestEnvironment:
    def test_nested_setting_is_read_with_prefix_and_double_underscore(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TESSERA_AUTH__ACCESS_TOKEN_TTL_SECONDS", "600")
        monkeypatch.setenv("TESSERA_RATE_LIMIT__AUTH", "5/minute")

        settings = load()

        assert settings.auth.access_token_ttl_seconds == 600
        assert settings.rate_limit.auth == "5/minute"
        # The rest of the section keeps its defaults.
        assert settings.auth.refresh_token_ttl_seconds == 30 * 86_400

    def test_top_level_setting_is_read_with_prefix(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TESSERA_LOG_LEVEL", "DEBUG")
        monkeypatch.setenv("LOG_LEVEL", "ERROR")  # without the prefix: not ours

        assert load().log_level == "DEBUG"

    def test_dotenv_file_in_working_directory_is_read(self, clean_environment: Path) -> None:
        (clean_environment / ".env").write_text("TESSERA_HTTP__PORT=9001\n")

        assert load().http.port == 9001

    def test_list_setting_is_read_as_json(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TESSERA_HTTP__CORS_ORIGINS", '["https://app.example.com"]')

        assert load().http.cors_origins == ["https://app.example.com"]


class TestDefaults:
    def test_data_dir_and_sqlite_database_in_it(self, clean_environment: Path) -> None:
        settings = load()

        assert settings.data_dir == Path("./tessera-data")
        expected = (clean_environment / "tessera-data" / "tessera.db").resolve()
        assert settings.resolved_database_url == f"sqlite+aiosqlite:///{expected}"
        assert settings.is_sqlite

    def test_development_without_secret_key_is_allowed(self) -> None:
        settings = load()

        assert settings.environment == "development"
        assert settings.secret_key is None
        assert settings.redis_url is None
        assert settings.rate_limit.enabled


class TestDatabaseUrl:
    @pytest.mark.parametrize(
        ("given", "expected"),
        [
            ("postgres://u:p@db:5432/tessera", "postgresql+asyncpg://u:p@db:5432/tessera"),
            ("postgresql://u:p@db/tessera", "postgresql+asyncpg://u:p@db/tessera"),
            ("postgresql+asyncpg://u:p@db/tessera", "postgresql+asyncpg://u:p@db/tessera"),
            ("sqlite:////var/lib/tessera/t.db", "sqlite+aiosqlite:////var/lib/tessera/t.db"),
        ],
    )
    def test_url_is_normalised_to_the_async_driver(self, given: str, expected: str) -> None:
        settings = load(database_url=given)

        assert settings.database_url == expected
        assert settings.resolved_database_url == expected
        assert settings.is_sqlite == expected.startswith("sqlite")

    def test_postgres_url_from_environment_is_normalised(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TESSERA_DATABASE_URL", "postgres://u:p@db/tessera")

        assert load().database_url == "postgresql+asyncpg://u:p@db/tessera"

    def test_unknown_database_is_refused_naming_the_variable(self) -> None:
        message = settings_error(database_url="mysql://u:p@db/tessera")

        assert "TESSERA_DATABASE_URL" in message
        assert "sqlite:// or postgresql://" in message


class TestInvalidValues:
    def test_nested_value_out_of_range_names_the_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TESSERA_AUTH__ACCESS_TOKEN_TTL_SECONDS", "5")

        message = settings_error()

        assert "TESSERA_AUTH__ACCESS_TOKEN_TTL_SECONDS" in message
        assert "greater than or equal to 60" in message

    def test_value_of_wrong_type_names_the_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TESSERA_HTTP__PORT", "eighty")

        assert "TESSERA_HTTP__PORT" in settings_error()

    def test_every_invalid_variable_is_listed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TESSERA_LOG_LEVEL", "LOUD")
        monkeypatch.setenv("TESSERA_RATE_LIMIT__STRATEGY", "token-bucket")

        message = settings_error()

        assert message.startswith("Invalid settings:")
        assert "TESSERA_LOG_LEVEL" in message
        assert "TESSERA_RATE_LIMIT__STRATEGY" in message

    def test_bad_list_item_names_the_list_variable(self) -> None:
        message = settings_error(modules=["support", "astrology"])

        assert re.search(r"^  TESSERA_MODULES\b", message, re.MULTILINE), message
        assert "TESSERA_MODULES__1" not in message

    def test_bad_redis_url_names_the_variable(self) -> None:
        message = settings_error(redis_url="http://cache:6379")

        assert "TESSERA_REDIS_URL" in message

    def test_list_variable_that_is_not_json_names_the_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TESSERA_MODULES", "support")

        with pytest.raises(SettingsError) as raised:
            load()

        assert "TESSERA_MODULES: not valid JSON" in format_settings_error(raised.value)

    def test_format_settings_error_passes_other_errors_through(self) -> None:
        assert format_settings_error(RuntimeError("disk full")) == "disk full"


class TestSecretKey:
    def test_production_without_secret_key_fails(self) -> None:
        message = settings_error(environment="production")

        assert "TESSERA_SECRET_KEY is required" in message

    def test_production_with_secret_key_starts(self) -> None:
        settings = load(environment="production", secret_key=LONG_SECRET)

        assert settings.signing_key == LONG_SECRET

    @pytest.mark.parametrize("environment", ["development", "production"])
    def test_short_secret_key_fails(self, environment: str) -> None:
        message = settings_error(environment=environment, secret_key="s" * (MIN_SECRET_KEY_LENGTH - 1))

        assert f"at least {MIN_SECRET_KEY_LENGTH} characters" in message
        assert "TESSERA_SECRET_KEY" in message

    def test_generated_key_is_written_once_with_mode_0600_and_reused(self, tmp_path: Path) -> None:
        data_dir = tmp_path / "fresh" / "data"

        first = load(data_dir=data_dir).signing_key
        key_file = data_dir / SECRET_KEY_FILE

        assert key_file.read_text() == first
        assert len(first) >= MIN_SECRET_KEY_LENGTH
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert load(data_dir=data_dir).signing_key == first
        assert load(data_dir=tmp_path / "other").signing_key != first

    def test_concurrent_first_starts_agree_on_one_key(self, tmp_path: Path) -> None:
        # Several workers starting at once on a fresh data dir must all sign with the same key.
        data_dir = tmp_path / "data"
        barrier = threading.Barrier(8)
        keys: list[str] = []

        def start() -> None:
            settings = load(data_dir=data_dir)
            barrier.wait()
            keys.append(settings.signing_key)

        threads = [threading.Thread(target=start) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert len(keys) == 8
        assert len(set(keys)) == 1
        assert len(keys[0]) >= MIN_SECRET_KEY_LENGTH
        assert (data_dir / SECRET_KEY_FILE).read_text() == keys[0]
        assert sorted(path.name for path in data_dir.iterdir()) == [SECRET_KEY_FILE]

    def test_configured_key_writes_no_file(self, tmp_path: Path) -> None:
        settings = load(data_dir=tmp_path / "data", secret_key=LONG_SECRET)

        assert settings.signing_key == LONG_SECRET
        assert not (tmp_path / "data" / SECRET_KEY_FILE).exists()

    def test_truncated_key_file_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / SECRET_KEY_FILE).write_text("short\n")

        with pytest.raises(ValueError, match=SECRET_KEY_FILE):
            _ = load(data_dir=tmp_path).signing_key


class TestDocumentation:
    def test_every_setting_is_documented(self) -> None:
        assert DOCS.exists(), f"{DOCS} is missing: it must document every setting"
        text = DOCS.read_text()

        missing = [name for name in env_names(Settings) if not re.search(rf"\b{name}\b", text)]

        assert not missing, "settings missing from docs/configuration.md:\n  " + "\n  ".join(missing)

    def test_documentation_names_no_unknown_setting(self) -> None:
        assert DOCS.exists(), f"{DOCS} is missing: it must document every setting"
        known = set(env_names(Settings))

        unknown = sorted(set(re.findall(r"\bTESSERA_[A-Z0-9_]*[A-Z0-9]\b", DOCS.read_text())) - known - NOT_SETTINGS)

        assert not unknown, "docs/configuration.md names settings that do not exist:\n  " + "\n  ".join(unknown)

    def test_walk_covers_nested_sections(self) -> None:
        names = env_names(Settings)

        assert "TESSERA_AUTH__ACCESS_TOKEN_TTL_SECONDS" in names
        assert "TESSERA_RATE_LIMIT__TRUST_FORWARDED_FOR" in names
        assert "TESSERA_DATABASE_URL" in names
        assert "TESSERA_AUTH" not in names
