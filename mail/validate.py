"""Pure validators for what a user types: an e-mail address, a host name, a port."""

from __future__ import annotations

import ipaddress
import re

MAX_EMAIL = 254
MAX_LOCAL = 64
MAX_HOST = 253

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_LOCAL_FORBIDDEN = set(' "(),:;<>@[\\]')


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 or c.isspace() for c in text)


def _idna(host: str) -> str | None:
    """ASCII (punycode) form of a host name, or None when it can't be encoded."""
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def _hostname_ok(ascii_host: str, *, need_dot: bool) -> bool:
    if not ascii_host or len(ascii_host) > MAX_HOST:
        return False
    labels = ascii_host.split(".")
    if need_dot and len(labels) < 2:
        return False
    if not all(_LABEL.match(label) for label in labels):
        return False
    # a top-level label that is all digits would make it an (invalid) IP address
    return not labels[-1].isdigit()


def parse_email(text: str | None) -> str | None:
    """A sane address with the domain lower-cased, or None."""
    if not text:
        return None
    value = text.strip()
    if not value or len(value) > MAX_EMAIL or _has_control(value):
        return None
    if value.count("@") != 1:
        return None
    local, domain = value.split("@")
    if not local or len(local) > MAX_LOCAL or any(c in _LOCAL_FORBIDDEN for c in local):
        return None
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return None
    domain = domain.lower().rstrip(".")
    ascii_domain = _idna(domain)
    if ascii_domain is None or not _hostname_ok(ascii_domain.lower(), need_dot=True):
        return None
    return f"{local}@{domain}"


def parse_port(text: str | int | None) -> int | None:
    """A TCP port 1..65535, or None."""
    if isinstance(text, bool) or text is None:
        return None
    if isinstance(text, int):
        return text if 1 <= text <= 65535 else None
    value = text.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 5:
        return None
    port = int(value)
    return port if 1 <= port <= 65535 else None


def ip_literal(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = text.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def parse_host(text: str | None) -> str | None:
    """A host name (lower-case, punycode for international names) or an IP literal
    (returned without brackets), or None. No scheme, path, port or spaces."""
    if not text:
        return None
    value = text.strip()
    if not value or len(value) > MAX_HOST + 2 or _has_control(value):
        return None
    ip = ip_literal(value)
    if ip is not None:
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
            return None
        return str(ip)
    if any(c in value for c in "/:@?#[]\\"):
        return None
    value = value.lower().rstrip(".")
    ascii_host = _idna(value)
    if ascii_host is None:
        return None
    ascii_host = ascii_host.lower()
    return ascii_host if _hostname_ok(ascii_host, need_dot=False) else None


def email_domain(address: str) -> str:
    return address.rsplit("@", 1)[-1].lower()


def email_local_part(address: str) -> str:
    return address.rsplit("@", 1)[0]


class BadServer(ValueError):
    """What the user typed is not ``host[:port]``; ``port_only`` when just the port is wrong."""

    def __init__(self, port_only: bool = False) -> None:
        super().__init__("bad port" if port_only else "bad server")
        self.port_only = port_only


_SERVER = re.compile(r"^(?:\[(?P<v6>[^\]]*)\]|(?P<name>[^:\[\]]*))(?::(?P<port>[^:]*))?$")


def parse_server(text: str | None, *, need_port: bool = False) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[IPv6]:port`` (or a bare IP literal) -> (host, port or None).
    Raises BadServer: ``:993``, ``host:``, ``host:99999``, spaces, schemes, garbage."""
    value = (text or "").strip()
    if not value:
        raise BadServer()
    if value.count(":") >= 2 and not value.startswith("[") and ip_literal(value) is not None:
        if need_port:  # a bare IPv6 address can't carry a port
            raise BadServer()
        return str(parse_host(value) or value), None
    match = _SERVER.match(value)
    if match is None:
        raise BadServer()
    raw_host = f"[{match['v6']}]" if match["v6"] is not None else match["name"] or ""
    if match["v6"] is not None and not isinstance(ip_literal(raw_host), ipaddress.IPv6Address):
        raise BadServer()
    host = parse_host(raw_host)
    if host is None:
        raise BadServer()
    if match["port"] is None:
        if need_port:
            raise BadServer()
        return host, None
    port = parse_port(match["port"])
    if port is None:
        raise BadServer(port_only=True)
    return host, port
