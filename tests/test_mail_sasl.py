"""mail/sasl.py: the OAuth2 SASL messages IMAP and SMTP send."""

from __future__ import annotations

import base64

import pytest

from mail import sasl


def test_oauthbearer_preferred_whenever_offered() -> None:
    assert sasl.choose(["plain", "xoauth2", "oauthbearer"]) == sasl.OAUTHBEARER
    assert sasl.choose(["OAUTHBEARER"]) == sasl.OAUTHBEARER
    assert sasl.choose(["PLAIN", "XOAUTH2"]) == sasl.XOAUTH2
    assert sasl.choose(["plain", "login", "cram-md5"]) is None


def test_oauthbearer_message_rfc7628() -> None:
    # RFC 7628 4.1's example, with its host and port
    raw = sasl.client_response(sasl.OAUTHBEARER, "user@example.com", "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==", "server.example.com", 143)
    assert raw == (
        b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
        b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
    )
    encoded = sasl.encoded_response(sasl.OAUTHBEARER, "user@example.com", "tok", "h", 993)
    assert base64.b64decode(encoded) == b"n,a=user@example.com,\x01host=h\x01port=993\x01auth=Bearer tok\x01\x01"
    # RFC 5801 saslname: "," and "=" escaped in the authzid
    raw = sasl.client_response(sasl.OAUTHBEARER, "odd,name=x@example.org", "tok", "h", 1)
    assert raw.startswith(b"n,a=odd=2Cname=3Dx@example.org,\x01")


def test_xoauth2_message() -> None:
    raw = sasl.client_response(sasl.XOAUTH2, "someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg", "h", 1)
    assert raw == b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"


@pytest.mark.parametrize(
    ("login", "token"),
    [("a@b.c", "tok en"), ("a@b.c", "tok\x01en"), ("a@b.c", "tök"), ("a@b.c", ""), ("a\x01@b.c", "tok"), ("a@b.c\r\n", "tok"), ("", "tok")],
)
def test_values_that_would_break_the_message_are_refused(login: str, token: str) -> None:
    for mechanism in (sasl.OAUTHBEARER, sasl.XOAUTH2):
        with pytest.raises(ValueError, match="can't accept"):
            sasl.client_response(mechanism, login, token, "h", 1)


def test_error_answers_and_challenge_text() -> None:
    assert sasl.error_answer(sasl.OAUTHBEARER) == "AQ==" and base64.b64decode("AQ==") == b"\x01"
    assert sasl.error_answer(sasl.XOAUTH2) == ""
    challenge = base64.b64encode(b'{"status":"invalid_token","scope":"mail"}')
    assert sasl.describe_challenge(challenge) == '{"status":"invalid_token","scope":"mail"}'
    assert sasl.describe_challenge(challenge.decode()) == '{"status":"invalid_token","scope":"mail"}'
    echoed = base64.b64encode(b'{"status":"401","token":"SECRET-1"}\n\x01')
    assert sasl.describe_challenge(echoed, "SECRET-1") == '{"status":"401","token":"***"}'
    assert sasl.describe_challenge(b"not base64 !") == "not base64 !"
    assert len(sasl.describe_challenge(base64.b64encode(b"x" * 5000))) == sasl.MAX_CHALLENGE
