"""The API's contract: the OpenAPI document matches the routes the app serves and the models the
handlers validate with; /health; which web server serves what; the pure parts of outgoing mail
(LIST parsing, modified UTF-7, the Sent folder choice, signatures, addresses, tokens)."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from pydantic import BaseModel
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from mail.outbox import (
    FolderInfo,
    choose_sent,
    decode_mutf7,
    encode_mutf7,
    html_with_signature,
    parse_list,
    parse_recipient,
    quote_mailbox,
    text_with_signature,
)
from services.oauth import CALLBACK_PATH
from tests.harness.mailstack import MailUser
from tests.harness.plugin_app import BotHarness
from tests.test_api import TOKEN, Api, error_of
from tests.test_api import api as api  # noqa: F401 - the fixture
from web.app import WebServer, create_web_app
from web.context import WebContext
from web.errors import ERRORS
from web.middleware import token_index
from web.models import ADDRESS_PATTERN, BASE64_PATTERN, AttachmentIn
from web.ratelimit import MemoryRateLimit
from web.routes import HEALTH, OPERATIONS, api_document

DOC_PATHS = ("/api/v1", "/health")


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def property_schema(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The object schema inside `X | None` / arrays / refs."""
    schema = resolve(doc, schema)
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            return property_schema(doc, option)
    if schema.get("type") == "array":
        return property_schema(doc, schema["items"])
    return schema


def model_fields_match(doc: dict[str, Any], schema: dict[str, Any], model: type[BaseModel]) -> None:
    schema = resolve(doc, schema)
    assert set(schema["properties"]) == set(model.model_fields), model
    assert schema.get("additionalProperties") is False, f"{model.__name__} must refuse unknown fields"
    required = {name for name, f in model.model_fields.items() if f.is_required()}
    assert set(schema.get("required", [])) == required, model


async def test_openapi_document_matches_the_served_routes(api: Api) -> None:
    status, doc = await api.call("GET", "/api/v1/openapi.json", token=None)
    assert status == 200
    assert doc == api_document()
    validate(doc)  # a valid OpenAPI 3.1 document
    web_app = api.h.app.extra["web"].app
    served = {
        (route.method, route.resource.canonical)
        for route in web_app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith(DOC_PATHS)
    }
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert served == documented
    assert ("GET", CALLBACK_PATH) not in documented  # the browser page is not part of the API

    for op in (*OPERATIONS, HEALTH):
        entry = doc["paths"][op.path][op.method.lower()]
        assert entry["security"] == ([{"bearer": []}] if op.auth else [])
        # request fields: exactly the model's, unknown ones refused
        if op.request is not None:
            schema = entry["requestBody"]["content"]["application/json"]["schema"]
            model_fields_match(doc, schema, op.request)
        else:
            assert "requestBody" not in entry
        params = entry.get("parameters", [])
        path_params = [p for p in params if p["in"] == "path"]
        if op.path_model is not None:
            assert [p["name"] for p in path_params] == list(op.path_model.model_fields)
            assert all(p["required"] for p in path_params)
            assert {p["name"] for p in path_params} == _placeholders(op.path)
        else:
            assert path_params == []
        # headers: exactly the header model's, by their HTTP names
        header_params = [p for p in params if p["in"] == "header"]
        expected = [f.alias or n for n, f in op.header_model.model_fields.items()] if op.header_model else []
        assert [p["name"] for p in header_params] == expected
        assert len(params) == len(path_params) + len(header_params)
        # error codes: each under its own HTTP status, all of them known
        codes = []
        for status_text, response in entry["responses"].items():
            if "x-error-codes" in response:
                for code in response["x-error-codes"]:
                    assert ERRORS[code][0] == int(status_text), code
                    codes.append(code)
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
        assert "internal" in codes
        assert ("unauthorized" in codes) == op.auth
        assert set(op.errors) <= set(codes)
    send = doc["paths"]["/api/v1/mail/send"]["post"]
    send_schema = resolve(doc, send["requestBody"]["content"]["application/json"]["schema"])
    model_fields_match(doc, property_schema(doc, send_schema["properties"]["attachments"]), AttachmentIn)
    error_schema = resolve(doc, {"$ref": "#/components/schemas/ErrorDetail"})
    assert error_schema["properties"]["code"]["enum"] == list(ERRORS)
    # the optional Idempotency-Key, and the header that marks a replayed answer
    [key] = [p for p in send["parameters"] if p["in"] == "header"]
    assert key["name"] == "Idempotency-Key" and key["required"] is False
    assert key["schema"] == {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[\\x20-\\x7e]+$"}
    assert re.fullmatch(key["schema"]["pattern"], key["example"])
    replayable = {status for status, r in send["responses"].items() if "Idempotent-Replayed" in r.get("headers", {})}
    # what the send use case answers (500: once the letter may have gone out)
    assert replayable == {"200", "403", "404", "409", "413", "500", "502"}


def _placeholders(path: str) -> set[str]:
    return set(re.findall(r"\{(\w+)\}", path))


async def test_validation_error_fields_are_documented_request_fields(api: Api) -> None:
    """Every field a validation error names is a documented request field (dotted path)."""
    doc = api_document()
    send = doc["paths"]["/api/v1/mail/send"]["post"]
    root = resolve(doc, send["requestBody"]["content"]["application/json"]["schema"])
    body = {
        "user_id": -1, "from_name": "a\nb", "to": ["bad"], "cc": ["also bad"], "bcc": [1], "subject": "x\ny",
        "text": 5, "html": [], "item_type": "", "item_id": "x" * 200,
        "attachments": [{"filename": "", "content_type": "nope", "content_base64": "!!"}],
    }
    status, data = await api.send(body)
    assert status == 422
    _, fields = error_of(data)
    assert len(fields) >= 10
    for path in fields:
        schema = root
        for part in path.split("."):
            schema = property_schema(doc, schema)
            if part.isdigit():
                continue
            assert part in schema["properties"], path
            schema = schema["properties"][part]


async def test_documented_errors_of_each_operation(api: Api, mail_user: MailUser) -> None:
    """The codes the handlers answer are the documented ones, operation by operation."""
    doc = api_document()

    def documented(method: str, path: str) -> set[str]:
        responses = doc["paths"][path][method]["responses"]
        return {code for r in responses.values() for code in r.get("x-error-codes", [])}

    links = "/api/v1/items/{item_type}/{item_id}/links"
    seen: dict[tuple[str, str], set[str]] = {}
    for method, template, real, body in [
        ("post", "/api/v1/mail/send", "/api/v1/mail/send", {"user_id": 1, "to": ["a@example.org"], "text": "x"}),
        ("post", "/api/v1/mail/send", "/api/v1/mail/send", {"to": []}),
        ("post", links, "/api/v1/items/deal/1/links", {"letter_id": 5}),
        ("post", links, "/api/v1/items/deal/1/links", {"message_id": "<a@b>", "user_id": 5}),
        ("post", links, "/api/v1/items/deal/1/links", {}),
        ("get", links, "/api/v1/items/" + "t" * 70 + "/1/links", None),
    ]:
        for token in (TOKEN, None):
            status, data = await api.call(method.upper(), real, body, token=token)
            code, _ = error_of(data)
            seen.setdefault((method, template), set()).add(code)
            assert code in documented(method, template), (method, template, code)
    # Idempotency-Key: a bad one is a validation error naming the documented header; a key used
    # with another request is refused; a repeat is the stored (documented) answer
    send = "/api/v1/mail/send"
    headers = {p["name"] for p in doc["paths"][send]["post"]["parameters"] if p["in"] == "header"}
    status, data = await api.call("POST", send, {"user_id": 1, "to": ["a@example.org"], "text": "x"},
                                  headers={"Idempotency-Key": "x" * 201})
    code, fields = error_of(data)
    assert status == 422 and code == "validation_error" and set(fields) == {"Idempotency-Key"} <= headers
    seen[("post", send)].add(code)
    for text, expected in (("x", "unknown_employee"), ("x", "unknown_employee"), ("y", "idempotency_key_reused")):
        status, data = await api.call("POST", send, {"user_id": 1, "to": ["a@example.org"], "text": text},
                                      headers={"Idempotency-Key": "contract-1"})
        code, _ = error_of(data)
        assert code == expected and code in documented("post", send), data
        seen[("post", send)].add(code)
    assert seen[("post", send)] == {"unknown_employee", "validation_error", "unauthorized", "idempotency_key_reused"}
    assert seen[("post", links)] == {"unknown_letter", "unknown_employee", "validation_error", "unauthorized"}


# ---- health -----------------------------------------------------------------------------------
async def test_health_reports_database_and_watchers(api: Api, mail_user: MailUser) -> None:
    status, data = await api.call("GET", "/health", token=None)
    instance = data.pop("instance")
    assert instance and status == 200 and data == {
        "status": "ok", "database": "ok", "watchers": {"connected": 0, "reconnecting": 0, "broken": 0},
        "leases": 0, "live_instances": 1,
    }
    await api.employee(7201, mail_user)
    for _ in range(100):
        status, data = await api.call("GET", "/health", token=None)
        if data["watchers"]["connected"] == 1:
            break
        await asyncio.sleep(0.05)
    assert status == 200 and data["watchers"] == {"connected": 1, "reconnecting": 0, "broken": 0}
    assert (data["instance"], data["leases"], data["live_instances"]) == (instance, 1, 1)
    assert api.last_headers["Cache-Control"] == "no-store"


def missing_database(db_url: str, tmp: Path) -> str:
    """A database that isn't there: a dropped PostgreSQL database, or an SQLite file in a
    directory that does not exist."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        return f"sqlite+aiosqlite:///{tmp / 'gone' / 'db.sqlite3'}"
    return url.set(database=f"dropped_{uuid.uuid4().hex[:8]}").render_as_string(hide_password=False)


async def test_health_503_when_the_database_is_unreachable(bot_app: BotHarness, tmp_path: Path) -> None:
    app = bot_app.app
    engine = create_async_engine(missing_database(bot_app.db_url, tmp_path))
    ctx = WebContext(app.settings, app.sessionmaker, engine, app.deps, app.watchers.states, app.catalog,
                     MemoryRateLimit(0))
    server = WebServer(create_web_app(ctx), "127.0.0.1", 0)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{server.port}/health") as resp:
            assert resp.status == 503
            data = await resp.json()
        assert data["status"] == "unavailable" and data["database"] == "unreachable"
        assert set(data["watchers"]) == {"connected", "reconnecting", "broken"}
    finally:
        await server.close()
        await engine.dispose()


# ---- one web server ----------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def get(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, str]:
    async with http.get(url, **kw) as resp:
        return resp.status, await resp.text()


async def test_one_web_server_for_oauth_api_and_health(harness: BotHarness) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http:
        # neither PUBLIC_URL nor API_TOKENS: no web server at all
        await harness.start()
        assert "web" not in harness.app.extra
        await harness.stop()

        # both: one server (one port) answers the OAuth2 callback, the API and /health
        port = free_port()
        await harness.start(public_url=f"http://127.0.0.1:{port}", web_port=port, api_tokens=TOKEN)
        base = f"http://127.0.0.1:{port}"
        status, page = await get(http, base + CALLBACK_PATH + "?state=forged&code=x")
        assert status == 400 and "<html" in page
        assert (await get(http, base + "/api/v1/items/deal/1/links", headers=auth))[0] == 200
        assert (await get(http, base + "/health"))[0] == 200
        await harness.stop()

        # PUBLIC_URL only: no API (not even its 404s), /health still there
        port = free_port()
        await harness.start(public_url=f"http://127.0.0.1:{port}", web_port=port)
        base = f"http://127.0.0.1:{port}"
        status, text = await get(http, base + "/api/v1/openapi.json", headers=auth)
        assert status == 404 and '"error"' not in text
        assert (await get(http, base + "/health"))[0] == 200
        await harness.stop()

        # API_TOKENS only: no OAuth2 callback
        await harness.start(api_tokens=TOKEN, web_port=0)
        base = f"http://127.0.0.1:{harness.app.extra['web'].port}"
        assert (await get(http, base + CALLBACK_PATH + "?state=x&code=y"))[0] == 404
        assert (await get(http, base + "/api/v1/openapi.json"))[0] == 200


async def test_weak_token_stops_the_start_without_printing_it(harness: BotHarness) -> None:
    with pytest.raises(ValueError) as info:
        await harness.start(api_tokens="a-strong-enough-token-1234567890,short-one")
    assert "token #2" in str(info.value) and "short-one" not in str(info.value)


# ---- pure parts ------------------------------------------------------------------------------
def test_token_index_checks_every_token() -> None:
    tokens = [b"first-token-0123456789", b"second-token-0123456789"]
    assert token_index("Bearer first-token-0123456789", tokens) == 1
    assert token_index("bearer  second-token-0123456789 ", tokens) == 2
    for header in (None, "", "Bearer", "Bearer ", "Basic first-token-0123456789", "Bearer first-token-012345678",
                   "Bearer first-token-0123456789x", "Bearer ключ"):
        assert token_index(header, tokens) is None, header


def test_modified_utf7_round_trip() -> None:
    assert decode_mutf7("&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-") == "Отправленные"
    for name in ("Отправленные", "Sent", "A&B", "Entwürfe/Gesendet", "日本語 folder", "[Gmail]/Sent Mail"):
        assert decode_mutf7(encode_mutf7(name)) == name
    assert encode_mutf7("A&B") == "A&-B" and encode_mutf7("Отправленные") == "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"
    assert decode_mutf7("broken&AAA") == "broken&AAA"
    assert quote_mailbox('Sent "old"') == '"Sent \\"old\\""'


def test_parse_list_and_choose_sent() -> None:
    lines = [
        b'(\\HasNoChildren) "/" INBOX',
        b'(\\HasChildren \\Noselect) "/" "[Gmail]"',
        b'(\\HasNoChildren \\Sent) "/" "[Gmail]/Sent Mail"',
        b'(\\HasNoChildren) "/" {10}', bytearray(b"Sent Items"),  # the name as a literal
        b'(\\HasNoChildren) NIL &BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-',
        b"garbage",
        b"List completed.",
    ]
    folders = parse_list(lines)
    assert [f.name for f in folders] == ["INBOX", "[Gmail]", "[Gmail]/Sent Mail", "Sent Items", "Отправленные"]
    assert folders[2].flags == frozenset({"\\hasnochildren", "\\sent"}) and folders[2].delimiter == "/"
    assert folders[4].delimiter is None
    assert choose_sent(folders) == "[Gmail]/Sent Mail"  # the special-use flag first
    no_flags = [f for f in folders if "\\sent" not in f.flags]
    assert choose_sent(no_flags) == "Sent Items"  # then the usual names, in order
    assert choose_sent([FolderInfo("INBOX"), FolderInfo("Отправленные")]) == "Отправленные"
    assert choose_sent([FolderInfo("INBOX"), FolderInfo("inbox.sent")]) == "inbox.sent"
    assert choose_sent([FolderInfo("Sent", frozenset({"\\noselect"})), FolderInfo("Drafts")]) is None


def test_signatures() -> None:
    assert text_with_signature("Hi", "Anna\nAcme") == "Hi\n-- \nAnna\nAcme"
    assert text_with_signature("Hi", "  ") == "Hi"
    assert html_with_signature("<p>Hi</p>", "<script>x</script>") == (
        '<p>Hi</p>\n<div class="signature">-- <br>\n&lt;script&gt;x&lt;/script&gt;</div>\n'
    )
    assert html_with_signature("<html><BODY>Hi</Body></html>", "A").endswith('A</div>\n</Body></html>')


def test_recipients() -> None:
    assert parse_recipient("Bob <bob@example.org>") is not None
    r = parse_recipient('"Иван" <ivan@пример.рф>')
    assert r is not None and r.address == "ivan@xn--e1afmkfd.xn--p1ai" and r.name == "Иван"
    for bad in ("bob", "bob@", "a@b", "a@b.org, c@d.org", "a@b.org junk", "Ivan <иван@x.org>", "a@b.org\r\nBcc: x@y.org"):
        assert parse_recipient(bad) is None, bad


@hypothesis_settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(address=st.from_regex(ADDRESS_PATTERN, fullmatch=True), data=st.from_regex(BASE64_PATTERN, fullmatch=True))
def test_what_the_schema_patterns_allow_the_validators_accept(address: str, data: str) -> None:
    """The document's patterns are subsets of what the validators take, so a client that
    builds requests from the document is never refused for them."""
    assert parse_recipient(address) is not None, address
    assert AttachmentIn(filename="a", content_base64=data).data is not None


def test_not_blank_means_the_same_to_the_schema_and_the_server() -> None:
    """Schemathesis found a body of U+0085 alone: not blank to JSON Schema's \\S (ECMA-262), blank
    to Python's, so a schema-valid request was refused. The pattern spells whitespace out."""
    import re

    from web.models import NOT_BLANK, _blank

    ecma_whitespace = "\t\n\v\f\r \u00a0\u1680\u2000\u2005\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
    for ch in ecma_whitespace:
        assert _blank(ch) and re.search(NOT_BLANK, ch) is None, repr(ch)
    for ch in "\x85\x1c\x1fa\u044f":
        assert not _blank(ch), repr(ch)
