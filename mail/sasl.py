"""SASL messages for OAuth2 logins, shared by IMAP and SMTP.

Two mechanisms carry a bearer token:

* OAUTHBEARER (RFC 7628): ``n,a=<user>,^Ahost=<host>^Aport=<port>^Aauth=Bearer <token>^A^A``.
  A refused token gets an error challenge (base64 JSON: status, schemes, scope); the client
  must answer it with the single byte 0x01 (base64 ``AQ==``, RFC 7628 3.2.3) and then gets the
  final failure.
* XOAUTH2 (Google, Microsoft): ``user=<user>^Aauth=Bearer <token>^A^A``. A refused token gets
  the same kind of error challenge, answered with an empty response.

`choose` prefers OAUTHBEARER when the server offers it. Nothing here logs; `scrub` removes
the token from any text before it is shown or logged.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable

OAUTHBEARER = "OAUTHBEARER"
XOAUTH2 = "XOAUTH2"
MAX_CHALLENGE = 500

# RFC 6750 b64token (what a bearer token is made of), generously: visible ASCII, no space
_TOKEN = re.compile(r"[\x21-\x7e]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def choose(offered: Iterable[str]) -> str | None:
    """The OAuth2 mechanism to use among the server's SASL mechanisms (any case), or None."""
    names = {m.strip().upper() for m in offered}
    if OAUTHBEARER in names:
        return OAUTHBEARER
    if XOAUTH2 in names:
        return XOAUTH2
    return None


def _check(user: str, token: str) -> None:
    if not user or _CONTROL.search(user):
        raise ValueError("the login contains characters a server can't accept")
    if not _TOKEN.fullmatch(token):
        raise ValueError("the access token contains characters a server can't accept")


def _saslname(user: str) -> str:
    """RFC 5801 saslname: "=" and "," escaped."""
    return user.replace("=", "=3D").replace(",", "=2C")


def client_response(mechanism: str, user: str, token: str, host: str, port: int) -> bytes:
    """The client's first message (not base64-encoded). ValueError for values that can't be
    sent (control characters in the login, a token that isn't visible ASCII)."""
    _check(user, token)
    if mechanism == OAUTHBEARER:
        if _CONTROL.search(host):
            raise ValueError("the server name contains control characters")
        text = f"n,a={_saslname(user)},\x01host={host}\x01port={int(port)}\x01auth=Bearer {token}\x01\x01"
    elif mechanism == XOAUTH2:
        text = f"user={user}\x01auth=Bearer {token}\x01\x01"
    else:
        raise ValueError(f"not an OAuth2 mechanism: {mechanism}")
    return text.encode("utf-8")


def encoded_response(mechanism: str, user: str, token: str, host: str, port: int) -> str:
    """`client_response`, base64-encoded: what goes on the wire."""
    return base64.b64encode(client_response(mechanism, user, token, host, port)).decode("ascii")


def error_answer(mechanism: str) -> str:
    """What the client answers to an error challenge (base64; empty for XOAUTH2)."""
    return base64.b64encode(b"\x01").decode("ascii") if mechanism == OAUTHBEARER else ""


def describe_challenge(raw: bytes | str, token: str | None = None) -> str:
    """An error challenge (base64 JSON) as readable text, at most MAX_CHALLENGE characters,
    with `token` removed should a server echo it."""
    data = raw.encode("ascii", "replace") if isinstance(raw, str) else bytes(raw)
    data = data.strip()
    try:
        text = base64.b64decode(data, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        text = data.decode("ascii", "replace")
    return scrub(_CONTROL.sub(" ", text).strip(), token)[:MAX_CHALLENGE]


def scrub(text: str, token: str | None) -> str:
    """`text` with `token` replaced by ***."""
    if token:
        text = text.replace(token, "***")
    return text
