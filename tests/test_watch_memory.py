"""Memory per watched mailbox (issue 8): at most 64 KiB with TLS, 16 KiB plain.

The figure is measured as bench/memory.py measures it (RSS delta over N watched mailboxes
in a fresh process, the light IDLE server in another), at a smaller N so the test takes
seconds; README has the 10,000-mailbox figures. The TLS layer's own test checks that no
connection holds asyncio's 256 KiB TLS read buffer, so a Python upgrade or a change back to
``loop.create_connection(ssl=...)`` can't bring it back unnoticed.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import gc
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trustme

from bench import idle_server
from mail.imap import close_imap, open_imap, select_inbox
from mail.netguard import HostGuard
from mail.tls import READ_SIZE, TLSTransport, make_ssl_context
from mail.types import Credentials, Security, ServerSettings

ROOT = Path(__file__).resolve().parent.parent
N = 500
TLS_MAX_KIB = 64
PLAIN_MAX_KIB = 16


def _bench(mode: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "memory.py"), "--accounts", str(N),
         "--modes", mode, "--json"],
        capture_output=True, text=True, timeout=150, check=False,
    )
    lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
    assert out.returncode == 0 and lines, (out.returncode, out.stdout[-1000:], out.stderr[-3000:])
    result: dict[str, Any] = json.loads(lines[-1])
    # every mailbox really was logged in, selected and idling, as the server saw it
    assert result["server_idling"] == N, result
    return result


@pytest.mark.parametrize(("mode", "limit"), [("tls", TLS_MAX_KIB), ("plain", PLAIN_MAX_KIB)])
async def test_memory_per_watched_mailbox(mode: str, limit: int) -> None:
    result = await asyncio.to_thread(_bench, mode)
    assert result["rss_per_kib"] <= limit, result


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[str, Any]:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    import ssl

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    return str(ca_file), server_ctx


async def test_tls_connections_hold_no_large_read_buffer(tls_files: tuple[str, Any]) -> None:
    ca_file, server_ctx = tls_files
    server = await idle_server.start("127.0.0.1", 0, server_ctx)
    imap = ServerSettings("localhost", server.port, Security.SSL)
    clients = []
    try:
        for i in range(20):
            clients.append(
                await open_imap(
                    imap,
                    Credentials(f"m{i}@example.org", password="pw"),
                    ssl_context=make_ssl_context(ca_file),
                    guard=HostGuard(allow_private=True),
                    timeout=10,
                )
            )
        for client in clients:
            assert isinstance(client.protocol.transport, TLSTransport)
            assert client.protocol.transport.get_extra_info("ssl_object").version()
        gc.collect()
        assert not [o for o in gc.get_objects() if isinstance(o, asyncio.sslproto.SSLProtocol)]
        big = [o for o in gc.get_objects() if isinstance(o, bytearray) and len(o) >= 64 * 1024]
        assert not big, [len(o) for o in big]
        assert READ_SIZE <= 16 * 1024

        # a reply many times READ_SIZE arrives whole, read in small pieces
        body = "".join(f"line {k:06d} of a long letter\r\n" for k in range(8000))
        server.deliver("m0@example.org", subject="big", body=body)
        client = clients[0]
        await select_inbox(client, 10)
        response = await asyncio.wait_for(client.uid("fetch", "1", "(BODY.PEEK[TEXT])"), 10)
        assert response.result == "OK"
        literals = [x for x in response.lines if isinstance(x, bytearray)]
        assert [bytes(x) for x in literals] == [body.encode()]
        assert len(body) > 10 * READ_SIZE
    finally:
        for client in clients:
            await close_imap(client)
        await server.close()
