from __future__ import annotations

import ipaddress

import pytest

from tessera.core.notifications.errors import InvalidWebhookUrl
from tessera.core.notifications.targets import check_url, is_public, private_targets_allowed
from tests.conftest import test_settings as make_settings


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/tessera", "http://example.org:8080/in?x=1", "https://93.184.215.14/hook"]
)
def test_public_http_urls_are_accepted_everywhere(url: str) -> None:
    assert check_url(url, allow_private=False) == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "javascript:alert(1)",
        "example.com/hook",
        "https://",
        "https://user:pass@example.com/hook",
        "https://example.com/hook#part",
        "https://example.com:0/hook",
        "https://example.com:99999/hook",
        "https://exa mple.com/hook",
        "https://example.com/\x00",
    ],
)
def test_urls_that_are_not_plain_http_are_refused(url: str) -> None:
    with pytest.raises(InvalidWebhookUrl):
        check_url(url, allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8000/hook",
        "http://api.localhost/hook",
        "http://localhost./hook",
        "http://127.0.0.1/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/hook",
        "http://[::1]/hook",
        "http://[fd00::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_private_targets_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(InvalidWebhookUrl):
        check_url(url, allow_private=False)
    assert check_url(url, allow_private=True) == url


@pytest.mark.parametrize(
    ("address", "public"),
    [("8.8.8.8", True), ("2001:4860:4860::8888", True), ("10.0.0.1", False), ("::1", False), ("224.0.0.1", False)],
)
def test_only_global_unicast_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


def test_private_targets_are_refused_by_default_only_in_production() -> None:
    assert private_targets_allowed(make_settings())
    production = make_settings(environment="production")
    assert not private_targets_allowed(production)
    assert private_targets_allowed(
        make_settings(environment="production", notifications={"allow_private_targets": True})
    )
    assert not private_targets_allowed(make_settings(notifications={"allow_private_targets": False}))
