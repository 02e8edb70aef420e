"""A local autoconfig web server and a discovery environment that sends the bot's discovery
requests to it (this machine has no internet; the discovery code is the real one)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from mail.types import ServerSettings

CONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="{domain}">
    <domain>{domain}</domain>
    <displayName>Test mail</displayName>
    <incomingServer type="imap">
      <hostname>{imap_host}</hostname>
      <port>{imap_port}</port>
      <socketType>{imap_socket}</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>{smtp_host}</hostname>
      <port>{smtp_port}</port>
      <socketType>{smtp_socket}</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </outgoingServer>
  </emailProvider>
</clientConfig>
"""


class AutoconfigServer:
    """Serves `/<host>/<path>` so one local server can stand in for many web hosts."""

    def __init__(self) -> None:
        self.documents: dict[str, bytes] = {}  # "host/path" -> body
        self.requests: list[str] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    def publish(self, url: str, body: str | bytes) -> None:
        parts = urlsplit(url)
        self.documents[f"{parts.hostname}{parts.path}"] = body.encode() if isinstance(body, str) else body

    def publish_config(self, url: str, domain: str, imap: tuple[str, int, str], smtp: tuple[str, int, str]) -> None:
        self.publish(
            url,
            CONFIG.format(
                domain=domain,
                imap_host=imap[0], imap_port=imap[1], imap_socket=imap[2],
                smtp_host=smtp[0], smtp_port=smtp[1], smtp_socket=smtp[2],
            ),
        )

    async def _handle(self, request: web.Request) -> web.Response:
        key = request.match_info["rest"]
        self.requests.append(key)
        body = self.documents.get(key)
        if body is None:
            return web.Response(status=404)
        return web.Response(body=body, content_type="text/xml")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{rest:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class LocalDiscoveryEnv:
    """The DiscoveryEnv the bot gets in tests: web requests go to AutoconfigServer, MX answers
    come from a table, probes really connect (to whatever host:port the table maps to)."""

    def __init__(self, server: AutoconfigServer, mx: dict[str, list[str]] | None = None,
                 probe_map: dict[tuple[str, int], tuple[str, int]] | None = None) -> None:
        self.server = server
        self.mx = mx or {}
        self.probe_map = probe_map or {}
        self.http_calls: list[str] = []
        self.probes: list[ServerSettings] = []

    async def http_get(self, url: str, timeout: float) -> bytes | None:
        self.http_calls.append(url)
        parts = urlsplit(url)
        local = f"http://127.0.0.1:{self.server.port}/{parts.hostname}{parts.path}"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http, http.get(local) as resp:
                if resp.status != 200:
                    return None
                return await resp.read()
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def mx_hosts(self, domain: str, timeout: float) -> list[str]:
        return list(self.mx.get(domain, []))

    async def probe(self, server: ServerSettings, timeout: float) -> bool:
        import asyncio

        self.probes.append(server)
        target = self.probe_map.get((server.host, server.port))
        if target is None:
            return False
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(*target), timeout)
        except (OSError, TimeoutError):
            return False
        writer.close()
        return True


def as_tuple(server: Any) -> tuple[str, int, str]:
    return (server.host, server.port, "SSL" if server.security.value == "ssl" else "STARTTLS")
