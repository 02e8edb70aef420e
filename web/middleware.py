"""The API's middleware: bearer-token auth, the per-token rate limit, JSON errors (a 405 with
its `Allow` header) and one log line per call; and the server's own logger, which logs a
malformed request (a NUL or other control character in a header, a broken request line) as
one line instead of a traceback, so a client cannot flood the log.

* Tokens are compared in constant time with every configured token (hmac.compare_digest).
* No request body, header or token is ever logged; one INFO line per call (method, route,
  status, milliseconds, which token by position).
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from web.context import CTX
from web.errors import ApiError
from web.models import ErrorDetail, ErrorResponse

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
OPENAPI_PATH = f"{API_PREFIX}/openapi.json"
TOKEN_MIN = 16
CALLER: web.RequestKey[int] = web.RequestKey("api_caller")  # 1-based position of the request's token
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def check_tokens(tokens: list[str]) -> None:
    """Refuse weak tokens at start-up (by position: a token is never printed)."""
    for n, token in enumerate(tokens, 1):
        if len(token) < TOKEN_MIN or not (token.isascii() and token.isprintable()) or " " in token:
            raise ValueError(f"API_TOKENS: token #{n} must be at least {TOKEN_MIN} printable ASCII characters")


def token_index(header: str | None, tokens: list[bytes]) -> int | None:
    """1-based position of the matching token, comparing with every token in constant time."""
    if not header:
        return None
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    given_bytes = given.strip().encode("utf-8", "replace")
    found = 0
    for n, token in enumerate(tokens, 1):
        if hmac.compare_digest(given_bytes, token):
            found = n
    return found or None


def error_response(exc: ApiError) -> web.Response:
    body = ErrorResponse(error=ErrorDetail(code=exc.code, message=exc.message, fields=exc.fields))
    headers: dict[str, str] = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="mailbridge"'
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if exc.allow is not None:
        headers["Allow"] = exc.allow
    return web.json_response(body.model_dump(mode="json"), status=exc.status, headers=headers or None)


def too_large(limit: int) -> ApiError:
    return ApiError("body_too_large", f"the request body is over {limit} bytes")


def is_api(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def route_of(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "(no route)"


def allow_header(methods: set[str]) -> str:
    return ", ".join(sorted(methods))


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_api(request.path):
        return await handler(request)
    ctx = request.app[CTX]
    started = time.perf_counter()
    caller: int | None = None
    try:
        if request.path != OPENAPI_PATH:
            caller = token_index(request.headers.get("Authorization"), ctx.tokens)
            if caller is None:
                raise ApiError("unauthorized")
            request[CALLER] = caller
            wait = await ctx.rate_limit.take(ctx.caller_keys[caller - 1])
            if wait > 0:
                raise ApiError("rate_limited", retry_after=max(1, math.ceil(wait)))
        response: web.StreamResponse = await handler(request)
    except ApiError as exc:
        response = error_response(exc)
    except web.HTTPNotFound:
        response = error_response(ApiError("not_found"))
    except web.HTTPMethodNotAllowed as exc:
        response = error_response(ApiError("method_not_allowed", allow=allow_header(exc.allowed_methods)))
    except web.HTTPRequestEntityTooLarge:
        response = error_response(too_large(ctx.settings.api_max_body_bytes))
    except Exception:
        log.exception("API %s %s failed", request.method, route_of(request))
        response = error_response(ApiError("internal"))
    log.info(
        "API %s %s -> %s in %.0f ms (token %s)", request.method, route_of(request), response.status,
        (time.perf_counter() - started) * 1000, caller or "-",
    )
    return response


def describe_bad_request(exc: HttpProcessingError) -> str:
    """`400 Invalid header value char`: the status and the first line of the parser's words,
    printable ASCII only (the rest of its message quotes the raw request: headers, tokens)."""
    first = (exc.message or type(exc).__name__).splitlines()[0] if (exc.message or "").strip() else type(exc).__name__
    clean = "".join(c if " " <= c <= "~" else "?" for c in first)[:200].rstrip(": ")
    return f"{exc.code} {clean}".strip()


class ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The aiohttp server's logger (`AppRunner(logger=...)`): a request the HTTP parser
    refuses (aiohttp logs it with `exception`, traceback and all) becomes ONE warning line
    naming the client and what was wrong; every other record passes through unchanged."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        super().__init__(logger or logging.getLogger("aiohttp.server"), {})

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            kwargs.pop("exc_info")
            self.logger.log(min(level, logging.WARNING), f"{msg}: %s", *args, describe_bad_request(exc), **kwargs)
            return
        super().log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return msg, kwargs
