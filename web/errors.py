"""The API's stable error codes and the exception the routes raise to answer with one."""

from __future__ import annotations

# code -> (HTTP status, what it means). Stable: process engines branch on these.
ERRORS: dict[str, tuple[int, str]] = {
    "unauthorized": (401, "No bearer token, or not one of the configured tokens."),
    "not_found": (404, "No such route."),
    "method_not_allowed": (405, "The route exists but not with this method; the `Allow` header lists the methods it has."),
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
        retry_after: int | None = None, allow: str | None = None,
    ) -> None:
        super().__init__(code)
        self.code = code
        self.status = ERRORS[code][0]
        self.message = message or ERRORS[code][1]
        self.fields = fields or {}
        self.retry_after = retry_after
        self.allow = allow  # the Allow header of a 405 (RFC 9110 section 15.5.6)
