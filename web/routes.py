"""The business-process API's routes (`/api/v1`) and the operators' health check (`/health`).

Routes parse and validate (web/models.py), call one use case (services/outgoing.py) and
render; nothing else happens here. OPERATIONS lists every route with what the OpenAPI
document (web/openapi.py) says about it.

* Errors are JSON: {"error": {"code": ..., "message": ..., "fields": {...}}} with the stable
  codes of web/errors.py. Request bodies are limited to API_MAX_BODY_BYTES (aiohttp's
  client_max_size), attachments to API_MAX_ATTACHMENTS_BYTES after decoding.
* `POST /mail/send` takes an optional `Idempotency-Key` header (services/idempotency.py): a
  repeat of the same request with the same key (per token, for 24 h) gets the first answer
  again with `Idempotent-Replayed: true` instead of a second letter. Every answer of the send
  use case is kept, errors included; only an unexpected failure (500 `internal`) frees the key,
  and a malformed request (422 `validation_error`) never claims it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy import text as sql_text

from mail.outbox import AttachmentData, Recipient, parse_recipient
from services.hooks import run_after_commit
from services.idempotency import Claimed, IdempotencyStore, InProgress, Replay, Reused, sha256_hex
from services.outgoing import (
    AttachmentsTooLarge,
    EmployeeRef,
    ItemRef,
    MailboxUnavailable,
    MailServerUnreachable,
    NotAllowed,
    OutgoingError,
    OutgoingLetter,
    SendProgress,
    SendRefused,
    TooLargeForServer,
    UnknownEmployee,
    UnknownLetter,
)
from web.context import CTX, WebContext
from web.errors import ApiError
from web.middleware import API_PREFIX, CALLER, OPENAPI_PATH, error_response, too_large
from web.models import (
    HealthResponse,
    ItemPath,
    LinkOut,
    LinkRequest,
    LinksResponse,
    SendHeaders,
    SendRequest,
    SendResponse,
)
from web.openapi import Operation, openapi_document

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

HEALTH_PATH = "/health"
THREAD_PARSE_BYTES = 256 * 1024  # bigger bodies are parsed and decoded off the event loop
HEALTH_DB_TIMEOUT = 3.0
IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"


# --------------------------------------------------------------------------- parsing
def render(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status)


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
        raise too_large(limit)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(limit) from None
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
    if isinstance(exc, TooLargeForServer):
        return ApiError("smtp_rejected", f"552 the letter ({exc.size} bytes) is over the server's SIZE limit of {exc.limit}")
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
    token_hash = sha256_hex(ctx.tokens[request[CALLER] - 1])
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


async def _send_once(ctx: WebContext, req: SendRequest, store: IdempotencyStore, claim: Claimed) -> web.Response:
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


async def _send(ctx: WebContext, req: SendRequest, progress: SendProgress | None = None) -> web.Response:
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
    return web.json_response(api_document(), headers={"Cache-Control": "no-cache"})


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
        watchers=watchers, instance=ctx.instance_id, leases=len(ctx.held()),
        live_instances=max(1, len(ctx.live_instances())),
    )
    return web.json_response(body.model_dump(mode="json"), status=200 if database_ok else 503,
                             headers={"Cache-Control": "no-store"})


# --------------------------------------------------------------------------- the route table
ITEM_LINKS_PATH = f"{API_PREFIX}/items/{{item_type}}/{{item_id}}/links"


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
    HealthResponse, auth=False, other_answers={503: "The database is unreachable"},
)


def api_document() -> dict[str, Any]:
    """The OpenAPI document of every route above."""
    return openapi_document((*OPERATIONS, HEALTH))


def add_routes(app: web.Application, *, api: bool) -> None:
    """/health always; the /api/v1 routes when `api` (API tokens configured)."""
    app.router.add_route(HEALTH.method, HEALTH.path, HEALTH.handler)
    if api:
        for op in OPERATIONS:
            app.router.add_route(op.method, op.path, op.handler)
