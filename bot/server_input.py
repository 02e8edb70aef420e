"""Mail servers typed by the user: `host:port` for one server, or both at once
(`imap.example.com:993 smtp.example.com:465`, IMAP first). Shared by the connect wizard and
Reconnect; pure (no I/O), the handlers render the outcome."""

from __future__ import annotations

from typing import Any

from mail.netguard import is_forbidden_address
from mail.types import Security
from mail.validate import BadServer, ip_literal, parse_server

# the well-known ports, and what they tell about the protocol and its security
PORT_SECURITY = {
    ("imap", 993): Security.SSL,
    ("imap", 143): Security.STARTTLS,
    ("smtp", 465): Security.SSL,
    ("smtp", 587): Security.STARTTLS,
    ("smtp", 25): Security.STARTTLS,
}

Typed = tuple[str, int | None]  # host, port (None: keep the current one)


class ServerInputRefused(Exception):
    """What was typed is not usable; `key` (a message key) and `values` make the answer.
    `not_a_server`: it does not even look like server settings (it may be a secret)."""

    def __init__(self, key: str, *, not_a_server: bool = False, **values: Any) -> None:
        super().__init__(key)
        self.key = key
        self.values = values
        self.not_a_server = not_a_server


def parse_servers(text: str, *, allow_private: bool, strict: bool = False) -> list[Typed]:
    """One or two `host[:port]`. `strict` (where the text may also be a password): every server
    needs a port and a dotted name or an IP address. Raises ServerInputRefused."""
    tokens = text.split()
    if not 1 <= len(tokens) <= 2:
        raise ServerInputRefused("error.bad_server", not_a_server=True)
    found: list[Typed] = []
    for token in tokens:
        try:
            host, port = parse_server(token, need_port=strict)
        except BadServer as exc:
            if exc.port_only:
                raise ServerInputRefused("error.bad_port") from None
            raise ServerInputRefused("error.bad_server", not_a_server=True) from None
        literal = ip_literal(host)
        if strict and literal is None and "." not in host:
            raise ServerInputRefused("error.bad_server", not_a_server=True)
        if literal is not None and not allow_private and is_forbidden_address(literal):
            raise ServerInputRefused("error.private_host", host=host)
        found.append((host, port))
    return found


def guess_protocol(host: str, port: int | None) -> str | None:
    """"imap" / "smtp" from a well-known port or the host's first label, else None."""
    for proto, known in PORT_SECURITY:
        if port == known:
            return proto
    for proto in ("imap", "smtp"):
        if host.startswith(f"{proto}."):
            return proto
    return None


def assign(found: list[Typed], proto: str | None) -> dict[str, Typed]:
    """{"imap": ..., "smtp": ...} for what was typed: two servers are IMAP then SMTP; one is
    `proto`'s (or guessed). Raises ServerInputRefused when one server can't be told apart."""
    if len(found) == 2:
        return {"imap": found[0], "smtp": found[1]}
    host, port = found[0]
    target = proto or guess_protocol(host, port)
    if target is None:
        shown = f"[{host}]" if ":" in host else host
        raise ServerInputRefused("error.which_server", server=f"{shown}:{port}" if port else shown)
    return {target: (host, port)}


def as_update(servers: dict[str, Typed]) -> dict[str, Any]:
    """`imap_host`, `imap_port`, `imap_sec`, ... for what was typed; a well-known port sets
    the security, another port keeps it."""
    update: dict[str, Any] = {}
    for proto, (host, port) in servers.items():
        update[f"{proto}_host"] = host
        if port is not None:
            update[f"{proto}_port"] = port
            security = PORT_SECURITY.get((proto, port))
            if security is not None:
                update[f"{proto}_sec"] = security.value
    return update
