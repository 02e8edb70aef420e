"""Request and response models of the business-process API (pydantic). The OpenAPI document
(web/openapi.py) is generated from these same models, so what the schema allows is what the
handlers accept: every rule a validator checks is also said in the schema (patterns, `not`,
`oneOf`/`anyOf` across fields), so a schema-valid request is never refused as malformed.

The one rule JSON Schema cannot say is the total of recipients (`to` + `cc` + `bcc` at most
100); the document says it in words."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, model_validator
from pydantic_core import PydanticCustomError

from mail.outbox import parse_recipient
from services.items import ITEM_ID_MAX, ITEM_TYPE_MAX, LinkView
from services.outgoing import SendResult
from web.errors import ERRORS

MAX_RECIPIENTS = 100
MAX_ATTACHMENTS = 100
IDEMPOTENCY_KEY_MAX = 200
USER_ID_MAX = 2**63 - 1  # BIGINT
LETTER_ID_MAX = 2**31 - 1  # INTEGER

# What the validators refuse, said in JSON Schema (patterns are searched, so no anchors).
NO_CONTROLS: dict[str, Any] = {"not": {"pattern": "[\\x00-\\x1f\\x7f]"}}
NO_LINE_BREAKS: dict[str, Any] = {"not": {"pattern": "[\\r\\n\\x00]"}}
# "Not blank": one character that is not whitespace, with the whitespace spelled out, since
# Python's \S and JSON Schema's (ECMA-262) \S disagree (U+0085, U+001C-U+001F)
NOT_BLANK = "[^\\t\\n\\v\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff]"
# A subset of what parse_recipient accepts (tests/test_api_contract.py checks it): `local@domain`
# or `Name <local@domain>`, an ASCII local part, Latin or Cyrillic names and domains.
_LOCAL = r"[A-Za-z0-9_%+-]{1,20}(?:\.[A-Za-z0-9_%+-]{1,20}){0,2}"
_LABEL = r"[A-Za-z0-9\u0430-\u044f\u0451](?:[A-Za-z0-9\u0430-\u044f\u0451-]{0,20}[A-Za-z0-9\u0430-\u044f\u0451])?"
_DOMAIN = f"(?:{_LABEL}\\.){{1,3}}(?:[A-Za-z]{{2,20}}|[\u0430-\u044f]{{2,20}})"
_ADDR = f"{_LOCAL}@{_DOMAIN}"
_WORD = r"[A-Za-z0-9\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0400-\u04ff]{1,20}"
ADDRESS_PATTERN = f"^(?:{_ADDR}|(?:{_WORD}(?: {_WORD}){{0,3}} )?<{_ADDR}>)$"
BASE64_PATTERN = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


def _present(name: str, json_type: str, **schema: Any) -> dict[str, Any]:
    """A JSON Schema saying: `name` is given and not null."""
    return {"required": [name], "properties": {name: {"type": json_type, **schema}}}


def _absent(*names: str) -> dict[str, Any]:
    """A JSON Schema saying: none of `names` is given (or each is null)."""
    return {"properties": {name: {"type": "null"} for name in names}}


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


def _printable_ascii(value: str) -> str:
    if not re.fullmatch(r"[\x20-\x7e]*", value):
        raise _custom("printable_ascii", "only printable ASCII characters are allowed")
    return value


def _blank(value: str | None) -> bool:
    return value is None or re.search(NOT_BLANK, value) is None


AddressStr = Annotated[
    str,
    Field(max_length=500, description="`a@b.example` or `Name <a@b.example>` (ASCII local part).",
          examples=["client@example.com"], json_schema_extra={"pattern": ADDRESS_PATTERN, **NO_CONTROLS}),
    AfterValidator(_address),
]
ItemType = Annotated[
    str, Field(min_length=1, max_length=ITEM_TYPE_MAX, description="Business item type, e.g. `deal`.",
               json_schema_extra=NO_CONTROLS),
    AfterValidator(_no_controls),
]
ItemId = Annotated[
    str, Field(min_length=1, max_length=ITEM_ID_MAX, description="Business item id, e.g. `D-42`.",
               json_schema_extra=NO_CONTROLS),
    AfterValidator(_no_controls),
]
EmailStr = Annotated[
    str, Field(max_length=320, description="The employee's connected e-mail address.",
               json_schema_extra=NO_LINE_BREAKS),
    AfterValidator(_no_line_breaks),
]
IdempotencyKeyStr = Annotated[
    str,
    Field(min_length=1, max_length=IDEMPOTENCY_KEY_MAX, json_schema_extra={"pattern": "^[\\x20-\\x7e]+$"}),
    AfterValidator(_printable_ascii),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AttachmentIn(Strict):
    filename: Annotated[
        str, Field(min_length=1, max_length=255, json_schema_extra=NO_CONTROLS), AfterValidator(_no_controls)
    ]
    content_type: str = Field(
        default="application/octet-stream", max_length=255,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$",
        json_schema_extra=NO_LINE_BREAKS,
        description="MIME type, e.g. `application/pdf`.",
    )
    content_base64: str = Field(
        description="The file, base64 (RFC 4648; the server also takes line breaks in it).",
        json_schema_extra={"pattern": BASE64_PATTERN},
    )
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


# exactly one of user_id / email (a null counts as not given)
EMPLOYEE_ONE_OF: dict[str, Any] = {
    "oneOf": [_present("user_id", "integer"), _present("email", "string")],
}
# never both user_id and email
EMPLOYEE_NOT_BOTH: dict[str, Any] = {
    "not": {"required": ["user_id", "email"],
            "properties": {"user_id": {"type": "integer"}, "email": {"type": "string"}}},
}


class SendRequest(Strict):
    """Send a letter from an employee's connected mailbox. Give the employee by `user_id` or
    `email` (exactly one), a body as `text`, `html` or both (at least one not blank), at least
    one recipient (at most 100 in `to`, `cc` and `bcc` together), and `item_type` with
    `item_id` or neither."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"allOf": [
        EMPLOYEE_ONE_OF,
        {"anyOf": [_present("text", "string", pattern=NOT_BLANK), _present("html", "string", pattern=NOT_BLANK)]},
        {"anyOf": [
            {"required": ["item_type", "item_id"],
             "properties": {"item_type": {"type": "string"}, "item_id": {"type": "string"}}},
            _absent("item_type", "item_id"),
        ]},
    ]})

    user_id: int | None = Field(default=None, gt=0, le=USER_ID_MAX, description="The employee's Telegram user id.")
    email: EmailStr | None = None
    from_name: Annotated[str, Field(max_length=200, json_schema_extra=NO_LINE_BREAKS), AfterValidator(_no_line_breaks)] | None = Field(
        default=None, description="Display name in From (default: the bare address)."
    )
    to: list[AddressStr] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    cc: list[AddressStr] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    bcc: list[AddressStr] = Field(
        default_factory=list, max_length=MAX_RECIPIENTS, description="Envelope only, never in the headers."
    )
    subject: Annotated[str, Field(max_length=998, json_schema_extra=NO_LINE_BREAKS), AfterValidator(_no_line_breaks)] = ""
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
        if _blank(self.text) and _blank(self.html):
            raise _custom("empty_body", "give a text or html body", "text")
        if (self.item_type is None) != (self.item_id is None):
            raise _custom("item", "give item_type and item_id together", "item_id" if self.item_id is None else "item_type")
        if len(self.to) + len(self.cc) + len(self.bcc) > MAX_RECIPIENTS:
            raise _custom("recipients", f"at most {MAX_RECIPIENTS} recipients in all", "to")
        return self


class LinkRequest(Strict):
    """Link a letter to the item: by `letter_id`, or by `message_id` in the mailbox of the
    employee given by `user_id` or `email` (exactly one of `letter_id` / `message_id`; at most
    one of `user_id` / `email`, and one of them with a `message_id`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"allOf": [
        {"oneOf": [
            {"allOf": [_present("letter_id", "integer"), _absent("message_id")]},
            {"allOf": [_present("message_id", "string"), _absent("letter_id"), {"anyOf": EMPLOYEE_ONE_OF["oneOf"]}]},
        ]},
        EMPLOYEE_NOT_BOTH,
    ]})

    letter_id: int | None = Field(
        default=None, gt=0, le=LETTER_ID_MAX, description="A letter id (e.g. `letter_id` of a send)."
    )
    message_id: Annotated[
        str, Field(min_length=3, max_length=998, json_schema_extra=NO_LINE_BREAKS), AfterValidator(_no_line_breaks)
    ] | None = Field(default=None, description="The letter's Message-ID, e.g. `<abc@example.com>`.")
    user_id: int | None = Field(default=None, gt=0, le=USER_ID_MAX, description="The employee's Telegram user id.")
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
    watchers: dict[str, int] = Field(
        description="This instance's watched accounts by state (connected, reconnecting, broken)."
    )
    instance: str = Field(description="This instance's id (INSTANCE_ID, or host:pid:random).")
    leases: int = Field(description="Mailboxes whose lease this instance holds (it watches those).")
    live_instances: int = Field(description="Instances of the fleet alive at the last lease pass, this one included.")
