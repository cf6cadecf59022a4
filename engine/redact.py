"""Hide credentials written inside URLs before text leaves the process.

`redact(text)` replaces the userinfo of every URL in `text` (`http://user:key@host`, any
scheme: https, socks5, redis...) with `***@`. It is applied where text leaves Sluice: error
descriptions, `sluice check` lines, the JSON and table reports, config errors. A URL ends at
whitespace; inside one, everything up to its last `@` counts as userinfo, so a password with
a raw `@`, `/` or `#` is hidden too (at the price of hiding more than needed when a path or
query holds an `@`). `redact_url` does the same for a single value that may lack its
scheme or hold spaces (`user:key@host:11434`, as OLLAMA_HOST allows).
"""

from __future__ import annotations

import re

__all__ = ["redact", "redact_url"]

# A scheme, `://`, then the longest run of non-space characters that ends with `@`.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)\S*@")


def redact(text: str) -> str:
    """`text` with the userinfo of every URL in it replaced by `***@`."""
    return _USERINFO.sub(r"\1***@", text) if "@" in text else text


def redact_url(value: str) -> str:
    """One URL value (a config key, an environment variable), maybe without its scheme or
    malformed: everything between the scheme and the value's last `@` is hidden."""
    if "@" not in value:
        return value
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "", value
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}"
