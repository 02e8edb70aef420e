"""Server discovery: built-in table, autoconfig, well-known, MX, probing; all local."""

from __future__ import annotations

import time

import pytest

from mail.discovery import (
    AutoconfigError,
    RealDiscoveryEnv,
    _GuardResolver,
    discover,
    parse_autoconfig,
    probe_server,
)
from mail.netguard import HostGuard
from mail.providers import provider_by_id
from mail.tls import make_ssl_context
from mail.types import FailureKind, MailCheckError, MailServers, Security, ServerSettings
from tests.harness.mailstack import MailStack
from tests.harness.scripted_servers import (
    AutoconfigHttpServer,
    FakeDiscoveryEnv,
    autoconfig_xml,
    closed_port,
)

AUTOCONFIG = "/mail/config-v1.1.xml"
WELLKNOWN = "/.well-known/autoconfig/mail/config-v1.1.xml"


@pytest.fixture
async def http():
    server = await AutoconfigHttpServer().start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture(scope="module")
def ctx(mail_stack: MailStack):
    return make_ssl_context(str(mail_stack.ca_file))


async def test_builtin_domain_needs_no_network() -> None:
    env = FakeDiscoveryEnv()
    proposal = await discover("Someone@GMail.com", env)
    assert proposal is not None
    assert proposal.source == "builtin"
    assert proposal.provider_id == "gmail"
    gmail = provider_by_id("gmail")
    assert gmail is not None and proposal.servers == gmail.servers
    assert env.urls == [] and env.mx_queries == []


async def test_autoconfig_https(http) -> None:
    http.add("https.autoconfig.corp.example", AUTOCONFIG, autoconfig_xml())
    env = FakeDiscoveryEnv(http=http)
    proposal = await discover("ann@corp.example", env)
    assert proposal is not None and proposal.source == "autoconfig"
    assert proposal.servers == MailServers(
        ServerSettings("imap.corp.example", 993, Security.SSL),
        ServerSettings("smtp.corp.example", 465, Security.SSL),
    )
    assert proposal.username is None  # %EMAILADDRESS%: the address is the login
    assert (
        env.urls[0]
        == "https://autoconfig.corp.example/mail/config-v1.1.xml?emailaddress=ann@corp.example"
    )


async def test_autoconfig_http_fallback_and_local_part_login(http) -> None:
    xml = autoconfig_xml(
        imap=("mail.corp.example", 143, "STARTTLS"),
        smtp=("mail.corp.example", 587, "STARTTLS"),
        username="%EMAILLOCALPART%",
    )
    http.add("http.autoconfig.corp.example", AUTOCONFIG, xml)
    env = FakeDiscoveryEnv(http=http)
    proposal = await discover("ann@corp.example", env)
    assert proposal is not None and proposal.source == "autoconfig"
    assert proposal.servers.imap == ServerSettings("mail.corp.example", 143, Security.STARTTLS)
    assert proposal.servers.smtp == ServerSettings("mail.corp.example", 587, Security.STARTTLS)
    assert proposal.username == "ann"
    assert [u.split("://")[0] for u in env.urls] == ["https", "http"]


async def test_wellknown(http) -> None:
    http.add(
        "https.corp.example", WELLKNOWN, autoconfig_xml(imap=("imap.corp.example", 993, "SSL"))
    )
    env = FakeDiscoveryEnv(http=http)
    proposal = await discover("ann@corp.example", env)
    assert proposal is not None and proposal.source == "wellknown"
    assert len(env.urls) == 3


async def test_plain_and_unsafe_autoconfig_are_skipped(http) -> None:
    # https: only plain-text servers -> unusable; http: a DOCTYPE -> refused; well-known good
    http.add(
        "https.autoconfig.corp.example",
        AUTOCONFIG,
        autoconfig_xml(
            imap=("imap.corp.example", 143, "plain"), smtp=("smtp.corp.example", 25, "plain")
        ),
    )
    evil = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><clientConfig>&a;</clientConfig>'
    http.add("http.autoconfig.corp.example", AUTOCONFIG, evil)
    http.add("https.corp.example", WELLKNOWN, autoconfig_xml())
    proposal = await discover("ann@corp.example", FakeDiscoveryEnv(http=http))
    assert proposal is not None and proposal.source == "wellknown"


@pytest.mark.parametrize(
    ("mx", "provider"),
    [
        ("aspmx.l.google.com", "gmail"),
        ("mx.yandex.net", "yandex"),
        ("mx.yandex.ru", "yandex"),
        ("mxs.mail.ru", "mail.ru"),
        ("corp-example.mail.protection.outlook.com", "office365"),
        ("mta7.am0.yahoodns.net", "yahoo"),
    ],
)
async def test_mx_mapping(mx, provider) -> None:
    env = FakeDiscoveryEnv(mx={"corp.example": ["mx-backup.corp.example", mx]})
    proposal = await discover("ann@corp.example", env)
    assert proposal is not None and proposal.source == "mx"
    assert proposal.provider_id == provider
    assert env.mx_queries == ["corp.example"]


async def test_probe_local_dovecot(mail_stack, ctx) -> None:
    env = FakeDiscoveryEnv(
        probe_map={
            ("imap.corp.example", 993): mail_stack.imap_ssl_port,
            ("imap.corp.example", 143): mail_stack.imap_starttls_port,
            ("smtp.corp.example", 587): mail_stack.smtp_starttls_port,
            ("mail.corp.example", 465): closed_port(),
        },
        ssl_context=ctx,
    )
    started = time.monotonic()
    proposal = await discover("ann@corp.example", env, timeout=20)
    assert time.monotonic() - started < 5  # ~0.1 s; a step left to its timeout: 20 s
    assert proposal is not None and proposal.source == "probe"
    assert proposal.servers == MailServers(
        ServerSettings("imap.corp.example", 993, Security.SSL),
        ServerSettings("smtp.corp.example", 587, Security.STARTTLS),
    )
    assert len(env.probes) == 8


async def test_probe_starttls_only_company(mail_stack, ctx) -> None:
    env = FakeDiscoveryEnv(
        probe_map={
            ("mail.corp.example", 143): mail_stack.imap_starttls_port,
            ("mail.corp.example", 587): mail_stack.smtp_starttls_port,
        },
        ssl_context=ctx,
    )
    proposal = await discover("ann@corp.example", env, timeout=3)
    assert proposal is not None
    assert proposal.servers.imap == ServerSettings("mail.corp.example", 143, Security.STARTTLS)
    assert proposal.servers.smtp == ServerSettings("mail.corp.example", 587, Security.STARTTLS)


async def test_probe_rejects_untrusted_tls(mail_stack) -> None:
    env = FakeDiscoveryEnv(
        probe_map={("imap.corp.example", 993): mail_stack.imap_ssl_port},
        ssl_context=make_ssl_context(),  # without the test CA
    )
    assert await discover("ann@corp.example", env, timeout=3) is None


async def test_nothing_found(http) -> None:
    env = FakeDiscoveryEnv(http=http)
    started = time.monotonic()
    assert await discover("ann@nothing.example", env, timeout=20) is None
    assert time.monotonic() - started < 5  # ~0.05 s; a step left to its timeout: 20 s
    assert len(env.urls) == 3 and env.mx_queries == ["nothing.example"] and len(env.probes) == 8


@pytest.mark.parametrize("bad", ["", "no-at-sign", "a@b", "a b@c.example", "x@-bad-.example"])
async def test_invalid_address(bad) -> None:
    env = FakeDiscoveryEnv()
    assert await discover(bad, env) is None
    assert env.urls == []


# --------------------------------------------------------------------------- XML parsing
def test_parse_autoconfig_picks_first_imap_and_smtp() -> None:
    pop = """<incomingServer type="pop3"><hostname>pop.x.example</hostname><port>995</port>
      <socketType>SSL</socketType></incomingServer>"""
    servers, login = parse_autoconfig(autoconfig_xml(extra_incoming=pop), "a@x.example") or (
        None,
        None,
    )
    assert servers is not None
    assert servers.imap == ServerSettings("imap.x.example", 993, Security.SSL)
    assert login == "a@x.example"


@pytest.mark.parametrize(
    "doc",
    [
        b'<!DOCTYPE clientConfig SYSTEM "x"><clientConfig/>',
        b'<?xml version="1.0"?><!ENTITY x "y"><clientConfig/>',
        b"<clientConfig>" + b" " * 200_000 + b"</clientConfig>",
        b"<clientConfig><unclosed></clientConfig>",
    ],
)
def test_parse_autoconfig_refuses(doc) -> None:
    with pytest.raises(AutoconfigError):
        parse_autoconfig(doc, "a@x.example")


def test_parse_autoconfig_rejects_bad_hosts_and_ports() -> None:
    assert (
        parse_autoconfig(autoconfig_xml(imap=("http://evil/", 993, "SSL")), "a@x.example") is None
    )
    assert (
        parse_autoconfig(autoconfig_xml(smtp=("smtp.x.example", 99999, "SSL")), "a@x.example")
        is None
    )


# --------------------------------------------------------------------------- real env
async def test_real_env_http_get(http) -> None:
    http.add("plain", "/doc.xml", b"<clientConfig/>")
    http.add("plain", "/big.xml", b"x" * 200_000)
    url = f"http://127.0.0.1:{http.port}/plain/doc.xml"
    env = RealDiscoveryEnv(HostGuard(allow_private=True), make_ssl_context())
    assert await env.http_get(url, 3) == b"<clientConfig/>"
    assert await env.http_get(f"http://127.0.0.1:{http.port}/plain/big.xml", 3) is None
    assert await env.http_get(f"http://127.0.0.1:{http.port}/plain/missing.xml", 3) is None
    refusing = RealDiscoveryEnv(HostGuard(allow_private=False), make_ssl_context())
    assert await refusing.http_get(url, 3) is None
    assert await refusing.http_get(f"http://localhost:{http.port}/plain/doc.xml", 3) is None


async def test_real_env_redirects_are_checked(http) -> None:
    http.add("plain", "/doc.xml", b"<clientConfig/>")
    http.add_redirect("plain", "/ok", f"http://127.0.0.1:{http.port}/plain/doc.xml")
    http.add_redirect("plain", "/evil", f"http://127.0.0.2:{http.port}/plain/doc.xml")
    http.add_redirect("plain", "/loop", f"http://127.0.0.1:{http.port}/plain/loop")
    checked: list[str] = []

    class PickyGuard(HostGuard):
        async def resolve(self, host, port, protocol):
            checked.append(host)
            if host == "127.0.0.2":
                raise MailCheckError(protocol, FailureKind.PRIVATE_ADDRESS, host)
            return await super().resolve(host, port, protocol)

    env = RealDiscoveryEnv(PickyGuard(allow_private=True), make_ssl_context())
    base = f"http://127.0.0.1:{http.port}/plain"
    assert await env.http_get(f"{base}/ok", 3) == b"<clientConfig/>"
    assert await env.http_get(f"{base}/evil", 3) is None
    assert "127.0.0.2" in checked
    assert await env.http_get(f"{base}/loop", 3) is None


async def test_guard_resolver_refuses_private() -> None:
    with pytest.raises(MailCheckError):
        await _GuardResolver(HostGuard()).resolve("127.0.0.1", 80)
    result = await _GuardResolver(HostGuard(allow_private=True)).resolve("127.0.0.1", 80)
    assert result[0]["host"] == "127.0.0.1"


async def test_real_env_mx_lookup_fails_softly() -> None:
    env = RealDiscoveryEnv(HostGuard(), make_ssl_context())
    started = time.monotonic()
    assert await env.mx_hosts("nonexistent.invalid", 0.5) == []
    # NXDOMAIN at once, or at most the 0.5 s given without a resolver; dnspython's own
    # lifetime, were ours ignored, is 5 s
    assert time.monotonic() - started < 2.5


async def test_probe_server_real(mail_stack, ctx) -> None:
    guard = HostGuard(allow_private=True)
    host = mail_stack.host
    assert await probe_server(
        ServerSettings(host, mail_stack.imap_ssl_port, Security.SSL),
        ssl_context=ctx,
        guard=guard,
        protocol="imap",
    )
    assert await probe_server(
        ServerSettings(host, mail_stack.imap_starttls_port, Security.STARTTLS),
        ssl_context=ctx,
        guard=guard,
        protocol="imap",
    )
    assert await probe_server(
        ServerSettings(host, mail_stack.smtp_ssl_port, Security.SSL),
        ssl_context=ctx,
        guard=guard,
        protocol="smtp",
    )
    assert await probe_server(
        ServerSettings(host, mail_stack.smtp_starttls_port, Security.STARTTLS),
        ssl_context=ctx,
        guard=guard,
        protocol="smtp",
    )
    # wrong security for the port, closed port, private address refused
    assert not await probe_server(
        ServerSettings(host, mail_stack.imap_starttls_port, Security.SSL),
        ssl_context=ctx,
        guard=guard,
        protocol="imap",
        timeout=2,
    )
    assert not await probe_server(
        ServerSettings(host, closed_port(), Security.SSL), ssl_context=ctx, guard=guard
    )
    assert not await probe_server(
        ServerSettings(host, mail_stack.imap_ssl_port, Security.SSL),
        ssl_context=ctx,
        guard=HostGuard(),
        protocol="imap",
    )
