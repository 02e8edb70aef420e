"""The OpenAPI document and the API cannot drift apart: Schemathesis generates requests from
the live `/api/v1/openapi.json` of the real bot (build_app, the real mail stack behind it)
and checks every answer: no 5xx, the status code and the body documented, and a request the
schema calls valid is not refused as malformed (positive data acceptance: the `oneOf` rules,
patterns and limits of web/models.py). Plus what the protocol asks beyond the schema: a 405
says `Allow`; a request the HTTP parser refuses (a NUL in a header) is logged in one line."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.harness.plugin_app import BotHarness
from tests.test_api import TOKEN, Api, error_of

EXAMPLES_PER_OPERATION = 80
CHECKS = [
    not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
    response_schema_conformance, positive_data_acceptance,
]


def _fuzz(base: str) -> dict[str, int]:
    """Every documented operation, EXAMPLES_PER_OPERATION generated requests each; raises the
    first failing check (with Schemathesis's reproduction). Returns requests per operation."""
    schema = schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json")
    sent: dict[str, int] = {}
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            _fuzz_operation(base, operation, session, sent)
    return sent


def _fuzz_operation(base: str, operation: Any, session: requests.Session, sent: dict[str, int]) -> None:
    label = operation.label
    sent[label] = 0

    @given(case=operation.as_strategy())
    @hypothesis_settings(
        max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
        phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        if case.headers and "Idempotency-Key" in case.headers:
            # a key names one request: a generated key repeated with another body is
            # rightly refused (idempotency_key_reused), so keep each one unique
            case.headers["Idempotency-Key"] = f"{case.headers['Idempotency-Key']}"[:150] + uuid.uuid4().hex
        response = case.call(base_url=base, session=session, headers=headers, timeout=30)
        sent[label] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()


async def test_schemathesis_finds_the_api_as_documented(harness: BotHarness) -> None:
    await harness.start(api_tokens=TOKEN, web_port=0, api_rate_per_minute=0)
    base = f"http://127.0.0.1:{harness.app.extra['web'].port}"
    started = time.monotonic()
    sent = await asyncio.to_thread(_fuzz, base)
    assert set(sent) == {
        "POST /api/v1/mail/send", "POST /api/v1/items/{item_type}/{item_id}/links",
        "GET /api/v1/items/{item_type}/{item_id}/links", "GET /health",
    }  # Schemathesis leaves out the document's own path
    assert sent["GET /health"] == 1 and all(n >= 20 for op, n in sent.items() if op != "GET /health"), sent
    print(f"schemathesis: {sent}, {sum(sent.values())} requests in {time.monotonic() - started:.1f} s")


async def test_405_says_which_methods_the_route_has(harness: BotHarness) -> None:
    """RFC 9110: a 405 carries `Allow`, listing exactly the documented methods."""
    await harness.start(api_tokens=TOKEN, web_port=0)
    api = Api(harness)
    try:
        status, doc = await api.call("GET", "/api/v1/openapi.json", token=None)
        assert status == 200
        for path, operations in doc["paths"].items():
            real = path.replace("{item_type}", "deal").replace("{item_id}", "D-1")
            documented = {m.upper() for m in operations}
            for method in sorted({"GET", "POST", "PUT", "DELETE", "PATCH"} - documented):
                status, data = await api.call(method, real)
                assert status == 405, (method, path)
                allow = {m.strip() for m in api.last_headers["Allow"].split(",")}
                assert allow == documented, (method, path, allow)
                if path.startswith("/api/"):
                    assert error_of(data)[0] == "method_not_allowed"
    finally:
        await api.close()


def _raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("header", [b"X-Trace: a\x00b", b"Authorization: Bearer " + TOKEN.encode() + b"\x01x"])
async def test_a_control_character_in_a_header_is_one_log_line(
    harness: BotHarness, caplog: pytest.LogCaptureFixture, header: bytes
) -> None:
    await harness.start(api_tokens=TOKEN, web_port=0)
    port = harness.app.extra["web"].port
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header + b"\r\nConnection: close\r\n\r\n"
    answer = await asyncio.to_thread(_raw_request, port, request)
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"400"
    for _ in range(50):  # the log line may follow the answer by a loop turn
        records = [r for r in caplog.records if r.name.startswith("aiohttp")]
        if records:
            break
        await asyncio.sleep(0.02)
    assert len(records) == 1, [r.getMessage() for r in records]
    [record] = records
    line = record.getMessage()
    assert record.exc_info is None and record.exc_text is None and "\n" not in line
    assert record.levelno == logging.WARNING and "400" in line
    assert TOKEN not in caplog.text and "\x00" not in caplog.text
    # the server is fine afterwards
    ok = await asyncio.to_thread(_raw_request, port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200")
