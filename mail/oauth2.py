"""OAuth2 for mailboxes: provider endpoints, PKCE, the authorization URL, code exchange,
refresh, device authorization with polling, and revocation.

An aiohttp client only; no aiogram and no database here (services/oauth.py keeps state and
tokens). Tokens, codes and client secrets are never logged and never part of an exception
message: errors carry the provider's `error` code and its (size-capped) description only.

Endpoints of the standard services come from `mail/data/providers.json` (the `oauth2` block:
authorize/token URLs, scopes, PKCE, whether a device flow exists). What the data file does not
hold (device-authorization and revocation URLs, Google's offline-access parameters) is in
`_PROVIDER_EXTRAS` below, with the provider documentation it comes from.

Every endpoint the bot calls must be https, except on a loopback host (RFC 8252 section 8.3
allows plain http there; the test suite's authorization server lives on 127.0.0.1). A link shown
to the person (the device flow's verification URI) must be https wherever it points: their
browser is not on the bot's loopback. A device answer whose link is not is refused with
OAuthError("insecure_link"); a `verification_uri_complete` that is not https is dropped.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import logging
import secrets
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp

from mail.providers import provider_by_id

log = logging.getLogger(__name__)

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
MAX_RESPONSE = 64 * 1024
MAX_DESCRIPTION = 300
DEFAULT_TIMEOUT = 15.0
DEFAULT_INTERVAL = 5
LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}

# Facts not in providers.json. Sources:
#  Google: https://developers.google.com/identity/protocols/oauth2/native-app (revoke endpoint,
#    access_type=offline + prompt=consent for a refresh token every time)
#  Yandex: https://yandex.ru/dev/id/doc/ru/codes/screen-code-oauth (device code endpoint,
#    grant_type=device_code with `code`), https://yandex.ru/dev/id/doc/ru/tokens/token-invalidate
#    (revoke_token with access_token + client credentials)
#  Microsoft: https://learn.microsoft.com/entra/identity-platform/v2-oauth2-device-code
#    (no token revocation endpoint for the v2.0 platform)
_MS_DEVICE = "https://login.microsoftonline.com/common/oauth2/v2.0/devicecode"
_PROVIDER_EXTRAS: dict[str, dict[str, Any]] = {
    "gmail": {
        "revoke_url": "https://oauth2.googleapis.com/revoke",
        "authorize_params": (("access_type", "offline"), ("prompt", "consent")),
    },
    "yandex": {
        "device_url": "https://oauth.yandex.ru/device/code",
        "device_style": "yandex",
        "revoke_url": "https://oauth.yandex.ru/revoke_token",
        "revoke_style": "yandex",
    },
    "outlook.com": {"device_url": _MS_DEVICE},
    "office365": {"device_url": _MS_DEVICE},
}


# ---- errors ----------------------------------------------------------------------------------
class OAuthError(Exception):
    """The provider refused (its `error` code, e.g. invalid_grant, access_denied) or could not
    be reached (`error` is one of ours: network, bad_response, insecure_endpoint)."""

    def __init__(self, error: str, description: str = "", status: int | None = None) -> None:
        self.error = (error or "server_error")[:100]
        self.description = (description or "")[:MAX_DESCRIPTION]
        self.status = status
        super().__init__(f"{self.error}: {self.description}" if self.description else self.error)

    @property
    def invalid_grant(self) -> bool:
        """The refresh token (or code) is dead: only a new sign-in helps."""
        return self.error == "invalid_grant"


class DevicePending(Exception):
    """The person has not finished signing in yet: poll again after `interval` seconds."""

    def __init__(self, interval: int, slow_down: bool = False) -> None:
        super().__init__("authorization_pending" if not slow_down else "slow_down")
        self.interval = interval
        self.slow_down = slow_down


# ---- data ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where and how to ask one provider for tokens."""

    token_url: str
    authorize_url: str | None = None
    device_url: str | None = None
    revoke_url: str | None = None
    scopes: tuple[str, ...] = ()
    pkce: bool = True
    authorize_params: tuple[tuple[str, str], ...] = ()
    device_style: str = "rfc8628"  # "rfc8628" | "yandex"
    revoke_style: str = "rfc7009"  # "rfc7009" | "yandex"

    @property
    def supports_code(self) -> bool:
        return bool(self.authorize_url)

    @property
    def supports_device(self) -> bool:
        return bool(self.device_url)

    @property
    def supports_revocation(self) -> bool:
        return bool(self.revoke_url)

    def validate(self) -> None:
        """Raise ValueError unless every URL is https (or http on a loopback host)."""
        for url in (self.token_url, self.authorize_url, self.device_url, self.revoke_url):
            if url is not None:
                check_endpoint_url(url)

    def with_overrides(
        self,
        *,
        authorize_url: str | None = None,
        token_url: str | None = None,
        device_url: str | None = None,
        revoke_url: str | None = None,
        scopes: Sequence[str] | None = None,
    ) -> Endpoints:
        return replace(
            self,
            authorize_url=authorize_url or self.authorize_url,
            token_url=token_url or self.token_url,
            device_url=device_url or self.device_url,
            revoke_url=revoke_url or self.revoke_url,
            scopes=tuple(scopes) if scopes else self.scopes,
        )


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """An OAuth2 client registered by the operator. The secret is None for public clients."""

    client_id: str
    client_secret: str | None = None

    def __repr__(self) -> str:
        return f"ClientConfig(client_id={self.client_id!r}, secret=***)"


@dataclass(slots=True)
class TokenSet:
    access_token: str
    refresh_token: str | None
    expires_at: float | None  # unix time; None = the provider did not say
    token_type: str = "Bearer"  # noqa: S105 - a token type, not a secret
    scope: str | None = None

    def __repr__(self) -> str:
        return f"TokenSet(expires_at={self.expires_at!r}, token_type={self.token_type!r}, tokens=***)"

    def to_json(self) -> str:
        return json.dumps(
            {
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "expires_at": self.expires_at,
                "token_type": self.token_type,
                "scope": self.scope,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> TokenSet:
        data = json.loads(text)
        return cls(
            access_token=str(data["access_token"]),
            refresh_token=data.get("refresh_token"),
            expires_at=float(data["expires_at"]) if data.get("expires_at") is not None else None,
            token_type=str(data.get("token_type") or "Bearer"),
            scope=data.get("scope"),
        )

    def expires_within(self, seconds: float, now: float | None = None) -> bool:
        if self.expires_at is None:
            return False
        return self.expires_at - (time.time() if now is None else now) < seconds


@dataclass(frozen=True, slots=True)
class DeviceAuthorization:
    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_at: float
    interval: int


# ---- endpoints -------------------------------------------------------------------------------
def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint_url(url: str) -> str:
    """The URL itself when usable as an OAuth2 endpoint, else ValueError."""
    parts = urlsplit(url)
    if not parts.hostname or parts.username or parts.password or parts.fragment:
        raise ValueError(f"not a usable endpoint URL: {url[:200]!r}")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return url
    raise ValueError(f"OAuth2 endpoints must use https: {url[:200]!r}")


def is_shown_url_ok(url: str) -> bool:
    """Whether a link may be shown to the person: https, a host, no user info."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.hostname) and not parts.username and not parts.password


def builtin_endpoints(provider_id: str) -> Endpoints | None:
    """Endpoints of a standard service, from the providers data (None: no OAuth2 there)."""
    provider = provider_by_id(provider_id)
    raw = provider.oauth2 if provider is not None else None
    if not raw or not raw.get("token_url"):
        return None
    extras = _PROVIDER_EXTRAS.get(provider_id, {})
    device_url = extras.get("device_url") if raw.get("device_flow") else None
    return Endpoints(
        token_url=str(raw["token_url"]),
        authorize_url=raw.get("authorize_url"),
        device_url=device_url,
        revoke_url=extras.get("revoke_url"),
        scopes=tuple(str(s) for s in raw.get("scopes_imap_smtp") or ()),
        # unknown (null) is treated as supported: an unused PKCE parameter is ignored by servers
        pkce=raw.get("pkce_supported") is not False,
        authorize_params=tuple(extras.get("authorize_params", ())),
        device_style=str(extras.get("device_style", "rfc8628")),
        revoke_style=str(extras.get("revoke_style", "rfc7009")),
    )


# ---- PKCE and the authorization URL ----------------------------------------------------------
def new_code_verifier() -> str:
    """RFC 7636: 43-128 characters of [A-Za-z0-9-._~]; 64 here (384 random bits)."""
    return secrets.token_urlsafe(48)


def code_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_url(
    endpoints: Endpoints,
    client: ClientConfig,
    *,
    redirect_uri: str,
    state: str,
    verifier: str | None,
    login_hint: str | None = None,
) -> str:
    """The provider's sign-in page for this request (response_type=code, PKCE S256)."""
    if not endpoints.authorize_url:
        raise ValueError("this provider has no authorization endpoint")
    params: list[tuple[str, str]] = [
        ("response_type", "code"),
        ("client_id", client.client_id),
        ("redirect_uri", redirect_uri),
        ("state", state),
    ]
    if endpoints.scopes:
        params.append(("scope", " ".join(endpoints.scopes)))
    if verifier is not None:
        params += [("code_challenge", code_challenge(verifier)), ("code_challenge_method", "S256")]
    if login_hint:
        params.append(("login_hint", login_hint))
    params += list(endpoints.authorize_params)
    parts = urlsplit(endpoints.authorize_url)
    query = parse_qsl(parts.query, keep_blank_values=True) + params
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


# ---- the client ------------------------------------------------------------------------------
def _expires_at(raw: Any, now: float) -> float | None:
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        return None
    return now + max(0.0, seconds)


def parse_token_response(data: Mapping[str, Any], now: float, old_refresh: str | None = None) -> TokenSet:
    access = data.get("access_token")
    if not isinstance(access, str) or not access:
        raise OAuthError("bad_response", "the token response has no access_token")
    refresh = data.get("refresh_token")
    return TokenSet(
        access_token=access,
        refresh_token=refresh if isinstance(refresh, str) and refresh else old_refresh,
        expires_at=_expires_at(data.get("expires_in"), now),
        token_type=str(data.get("token_type") or "Bearer"),
        scope=str(data["scope"]) if isinstance(data.get("scope"), str) else None,
    )


class OAuthClient:
    """Talks to one provider for one registered client. Use as an async context manager, or
    pass an aiohttp session you own."""

    def __init__(
        self,
        endpoints: Endpoints,
        client: ClientConfig,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        endpoints.validate()
        self.endpoints = endpoints
        self.client = client
        self.ssl_context = ssl_context
        self.timeout = timeout
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> OAuthClient:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"Accept": "application/json", "User-Agent": "mailbridge"},
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- the requests ----------------------------------------------------------------------
    def _client_auth(self) -> list[tuple[str, str]]:
        form = [("client_id", self.client.client_id)]
        if self.client.client_secret:
            form.append(("client_secret", self.client.client_secret))
        return form

    async def _post(self, url: str, form: list[tuple[str, str]]) -> tuple[int, dict[str, Any]]:
        if self._session is None:
            await self.__aenter__()
        assert self._session is not None
        try:
            async with self._session.post(
                url,
                data=form,
                allow_redirects=False,
                ssl=self.ssl_context if url.startswith("https:") and self.ssl_context else True,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                body = await response.content.read(MAX_RESPONSE + 1)
                status = response.status
        except TimeoutError as exc:
            raise OAuthError("network", "the provider did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise OAuthError("network", type(exc).__name__) from exc
        if len(body) > MAX_RESPONSE:
            raise OAuthError("bad_response", "the provider's answer is too large", status)
        if not body.strip():
            return status, {}
        try:
            data = json.loads(body)
        except ValueError:
            if status >= 400:
                raise OAuthError("server_error", f"HTTP {status}", status) from None
            raise OAuthError("bad_response", "the provider's answer is not JSON", status) from None
        if not isinstance(data, dict):
            raise OAuthError("bad_response", "the provider's answer is not a JSON object", status)
        return status, data

    @staticmethod
    def _error(status: int, data: Mapping[str, Any]) -> OAuthError:
        error = data.get("error")
        description = data.get("error_description") or data.get("message") or ""
        if not isinstance(error, str) or not error:
            error = "server_error"
            description = description or f"HTTP {status}"
        return OAuthError(error, str(description), status)

    async def _token_request(
        self, form: list[tuple[str, str]], old_refresh: str | None = None
    ) -> TokenSet:
        now = time.time()
        status, data = await self._post(self.endpoints.token_url, form + self._client_auth())
        if status != 200 or "error" in data:
            raise self._error(status, data)
        return parse_token_response(data, now, old_refresh)

    async def exchange_code(self, code: str, *, redirect_uri: str, verifier: str | None) -> TokenSet:
        """Authorization code -> tokens (RFC 6749 4.1.3, with the PKCE verifier)."""
        form = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect_uri)]
        if verifier is not None:
            form.append(("code_verifier", verifier))
        return await self._token_request(form)

    async def refresh(self, refresh_token: str) -> TokenSet:
        """A new access token. The provider may rotate the refresh token: the result carries
        the new one (or the old one when the provider kept it)."""
        form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token)]
        return await self._token_request(form, old_refresh=refresh_token)

    async def start_device(self) -> DeviceAuthorization:
        """RFC 8628 3.1 (and Yandex's variant): a code for the person to enter at a URL."""
        url = self.endpoints.device_url
        if not url:
            raise OAuthError("unsupported", "this provider has no device authorization")
        form: list[tuple[str, str]] = []
        if self.endpoints.scopes and self.endpoints.device_style == "rfc8628":
            form.append(("scope", " ".join(self.endpoints.scopes)))
        now = time.time()
        status, data = await self._post(url, form + self._client_auth())
        if status != 200 or "error" in data:
            raise self._error(status, data)
        device_code = data.get("device_code")
        user_code = data.get("user_code")
        verification = data.get("verification_uri") or data.get("verification_url")
        if not all(isinstance(v, str) and v for v in (device_code, user_code, verification)):
            raise OAuthError("bad_response", "the device authorization answer is incomplete")
        assert isinstance(device_code, str) and isinstance(user_code, str) and isinstance(verification, str)
        if not is_shown_url_ok(verification):  # shown to the person: https only, loopback or not
            raise OAuthError("insecure_link", "the provider's verification link is not an https URL")
        complete = data.get("verification_uri_complete")
        if isinstance(complete, str) and complete and not is_shown_url_ok(complete):
            log.warning("device authorization: verification_uri_complete is not https; showing verification_uri only")
            complete = None
        try:
            interval = max(1, int(data.get("interval") or DEFAULT_INTERVAL))
        except (TypeError, ValueError):
            interval = DEFAULT_INTERVAL
        return DeviceAuthorization(
            device_code=device_code,
            user_code=user_code,
            verification_uri=verification,
            verification_uri_complete=complete if isinstance(complete, str) and complete else None,
            expires_at=_expires_at(data.get("expires_in"), now) or now + 600,
            interval=interval,
        )

    async def poll_device(self, device: DeviceAuthorization, interval: int | None = None) -> TokenSet:
        """One poll: tokens, or DevicePending (wait and poll again), or OAuthError
        (access_denied, expired_token, ...)."""
        if self.endpoints.device_style == "yandex":
            form = [("grant_type", "device_code"), ("code", device.device_code)]
        else:
            form = [("grant_type", DEVICE_GRANT), ("device_code", device.device_code)]
        current = interval or device.interval
        try:
            return await self._token_request(form)
        except OAuthError as exc:
            if exc.error == "authorization_pending":
                raise DevicePending(current) from None
            if exc.error == "slow_down":
                raise DevicePending(current + 5, slow_down=True) from None
            raise

    async def revoke(self, token: str, *, hint: str = "refresh_token") -> None:
        """RFC 7009 revocation (or Yandex's revoke_token). Raises OAuthError on refusal."""
        url = self.endpoints.revoke_url
        if not url:
            raise OAuthError("unsupported", "this provider has no revocation endpoint")
        if self.endpoints.revoke_style == "yandex":
            form = [("access_token", token)]
        else:
            form = [("token", token), ("token_type_hint", hint)]
        status, data = await self._post(url, form + self._client_auth())
        if status != 200 or "error" in data:
            raise self._error(status, data)

