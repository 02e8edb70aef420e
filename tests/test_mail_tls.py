"""mail.tls.TLSProtocol against asyncio's own TLS server (an independent implementation on
the other side): data both ways, close_notify both ways, and the handshake failures mapped
as asyncio's TLS transport raised them (so the user sees the same TLS_UNTRUSTED /
TLS_FAILED / TIMEOUT)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trustme

from mail.netguard import as_mail_error
from mail.tls import READ_SIZE, TLSProtocol, TLSTransport, make_ssl_context
from mail.types import FailureKind, Protocol

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", HOST).configure_cert(ctx)
    return ctx


@pytest.fixture
def client_ctx(ca: trustme.CA, tmp_path: Any) -> ssl.SSLContext:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return make_ssl_context(str(path))


class App(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Any = None
        self.data = bytearray()
        self.eof = False
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.grown = asyncio.Event()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert len(data) <= READ_SIZE
        self.data += data
        self.grown.set()

    def eof_received(self) -> bool | None:
        self.eof = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)

    async def wait_for(self, size: int) -> None:
        while len(self.data) < size:
            self.grown.clear()
            await asyncio.wait_for(self.grown.wait(), 10)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(handler: Handler, ctx: ssl.SSLContext | None) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, HOST, 0, ssl=ctx)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)


async def connect(
    port: int, ctx: ssl.SSLContext, app: asyncio.Protocol, timeout: float = 10  # noqa: ASYNC109
) -> TLSProtocol:
    tls = TLSProtocol(ctx, app, server_hostname="localhost", handshake_timeout=timeout)
    await asyncio.get_running_loop().create_connection(lambda: tls, HOST, port)
    await asyncio.wait_for(tls.handshake, 10)
    return tls


async def test_data_both_ways_and_close_notify(server_ctx, client_ctx) -> None:
    seen_eof = asyncio.get_running_loop().create_future()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        seen_eof.set_result(True)  # the client's close_notify, read as EOF
        writer.close()

    async with serving(echo, server_ctx) as port:
        app = App()
        await connect(port, client_ctx, app)
        transport = app.transport
        assert isinstance(transport, TLSTransport)
        assert transport.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        assert transport.get_extra_info("peercert")["subjectAltName"]
        assert transport.get_extra_info("cipher")
        assert transport.get_extra_info("socket") is not None
        payload = bytes(range(256)) * 1200  # 300 KiB in one write: many TLS records
        transport.write(payload)
        await app.wait_for(len(payload))
        assert bytes(app.data) == payload
        transport.close()
        assert transport.is_closing()
        assert await asyncio.wait_for(seen_eof, 10) is True
        assert await asyncio.wait_for(app.lost, 10) is None


async def test_peer_close_notify_is_eof_then_connection_lost(server_ctx, client_ctx) -> None:
    async def greet_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK hello\r\n")
        await writer.drain()
        writer.close()  # asyncio sends close_notify

    async with serving(greet_and_close, server_ctx) as port:
        app = App()
        await connect(port, client_ctx, app)
        assert await asyncio.wait_for(app.lost, 10) is None
        assert bytes(app.data) == b"* OK hello\r\n"
        assert app.eof
        assert app.transport.is_closing()


async def test_untrusted_certificate(server_ctx) -> None:
    async def idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.read()

    async with serving(idle, server_ctx) as port:
        with pytest.raises(ssl.SSLCertVerificationError) as err:
            await connect(port, make_ssl_context(), App())  # system CAs only
    assert as_mail_error(Protocol.IMAP, err.value).kind is FailureKind.TLS_UNTRUSTED


async def test_wrong_host_name(server_ctx, client_ctx) -> None:
    async def idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.read()

    async with serving(idle, server_ctx) as port:
        tls = TLSProtocol(client_ctx, App(), server_hostname="mail.example.org")
        await asyncio.get_running_loop().create_connection(lambda: tls, HOST, port)
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.wait_for(tls.handshake, 10)


async def test_peer_closes_during_handshake(client_ctx) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with serving(hang_up, None) as port:
        with pytest.raises(ConnectionResetError):
            await connect(port, client_ctx, App())


async def test_plaintext_server_is_an_ssl_error(client_ctx) -> None:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK plain IMAP here\r\n" * 20)
        await writer.drain()
        with contextlib.suppress(Exception):
            await reader.read()

    async with serving(greet, None) as port:
        with pytest.raises(ssl.SSLError) as err:
            await connect(port, client_ctx, App())
    assert as_mail_error(Protocol.IMAP, err.value).kind is FailureKind.TLS_FAILED


async def test_handshake_timeout(client_ctx) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.read()

    async with serving(silent, None) as port:
        tls = TLSProtocol(client_ctx, App(), server_hostname="localhost", handshake_timeout=0.2)
        await asyncio.get_running_loop().create_connection(lambda: tls, HOST, port)
        with pytest.raises(ConnectionAbortedError):
            await asyncio.wait_for(tls.handshake, 10)
