"""Where the control API listens and who may talk to it: HOST:PORT, the loopback rule, the
bearer token from SLUICE_TOKEN.

The policy in one place: loopback by default; a non-loopback address only with a token (an
open control port on a network would let anyone retune or cancel the work); the token comes
from the environment, is compared in constant time, and is never shown anywhere.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "DEFAULT_BIND",
    "TOKEN_ENV",
    "Bind",
    "BindError",
    "check_exposure",
    "is_loopback_host",
    "parse_bind",
    "token_from_env",
    "token_matches",
]

DEFAULT_BIND = "127.0.0.1:0"
TOKEN_ENV = "SLUICE_TOKEN"
_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_BIND_RULE = (
    "expected HOST:PORT, e.g. 127.0.0.1:8321, [::1]:8321 or 0.0.0.0:8321 (port 0 = any free port)"
)


class BindError(ValueError):
    """An address that cannot or may not be served; the message is one line saying why."""


@dataclass(frozen=True, slots=True)
class Bind:
    """A parsed HOST:PORT. `host` is an IP literal or a host name; "" means every interface."""

    host: str
    port: int

    @property
    def loopback(self) -> bool:
        """True when only this machine can connect (127.0.0.0/8, ::1 or `localhost`)."""
        return is_loopback_host(self.host)


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback IP literals; any other name counts as reachable from
    the network (it is not resolved: a name can point anywhere later)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_bind(text: str) -> Bind:
    """`HOST:PORT` (IPv6 in brackets) as a Bind; BindError naming what is allowed."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or len(port_text) > 5:
        raise BindError(f"--bind {text!r}: {_BIND_RULE}")
    port = int(port_text)
    if port > 65535:
        raise BindError(f"--bind {text!r}: the port must be from 0 to 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            if ipaddress.ip_address(host).version != 6:
                raise ValueError(host)
        except ValueError:
            raise BindError(f"--bind {text!r}: brackets hold an IPv6 address, like [::1]") from None
    elif ":" in host:
        raise BindError(f"--bind {text!r}: an IPv6 address goes in brackets, like [::1]:8321")
    elif host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not _HOSTNAME.match(host):
                raise BindError(f"--bind {text!r}: {_BIND_RULE}") from None
    return Bind(host, port)


def token_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """SLUICE_TOKEN from the environment; None when unset or empty (an empty token would
    let anyone in, so it counts as no token)."""
    value = (os.environ if env is None else env).get(TOKEN_ENV, "")
    return value or None


def check_exposure(bind: Bind, token: str | None) -> None:
    """Refuse to serve beyond this machine without a token (BindError, one line)."""
    if not bind.loopback and not token:
        where = bind.host or "every interface"
        raise BindError(
            f"refusing to bind {where} (reachable from the network) without a token: "
            f"set {TOKEN_ENV} in the environment, or bind 127.0.0.1"
        )


def token_matches(authorization: str | None, token: str) -> bool:
    """True when an `Authorization` header carries exactly `Bearer <token>` (constant time)."""
    if not authorization:
        return False
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    given = credential.strip().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, token.encode("utf-8", "surrogateescape"))
