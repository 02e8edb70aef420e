"""The OpenAPI 3.1 document (`GET /api/v1/openapi.json`), generated from the route table
(web/routes.py: OPERATIONS) and the same pydantic models the handlers validate with
(web/models.py), so it cannot drift from them; tests/test_api_schemathesis.py checks the live
server against it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from web.errors import COMMON_ERRORS, ERRORS, NOT_REPLAYED
from web.models import ErrorResponse


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
    other_answers: dict[int, str] = field(default_factory=dict)  # more statuses with the OK body


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


def openapi_document(operations: Iterable[Operation]) -> dict[str, Any]:
    ops = list(operations)
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
        for status, description in op.other_answers.items():
            out[str(status)] = {"description": description, "content": {"application/json": {"schema": ok_schema}}}
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
