"""Where the control API may listen and who gets in: HOST:PORT parsing, the loopback rule,
SLUICE_TOKEN and the bearer check."""

from __future__ import annotations

import pytest

from sluice.engine.control.bind import (
    Bind,
    BindError,
    check_exposure,
    parse_bind,
    token_from_env,
    token_matches,
)


@pytest.mark.parametrize(
    ("text", "host", "port", "loopback"),
    [
        ("127.0.0.1:0", "127.0.0.1", 0, True),
        ("127.0.0.2:8321", "127.0.0.2", 8321, True),
        ("localhost:80", "localhost", 80, True),
        ("[::1]:9000", "::1", 9000, True),
        ("0.0.0.0:8321", "0.0.0.0", 8321, False),
        ("[::]:8321", "::", 8321, False),
        (":8321", "", 8321, False),
        ("10.1.2.3:65535", "10.1.2.3", 65535, False),
        ("node-7.cluster.local:8321", "node-7.cluster.local", 8321, False),
    ],
)
def test_addresses_parse_and_only_loopback_counts_as_private(
    text: str, host: str, port: int, loopback: bool
) -> None:
    bind = parse_bind(text)
    assert bind == Bind(host, port)
    assert bind.loopback is loopback


@pytest.mark.parametrize(
    "text",
    [
        "8321",
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:99999",
        "127.0.0.1:-1",
        "::1:80",
        "[127.0.0.1]:80",
        "[nope]:80",
        "a b:80",
        "host/x:80",
        "127.0.0.1:8o",
    ],
)
def test_bad_addresses_are_refused_with_what_is_allowed(text: str) -> None:
    with pytest.raises(BindError) as caught:
        parse_bind(text)
    message = str(caught.value)
    assert "\n" not in message
    assert "HOST:PORT" in message or "port must be" in message or "IPv6" in message


def test_beyond_loopback_a_token_is_required() -> None:
    check_exposure(parse_bind("127.0.0.1:0"), None)
    check_exposure(parse_bind("0.0.0.0:0"), "a-long-random-token")
    with pytest.raises(BindError, match="SLUICE_TOKEN"):
        check_exposure(parse_bind("0.0.0.0:0"), None)
    with pytest.raises(BindError, match="every interface"):
        check_exposure(parse_bind(":8321"), None)


def test_the_token_comes_from_the_environment_and_empty_means_none() -> None:
    assert token_from_env({"SLUICE_TOKEN": "s3cret-value"}) == "s3cret-value"
    assert token_from_env({"SLUICE_TOKEN": ""}) is None
    assert token_from_env({}) is None


def test_only_the_exact_bearer_token_matches() -> None:
    token = "s3cret-value"
    assert token_matches("Bearer s3cret-value", token)
    assert token_matches("bearer s3cret-value", token)
    for header in (
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic s3cret-value",
        "Bearer s3cret-valu",
        "Bearer s3cret-value2",
        "s3cret-value",
        "Bearer S3CRET-VALUE",
        "Bearer s3cr\udcffet",
    ):
        assert not token_matches(header, token), header
