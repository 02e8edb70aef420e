"""The business-process HTTP API (`/api/v1`) and the operators' health check (`/health`).

Served by the bot's one aiohttp server (bot/web.py) next to the OAuth2 callback; the API only
when API_TOKENS is set, /health whenever the server runs. Routes parse and validate (pydantic
models), call one use case (services/outgoing.py) and render; nothing else happens here.

* Every /api/v1 route but the OpenAPI document wants `Authorization: Bearer <token>`; the
  token is compared in constant time with every configured token (hmac.compare_digest).
* Errors are JSON: {"error": {"code": ..., "message": ..., "fields": {...}}} with the stable
  codes of ERRORS. Request bodies are limited to API_MAX_BODY_BYTES (aiohttp's
  client_max_size), attachments to API_MAX_ATTACHMENTS_BYTES after decoding.
* The OpenAPI 3.1 document (`GET /api/v1/openapi.json`) is generated from OPERATIONS and the
  same pydantic models the handlers validate with, so it cannot drift from them.
* No request body, header or token is ever logged; one INFO line per call (method, route,
  status, milliseconds, which token by position).
* `POST /mail/send` takes an optional `Idempotency-Key` header (services/idempotency.py): a
  repeat of the same request with the same key (per token, for 24 h) gets the first answer
  again with `Idempotent-Replayed: true` instead of a second letter. Every answer of the send
  use case is kept, errors included; only an unexpected failure (500 `internal`) frees the key,
  and a malformed request (422 `validation_error`) never claims it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from aiohttp import web
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import models_json_schema
from pydantic_core import PydanticCustomError
from sqlalchemy import text as sql_text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.config import Settings
from mail.outbox import AttachmentData, Recipient, parse_recipient
from services.deps import MailDeps
from services.hooks import run_after_commit
from services.idempotency import Claimed, IdempotencyStore, InProgress, Replay, Reused, sha256_hex
from services.items import ITEM_ID_MAX, ITEM_TYPE_MAX, LinkView
from services.outgoing import (
    AttachmentsTooLarge,
    EmployeeRef,
    ItemRef,
    MailboxUnavailable,
    MailServerUnreachable,
    NotAllowed,
    OutgoingError,
    OutgoingLetter,
    OutgoingService,
    SendProgress,
    SendRefused,
    SendResult,
    UnknownEmployee,
    UnknownLetter,
)

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

API_PREFIX = "/api/v1"
OPENAPI_PATH = f"{API_PREFIX}/openapi.json"
HEALTH_PATH = "/health"
TOKEN_MIN = 16
MAX_RECIPIENTS = 100
MAX_ATTACHMENTS = 100
THREAD_PARSE_BYTES = 256 * 1024  # bigger bodies are parsed and decoded off the event loop
HEALTH_DB_TIMEOUT = 3.0
IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
IDEMPOTENCY_KEY_MAX = 200
CALLER: web.RequestKey[int] = web.RequestKey("api_caller")  # 1-based position of the request's token

# code -> (HTTP status, what it means). Stable: process engines branch on these.
ERRORS: dict[str, tuple[int, str]] = {
    "unauthorized": (401, "No bearer token, or not one of the configured tokens."),
    "not_found": (404, "No such route."),
    "method_not_allowed": (405, "The route exists but not with this method."),
    "validation_error": (422, "The request is malformed; `fields` names each bad field (dotted path)."),
    "unknown_employee": (404, "No connected mailbox for that Telegram user id or address."),
    "unknown_letter": (404, "No such letter (for that employee)."),
    "not_allowed": (403, "The employee has not allowed their mailbox to be used in business processes."),
    "mailbox_broken": (409, "The employee's account is broken, or their mail server refused the stored login; they must reconnect it in the bot."),
    "smtp_rejected": (502, "The employee's SMTP server refused the letter; nothing was sent. `message` has the server's answer, `fields` the refused recipients."),
    "mail_server_unavailable": (502, "The employee's mail server (or OAuth2 provider) could not be reached."),
    "body_too_large": (413, "The request body, or the attachments' total decoded size, is over the limit."),
    "idempotency_in_progress": (409, "A request with this Idempotency-Key is still being processed; retry later."),
    "idempotency_key_reused": (422, "This Idempotency-Key was used with a different request; use a new key for a new request."),
    "rate_limited": (429, "Too many requests with this token; retry after the seconds in the Retry-After header."),
    "internal": (500, "An unexpected error; the bot's log has the details."),
}
COMMON_ERRORS = ("unauthorized", "rate_limited", "internal")
# answers never stored under a key (an `internal` one is, once the letter may have gone out)
NOT_REPLAYED = ("unauthorized", "rate_limited", "validation_error", "idempotency_key_reused", "idempotency_in_progress")


class ApiError(Exception):
    def __init__(
        self, code: str, message: str | None = None, fields: dict[str, str] | None = None, *,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(code)
        self.code = code
        self.status = ERRORS[code][0]
        self.message = message or ERRORS[code][1]
        self.fields = fields or {}
        self.retry_after = retry_after


class TokenRateLimit:
    """A token bucket per API token: `per_minute` requests, in a burst or spread out."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}  # caller -> (tokens, stamp)

    def take(self, caller: int) -> float:
        """0 when the request may go ahead (and it is counted), else seconds until it may."""
        if self.capacity <= 0:
            return 0.0
        now = self.clock()
        tokens, stamp = self._buckets.get(caller, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - stamp) * self.rate)
        if tokens < 1.0:
            self._buckets[caller] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[caller] = (tokens - 1.0, now)
        return 0.0


# --------------------------------------------------------------------------- validation helpers
def _custom(kind: str, message: str, field: str | None = None) -> PydanticCustomError:
    return PydanticCustomError(kind, message, {"field": field} if field else None)


def _address(value: str) -> str:
    if parse_recipient(value) is None:
        raise _custom("address", "not a valid e-mail address (a@b.example or Name <a@b.example>)")
    return value


def _no_controls(value: str) -> str:
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise _custom("control_characters", "control characters are not allowed")
    return value


def _no_line_breaks(value: str) -> str:
    if re.search(r"[\r\n\x00]", value):
        raise _custom("line_break", "line breaks are not allowed")
    return value


AddressStr = Annotated[
    str,
    Field(max_length=500, description="`a@b.example` or `Name <a@b.example>` (ASCII local part).",
          examples=["client@example.com"]),
    AfterValidator(_address),
]
ItemType = Annotated[
    str, Field(min_length=1, max_length=ITEM_TYPE_MAX, description="Business item type, e.g. `deal`."),
    AfterValidator(_no_controls),
]
ItemId = Annotated[
    str, Field(min_length=1, max_length=ITEM_ID_MAX, description="Business item id, e.g. `D-42`."),
    AfterValidator(_no_controls),
]
EmailStr = Annotated[
    str, Field(max_length=320, description="The employee's connected e-mail address."),
    AfterValidator(_no_line_breaks),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AttachmentIn(Strict):
    filename: Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_no_controls)]
    content_type: str = Field(
        default="application/octet-stream", max_length=255,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$",
        description="MIME type, e.g. `application/pdf`.",
    )
    content_base64: str = Field(description="The file, base64 (RFC 4648; line breaks allowed).")
    _data: bytes = PrivateAttr(default=b"")

    @model_validator(mode="after")
    def _decode(self) -> AttachmentIn:
        raw = re.sub(r"\s+", "", self.content_base64)
        try:
            self._data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise _custom("base64", "not valid base64", "content_base64") from None
        return self

    @property
    def data(self) -> bytes:
        return self._data


class SendRequest(Strict):
    """Send a letter from an employee's connected mailbox. Give the employee by `user_id` or
    `email` (exactly one), a body as `text`, `html` or both, and at least one recipient."""

    user_id: int | None = Field(default=None, gt=0, description="The employee's Telegram user id.")
    email: EmailStr | None = None
    from_name: Annotated[str, Field(max_length=200), AfterValidator(_no_line_breaks)] | None = Field(
        default=None, description="Display name in From (default: the bare address)."
    )
    to: list[AddressStr] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    cc: list[AddressStr] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    bcc: list[AddressStr] = Field(
        default_factory=list, max_length=MAX_RECIPIENTS, description="Envelope only, never in the headers."
    )
    subject: Annotated[str, Field(max_length=998), AfterValidator(_no_line_breaks)] = ""
    text: str | None = Field(default=None, max_length=5_000_000, description="Plain-text body; the signature is added.")
    html: str | None = Field(
        default=None, max_length=10_000_000, description="HTML body; the signature is added, escaped."
    )
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)
    item_type: ItemType | None = Field(default=None, description="Link the sent letter to this item (with `item_id`).")
    item_id: ItemId | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SendRequest:
        if (self.user_id is None) == (self.email is None):
            raise _custom("employee", "give the employee as user_id or as email (exactly one)", "user_id")
        if not (self.text and self.text.strip()) and not (self.html and self.html.strip()):
            raise _custom("empty_body", "give a text or html body", "text")
        if (self.item_type is None) != (self.item_id is None):
            raise _custom("item", "give item_type and item_id together", "item_id" if self.item_id is None else "item_type")
        if len(self.to) + len(self.cc) + len(self.bcc) > MAX_RECIPIENTS:
            raise _custom("recipients", f"at most {MAX_RECIPIENTS} recipients in all", "to")
        return self


class LinkRequest(Strict):
    """Link a letter to the item: by `letter_id`, or by `message_id` in the mailbox of the
    employee given by `user_id` or `email`."""

    letter_id: int | None = Field(default=None, gt=0, description="A letter id (e.g. `letter_id` of a send).")
    message_id: Annotated[str, Field(min_length=3, max_length=998), AfterValidator(_no_line_breaks)] | None = Field(
        default=None, description="The letter's Message-ID, e.g. `<abc@example.com>`."
    )
    user_id: int | None = Field(default=None, gt=0, description="The employee's Telegram user id.")
    email: EmailStr | None = None

    @model_validator(mode="after")
    def _consistent(self) -> LinkRequest:
        if (self.letter_id is None) == (self.message_id is None):
            raise _custom("letter", "give letter_id or message_id (exactly one)", "letter_id")
        if self.user_id is not None and self.email is not None:
            raise _custom("employee", "give user_id or email, not both", "user_id")
        if self.message_id is not None and self.user_id is None and self.email is None:
            raise _custom("employee", "a message_id needs the employee (user_id or email)", "user_id")
        return self


class ItemPath(Strict):
    item_type: ItemType
    item_id: ItemId


def _printable_ascii(value: str) -> str:
    if not re.fullmatch(r"[\x20-\x7e]*", value):
        raise _custom("printable_ascii", "only printable ASCII characters are allowed")
    return value


IdempotencyKeyStr = Annotated[
    str,
    Field(min_length=1, max_length=IDEMPOTENCY_KEY_MAX, json_schema_extra={"pattern": "^[\\x20-\\x7e]+$"}),
    AfterValidator(_printable_ascii),
]


class SendHeaders(Strict):
    idempotency_key: IdempotencyKeyStr | None = Field(
        default=None, alias="Idempotency-Key",  # IDEMPOTENCY_HEADER (mypy wants the literal)
        description=(
            "Makes the request safe to retry: a repeat with the same key (per API token, for 24 hours) and "
            "the same body sends nothing and gets the first answer again, with the header "
            "`Idempotent-Replayed: true` (errors included; an `internal` error frees the key). The same key "
            "with another body is refused (`idempotency_key_reused`), and while the first request runs a "
            "repeat gets `idempotency_in_progress`. 1-200 printable ASCII characters, e.g. a UUID."
        ),
        examples=["3f0c9a52-6d1e-4a8b-9c53-1f2e7b1d0a11"],
    )


class LinkOut(BaseModel):
    item_type: str
    item_id: str
    letter_id: int | None = Field(description="Null once the letter (or the whole account) is deleted.")
    letter_exists: bool
    from_name: str
    from_addr: str
    subject: str
    sent_at: datetime | None
    snippet: str
    linked_at: datetime | None

    @classmethod
    def of(cls, view: LinkView) -> LinkOut:
        return cls(
            item_type=view.item_type, item_id=view.item_id, letter_id=view.letter_id,
            letter_exists=view.letter_exists, from_name=view.from_name, from_addr=view.from_addr,
            subject=view.subject, sent_at=view.sent_at, snippet=view.snippet, linked_at=view.linked_at,
        )


class LinksResponse(BaseModel):
    item_type: str
    item_id: str
    links: list[LinkOut] = Field(description="Snapshots, oldest link first; they survive the letter's deletion.")


class SendResponse(BaseModel):
    message_id: str = Field(description="The Message-ID of the letter as delivered, e.g. `<...@example.com>`.")
    sender: str
    user_id: int
    recipients: list[str] = Field(description="Every envelope recipient (To, Cc, Bcc).")
    sent_at: datetime
    saved_to_sent: bool = Field(description="A copy was saved to the provider's Sent folder.")
    sent_folder: str | None
    letter_id: int | None = Field(description="The sent letter in the bot (null when the server gave no UID).")
    link: LinkOut | None = None
    warnings: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, result: SendResult) -> SendResponse:
        return cls(
            message_id=result.message_id, sender=result.sender, user_id=result.user_id,
            recipients=result.recipients, sent_at=result.sent_at, saved_to_sent=result.saved_to_sent,
            sent_folder=result.sent_folder, letter_id=result.letter_id,
            link=LinkOut.of(result.link) if result.link is not None else None, warnings=result.warnings,
        )


class ErrorDetail(BaseModel):
    code: str = Field(json_schema_extra={"enum": list(ERRORS)})
    message: str
    fields: dict[str, str] = Field(default_factory=dict, description="Field path -> what is wrong with it.")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class HealthResponse(BaseModel):
    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unreachable"]
    watchers: dict[str, int] = Field(description="Watched accounts by state (connected, reconnecting, broken).")


# --------------------------------------------------------------------------- context
@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    engine: AsyncEngine
    deps: MailDeps
    watch_states: Callable[[], dict[int, Any]]

    @property
    def tokens(self) -> list[bytes]:
        return [t.encode("ascii", "replace") for t in self.settings.api_token_list]

    def service(self, session: AsyncSession) -> OutgoingService:
        return OutgoingService(session, self.deps, attachments_limit=self.settings.api_max_attachments_bytes)

    def idempotency(self) -> IdempotencyStore:
        return IdempotencyStore(self.sessionmaker)


def api_context(app: App) -> ApiContext:
    return ApiContext(app.settings, app.sessionmaker, app.engine, app.deps, app.watchers.states)


CTX: web.AppKey[ApiContext] = web.AppKey("api_context")
TOKENS: web.AppKey[list[bytes]] = web.AppKey("api_tokens")
RATE: web.AppKey[TokenRateLimit] = web.AppKey("api_rate")


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


# --------------------------------------------------------------------------- plumbing
def error_response(exc: ApiError) -> web.Response:
    body = ErrorResponse(error=ErrorDetail(code=exc.code, message=exc.message, fields=exc.fields))
    headers = {"WWW-Authenticate": 'Bearer realm="mailbridge"'} if exc.status == 401 else None
    if exc.retry_after is not None:
        headers = {"Retry-After": str(exc.retry_after)}
    return web.json_response(body.model_dump(mode="json"), status=exc.status, headers=headers)


def render(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status)


def _is_api(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


@web.middleware
async def api_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if not _is_api(request.path):
        return await handler(request)
    started = time.perf_counter()
    caller: int | None = None
    try:
        if request.path != OPENAPI_PATH:
            caller = token_index(request.headers.get("Authorization"), request.app[TOKENS])
            if caller is None:
                raise ApiError("unauthorized")
            request[CALLER] = caller
            wait = request.app[RATE].take(caller)
            if wait > 0:
                raise ApiError("rate_limited", retry_after=max(1, math.ceil(wait)))
        response: web.StreamResponse = await handler(request)
    except ApiError as exc:
        response = error_response(exc)
    except web.HTTPNotFound:
        response = error_response(ApiError("not_found"))
    except web.HTTPMethodNotAllowed:
        response = error_response(ApiError("method_not_allowed"))
    except web.HTTPRequestEntityTooLarge:
        response = error_response(_too_large(request.app[CTX].settings.api_max_body_bytes))
    except Exception:
        log.exception("API %s %s failed", request.method, _route_of(request))
        response = error_response(ApiError("internal"))
    log.info(
        "API %s %s -> %s in %.0f ms (token %s)", request.method, _route_of(request), response.status,
        (time.perf_counter() - started) * 1000, caller or "-",
    )
    return response


def _route_of(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "(no route)"


def _too_large(limit: int) -> ApiError:
    return ApiError("body_too_large", f"the request body is over {limit} bytes")


def _fields(exc: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for err in exc.errors(include_url=False, include_input=False):
        loc = [str(part) for part in err["loc"]]
        ctx = err.get("ctx") or {}
        if ctx.get("field"):
            loc = [*loc, str(ctx["field"])]
        if err["type"] == "json_invalid":
            loc = ["body"]
        key = ".".join(loc) or "body"
        fields.setdefault(key, str(err["msg"]).removeprefix("Value error, "))
    return fields


def _parse_sync(model: type[BaseModel], raw: bytes) -> BaseModel:
    if not raw.strip():
        raise ApiError("validation_error", "the body must be a JSON object", {"body": "empty body"})
    return model.model_validate_json(raw)


async def parse_body(request: web.Request, model: type[M]) -> M:
    limit = request.app[CTX].settings.api_max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limit) from None
    try:
        if len(raw) > THREAD_PARSE_BYTES:
            parsed = await asyncio.to_thread(_parse_sync, model, raw)
        else:
            parsed = _parse_sync(model, raw)
    except ValidationError as exc:
        raise ApiError("validation_error", "the request is not valid", _fields(exc)) from None
    assert isinstance(parsed, model)
    return parsed


def parse_headers(request: web.Request, model: type[M]) -> M:
    """The model's headers (by alias); each may be given once."""
    values: dict[str, str] = {}
    for name, field in model.model_fields.items():
        header = field.alias or name
        given = request.headers.getall(header, [])
        if len(given) > 1:
            raise ApiError("validation_error", "the request headers are not valid", {header: "give it once"})
        if given:
            values[header] = given[0]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ApiError("validation_error", "the request headers are not valid", _fields(exc)) from None


def parse_path(request: web.Request) -> ItemPath:
    try:
        return ItemPath.model_validate(
            {"item_type": request.match_info["item_type"], "item_id": request.match_info["item_id"]}
        )
    except ValidationError as exc:
        raise ApiError("validation_error", "the item type or id is not valid", _fields(exc)) from None


def _employee(user_id: int | None, email: str | None) -> EmployeeRef:
    return EmployeeRef(user_id=user_id, email=email)


def outgoing_error(exc: OutgoingError) -> ApiError:
    if isinstance(exc, UnknownEmployee):
        return ApiError("unknown_employee", "no connected mailbox for that employee")
    if isinstance(exc, NotAllowed):
        return ApiError("not_allowed")
    if isinstance(exc, MailboxUnavailable):
        what = "the account is broken" if exc.state == "broken" else "the mail server refused the stored login"
        detail = f" ({exc.detail})" if exc.detail else ""
        return ApiError("mailbox_broken", f"{what}; the employee must reconnect it in the bot{detail}"[:1000])
    if isinstance(exc, AttachmentsTooLarge):
        return ApiError(
            "body_too_large", f"the attachments total {exc.total} bytes, over the limit of {exc.limit}",
            {"attachments": f"at most {exc.limit} bytes in all, decoded"},
        )
    if isinstance(exc, SendRefused):
        return ApiError("smtp_rejected", exc.reply)
    if isinstance(exc, MailServerUnreachable):
        return ApiError("mail_server_unavailable", f"the mail server could not be reached: {exc.detail}"[:1000])
    if isinstance(exc, UnknownLetter):
        return ApiError("unknown_letter")
    return ApiError("internal")


# --------------------------------------------------------------------------- handlers
async def send_mail(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    key = parse_headers(request, SendHeaders).idempotency_key
    req = await parse_body(request, SendRequest)
    if key is None:
        return await _send(ctx, req)
    store = ctx.idempotency()
    token_hash = sha256_hex(request.app[TOKENS][request[CALLER] - 1])
    claim = await store.claim(token_hash, key, await request_fingerprint(req))
    if isinstance(claim, Replay):
        return web.Response(
            status=claim.status, text=claim.body, content_type="application/json", headers={REPLAYED_HEADER: "true"}
        )
    if isinstance(claim, Reused):
        raise ApiError("idempotency_key_reused", fields={IDEMPOTENCY_HEADER: "used before with a different request"})
    if isinstance(claim, InProgress):
        raise ApiError("idempotency_in_progress")
    return await _send_once(ctx, req, store, claim)


async def _send_once(ctx: ApiContext, req: SendRequest, store: IdempotencyStore, claim: Claimed) -> web.Response:
    """Send under a claimed key and keep the answer for repeats. An unexpected failure (500
    `internal`) frees the key so a retry runs again, unless the letter had already been handed
    to the SMTP server (then the 500 is kept: at most one copy, never two); a cancelled send
    (shutdown) keeps the key in progress until it expires, as the letter may already be out."""
    progress = SendProgress()
    try:
        response = await _send(ctx, req, progress)
    except ApiError as exc:
        if exc.code == "internal" and not progress.handed_to_smtp:
            await store.release(claim)
        else:
            await store.complete(claim, exc.status, error_response(exc).text or "")
        raise
    except Exception:
        if progress.handed_to_smtp:
            await store.complete(claim, 500, error_response(ApiError("internal")).text or "")
        else:
            await store.release(claim)
        raise
    await store.complete(claim, response.status, response.text or "")
    return response


def _fingerprint_sync(req: SendRequest) -> str:
    return sha256_hex(req.model_dump_json().encode())


async def request_fingerprint(req: SendRequest) -> str:
    """SHA-256 of the canonical request: the validated model as JSON, fields in model order and
    defaults filled in, so key order, spacing and omitted defaults do not make it differ."""
    if sum(len(a.content_base64) for a in req.attachments) > THREAD_PARSE_BYTES:
        return await asyncio.to_thread(_fingerprint_sync, req)
    return _fingerprint_sync(req)


async def _send(ctx: ApiContext, req: SendRequest, progress: SendProgress | None = None) -> web.Response:
    paths: dict[str, str] = {}
    recipients: dict[str, list[Recipient]] = {}
    for name in ("to", "cc", "bcc"):
        parsed = []
        for i, value in enumerate(getattr(req, name)):
            r = parse_recipient(value)
            assert r is not None  # validated
            paths.setdefault(r.address.lower(), f"{name}.{i}")
            parsed.append(r)
        recipients[name] = parsed
    letter = OutgoingLetter(
        to=recipients["to"], cc=recipients["cc"], bcc=recipients["bcc"], subject=req.subject, text=req.text,
        html=req.html, attachments=[AttachmentData(a.filename, a.content_type.lower(), a.data) for a in req.attachments],
        from_name=req.from_name, item=ItemRef(req.item_type, req.item_id) if req.item_type and req.item_id else None,
    )
    async with ctx.sessionmaker() as session:
        try:
            result = await ctx.service(session).send(_employee(req.user_id, req.email), letter, progress)
        except OutgoingError as exc:
            await session.commit()  # e.g. an OAuth2 account found broken stays marked broken
            await run_after_commit(session)
            error = outgoing_error(exc)
            if isinstance(exc, SendRefused):
                error.fields = {paths.get(a.lower(), a): answer for a, answer in exc.refused.items()}
            raise error from None
        await session.commit()
        await run_after_commit(session)
    return render(SendResponse.of(result))


async def link_letter(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    item = parse_path(request)
    req = await parse_body(request, LinkRequest)
    employee = _employee(req.user_id, req.email) if req.user_id is not None or req.email is not None else None
    async with ctx.sessionmaker() as session:
        try:
            view = await ctx.service(session).link(
                ItemRef(item.item_type, item.item_id), letter_id=req.letter_id, message_id=req.message_id,
                employee=employee,
            )
        except OutgoingError as exc:
            raise outgoing_error(exc) from None
        await session.commit()
    return render(LinkOut.of(view))


async def item_links(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    item = parse_path(request)
    async with ctx.sessionmaker() as session:
        views = await ctx.service(session).item_links(ItemRef(item.item_type, item.item_id))
    return render(LinksResponse(item_type=item.item_type, item_id=item.item_id, links=[LinkOut.of(v) for v in views]))


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(), headers={"Cache-Control": "no-cache"})


async def health(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    database_ok = True
    try:
        async with asyncio.timeout(HEALTH_DB_TIMEOUT), ctx.engine.connect() as conn:
            await conn.execute(sql_text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "unreachable"
        log.warning("health: database unreachable: %s", type(exc).__name__)
        database_ok = False
    counts = Counter(getattr(state, "value", str(state)) for state in ctx.watch_states().values())
    watchers = {name: counts.get(name, 0) for name in ("connected", "reconnecting", "broken")}
    watchers.update(counts)
    body = HealthResponse(
        status="ok" if database_ok else "unavailable", database="ok" if database_ok else "unreachable",
        watchers=watchers,
    )
    return web.json_response(body.model_dump(mode="json"), status=200 if database_ok else 503,
                             headers={"Cache-Control": "no-store"})


# --------------------------------------------------------------------------- routes + OpenAPI
ITEM_LINKS_PATH = f"{API_PREFIX}/items/{{item_type}}/{{item_id}}/links"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.Response]]
    operation_id: str
    summary: str
    response: type[BaseModel]
    request: type[BaseModel] | None = None
    path_model: type[BaseModel] | None = None
    header_model: type[BaseModel] | None = None
    response_headers: dict[str, dict[str, Any]] | None = None  # on the answers a replay can give
    errors: tuple[str, ...] = ()
    auth: bool = True
    status: int = 200


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "POST", f"{API_PREFIX}/mail/send", send_mail, "sendMail",
        "Send a letter from an employee's connected mailbox", SendResponse, request=SendRequest,
        header_model=SendHeaders,
        response_headers={REPLAYED_HEADER: {
            "description": f"`true` when this is the stored answer to an earlier request with the same `{IDEMPOTENCY_HEADER}`.",
            "schema": {"type": "string", "enum": ["true"]},
        }},
        errors=("validation_error", "body_too_large", "unknown_employee", "not_allowed", "mailbox_broken",
                "smtp_rejected", "mail_server_unavailable", "idempotency_key_reused", "idempotency_in_progress"),
    ),
    Operation(
        "POST", ITEM_LINKS_PATH, link_letter, "linkLetter", "Link an imported or sent letter to a business item",
        LinkOut, request=LinkRequest, path_model=ItemPath,
        errors=("validation_error", "body_too_large", "unknown_employee", "not_allowed", "unknown_letter"),
    ),
    Operation(
        "GET", ITEM_LINKS_PATH, item_links, "itemLinks", "The letters linked to a business item (snapshots)",
        LinksResponse, path_model=ItemPath, errors=("validation_error",),
    ),
    Operation(
        "GET", OPENAPI_PATH, openapi_json, "openapi", "This document (no token needed)", BaseModel, auth=False,
    ),
)
HEALTH = Operation(
    "GET", HEALTH_PATH, health, "health", "Health: database reachable (200) or not (503), watchers by state",
    HealthResponse, auth=False,
)


def operation_errors(op: Operation) -> tuple[str, ...]:
    """Every code an operation can answer with (besides the route-level not_found)."""
    common = COMMON_ERRORS if op.auth else ("internal",)
    return tuple(dict.fromkeys((*op.errors, *common)))


def _parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    return [
        {"name": name, "in": "path", "required": True, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]


def _header_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        prop.pop("title", None)
        param: dict[str, Any] = {"name": name, "in": "header", "required": name in required}
        if "description" in prop:
            param["description"] = prop.pop("description")
        if "examples" in prop:
            param["example"] = prop.pop("examples")[0]
        options = [o for o in prop.pop("anyOf", []) if o.get("type") != "null"]
        if len(options) == 1:  # an optional header: the value's own schema
            prop.pop("default", None)
            prop.update(options[0])
        param["schema"] = prop
        out.append(param)
    return out


def openapi_document() -> dict[str, Any]:
    ops = [*OPERATIONS, HEALTH]
    requests = {op.request for op in ops if op.request is not None}
    responses = {op.response for op in ops if op.response is not BaseModel} | {ErrorResponse}
    keys: list[tuple[type[BaseModel], Literal["validation", "serialization"]]]
    keys = [(m, "validation") for m in sorted(requests, key=lambda m: m.__name__)]
    keys += [(m, "serialization") for m in sorted(responses, key=lambda m: m.__name__)]
    _, defs = models_json_schema(keys, ref_template="#/components/schemas/{model}")
    schemas = defs.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "security": [{"bearer": []}] if op.auth else [],
        }
        if op.request is not None and op.request.__doc__:
            entry["description"] = " ".join(op.request.__doc__.split())
        parameters = [
            *(_parameters(op.path_model) if op.path_model is not None else []),
            *(_header_parameters(op.header_model) if op.header_model is not None else []),
        ]
        if parameters:
            entry["parameters"] = parameters
        if op.request is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{op.request.__name__}"}}},
            }
        ok_schema: dict[str, Any] = (
            {"type": "object"} if op.response is BaseModel else {"$ref": f"#/components/schemas/{op.response.__name__}"}
        )
        out: dict[str, Any] = {str(op.status): {"description": "OK", "content": {"application/json": {"schema": ok_schema}}}}
        if op is HEALTH:
            out["503"] = {"description": "The database is unreachable",
                          "content": {"application/json": {"schema": ok_schema}}}
        by_status: dict[int, list[str]] = {}
        for code in operation_errors(op):
            by_status.setdefault(ERRORS[code][0], []).append(code)
        for status, codes in sorted(by_status.items()):
            out[str(status)] = {
                "description": " ".join(f"`{c}`: {ERRORS[c][1]}" for c in codes),
                "x-error-codes": codes,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
            }
        if "429" in out:
            out["429"]["headers"] = {"Retry-After": {
                "description": "Seconds until this token may make its next request.",
                "schema": {"type": "integer", "minimum": 1},
            }}
        if op.response_headers:
            for response in out.values():
                codes = response.get("x-error-codes")
                if codes is None or not set(codes) <= set(NOT_REPLAYED):
                    response["headers"] = op.response_headers
        entry["responses"] = out
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mailbridge business-process API",
            "version": "1.0.0",
            "description": (
                "Send letters from employees' connected mailboxes and link letters to business items. "
                "Errors: {\"error\": {\"code\", \"message\", \"fields\"}}; codes: "
                + ", ".join(f"`{c}` ({s})" for c, (s, _) in ERRORS.items()) + "."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def setup_http(app: web.Application, ctx: ApiContext) -> None:
    """/health always; /api/v1 when API tokens are configured (call before the app starts)."""
    app[CTX] = ctx
    app.router.add_route(HEALTH.method, HEALTH.path, HEALTH.handler)
    tokens = ctx.settings.api_token_list
    if not tokens:
        return
    check_tokens(tokens)
    app[TOKENS] = ctx.tokens
    app[RATE] = TokenRateLimit(ctx.settings.api_rate_per_minute)
    app.middlewares.append(api_middleware)
    for op in OPERATIONS:
        app.router.add_route(op.method, op.path, op.handler)
