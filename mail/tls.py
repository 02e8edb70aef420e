"""TLS settings for every mail connection: certificates and host names are always verified."""

from __future__ import annotations

import ssl

from mail.types import FailureKind


def make_ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A client context trusting the system CAs plus, if given, an extra PEM bundle.

    Certificates and host names are verified; TLS 1.2 is the minimum.
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file:
        ctx.load_verify_locations(cafile=str(ca_file))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def tls_failure_kind(exc: BaseException) -> FailureKind:
    """TLS_UNTRUSTED for certificate / host name problems, TLS_FAILED for the rest."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return FailureKind.TLS_UNTRUSTED
    return FailureKind.TLS_FAILED


def tls_detail(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return str(exc.verify_message or exc.reason or exc)
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    return str(exc)
