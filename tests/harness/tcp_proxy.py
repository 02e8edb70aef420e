"""A TCP forwarder on 127.0.0.1 for fault injection between a client and a server.

    proxy = await TcpProxy(("127.0.0.1", stack.imap_ssl_port)).start()
    ...connect the client to ("127.0.0.1", proxy.port)...
    proxy.freeze()       # stop forwarding, silently: nothing is closed, bytes just stop
    proxy.resume()       # forward again (bytes held meanwhile are delivered)
    await proxy.drop()   # close every open link, both sides (the listener stays)
    await proxy.close()  # drop + stop listening

Bytes are copied untouched (TLS is end to end). A frozen proxy still accepts new connections
and holds them too (like a black-holed route where the SYN still gets through). `accepted`
counts connections ever accepted, `active` those open now: a test can prove that a client
did not reconnect, or that it closed its socket. Runs in the caller's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib


class _Link:
    __slots__ = ("client", "upstream", "tasks")

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class TcpProxy:
    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self.host = host
        self.port = 0
        self.accepted = 0
        self._server: asyncio.AbstractServer | None = None
        self._links: set[_Link] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def active(self) -> int:
        return len(self._links)

    @property
    def frozen(self) -> bool:
        return not self._flowing.is_set()

    def freeze(self) -> None:
        """Stop forwarding in both directions on every link, without closing anything."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def drop(self) -> None:
        """Close every open link (client and server side); keep listening."""
        links = list(self._links)
        for link in links:
            link.abort()
        for link in links:
            for task in link.tasks:
                task.cancel()
            await asyncio.gather(*link.tasks, return_exceptions=True)
        self._links.difference_update(links)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        self.resume()
        await self.drop()

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = _Link(writer)
        self._links.add(link)
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                return
            link.upstream = up_writer
            link.tasks = [
                asyncio.create_task(self._pipe(reader, up_writer)),
                asyncio.create_task(self._pipe(up_reader, writer)),
            ]
            # when one direction ends, the link ends (IMAP needs no half-close)
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass
        finally:
            link.abort()
            for task in link.tasks:
                task.cancel()
            self._links.discard(link)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while True:
                await self._flowing.wait()
                data = await reader.read(65536)
                if not data:
                    return
                await self._flowing.wait()  # bytes read just before a freeze are held
                writer.write(data)
                await writer.drain()
