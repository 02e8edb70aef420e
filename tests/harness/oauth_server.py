"""A local OAuth2 authorization server for tests, built from authlib's server components.

It plays the provider (Google, Microsoft, Yandex ...) on 127.0.0.1 over plain http (RFC 8252
allows loopback), with nothing mocked on the client side:

* ``GET/POST /authorize``: authorization code grant with PKCE (RFC 7636, S256 required), a
  scripted sign-in form (user name + the mailbox password of the mail stack, Allow / Deny);
* ``POST /token``: authorization_code, refresh_token (rotating refresh tokens by default, as
  Microsoft does) and the device_code grant (RFC 8628);
* ``POST /device/code`` + ``GET/POST /device``: device authorization and its sign-in form;
* ``POST /introspect``: RFC 7662, what Dovecot's ``passdb oauth2`` and the test SMTP server ask
  (unauthenticated: only the loopback resource servers of the stack reach it);
* ``POST /revoke``: RFC 7009.

authlib's servers are framework-neutral and synchronous: this module adapts aiohttp requests to
them (``_FrameworkRequest`` / ``_OAuth2Request``) and their ``(status, body, headers)`` answers
back to aiohttp responses. It runs in the mail stack's service thread (see
``MailStack.oauth_server``), so it answers any event loop; the test-facing methods are
thread-safe.

``ScriptedBrowser`` is the person's browser: an aiohttp client that opens the sign-in page,
fills the form and follows the redirects back to the bot's callback.
"""

from __future__ import annotations

import html
import itertools
import json
import secrets
import socket
import ssl
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin

import aiohttp
from aiohttp import web
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
    TokenMixin,
)
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc6749.models import AuthorizationCodeMixin
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc8628 import (
    DeviceAuthorizationEndpoint,
    DeviceCodeGrant,
    DeviceCredentialDict,
)

DEFAULT_LIFETIME = 3600
CODE_LIFETIME = 600
DEVICE_INTERVAL = 1


# ---- models ----------------------------------------------------------------------------------
@dataclass(eq=False)
class TestClient(ClientMixin):
    __test__ = False  # not a pytest class

    client_id: str
    client_secret: str | None
    redirect_uris: list[str]
    grant_types: set[str]
    access_token_lifetime: int = DEFAULT_LIFETIME
    rotate_refresh_tokens: bool = True

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str:
        return scope or ""

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and secrets.compare_digest(
            self.client_secret.encode(), client_secret.encode()
        )

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.client_secret is None:
            return method == "none"
        return method in {"client_secret_post", "client_secret_basic"}

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


class _ResourceServer(ClientMixin):
    """Who calls /introspect: Dovecot and the test SMTP server (no credentials on loopback)."""

    client_id = "resource-server"

    def get_client_id(self) -> str:
        return self.client_id

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "introspection"


@dataclass(eq=False)
class AuthCode(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass(eq=False)
class Grant:
    """What one sign-in produced: an access token and (maybe) a refresh token."""

    access_token: str
    refresh_token: str | None
    client_id: str
    user: str
    scope: str
    issued_at: float
    expires_in: int
    access_revoked: bool = False
    refresh_revoked: bool = False


@dataclass(eq=False)
class TokenView(TokenMixin):
    """authlib's view of a Grant through one of its two tokens."""

    grant: Grant
    kind: str  # "access_token" | "refresh_token"
    server: OAuthServer

    def check_client(self, client: Any) -> bool:
        return bool(client.get_client_id() == self.grant.client_id)

    def get_scope(self) -> str:
        return self.grant.scope

    def get_expires_in(self) -> int:
        return self.grant.expires_in

    def is_expired(self) -> bool:
        if self.kind == "refresh_token":
            return False
        return self.server.now() >= self.grant.issued_at + self.grant.expires_in

    def is_revoked(self) -> bool:
        return self.grant.refresh_revoked if self.kind == "refresh_token" else self.grant.access_revoked

    def get_user(self) -> str:
        return self.grant.user

    def get_client(self) -> Any:
        return self.server.clients.get(self.grant.client_id)


# ---- authlib <-> aiohttp ---------------------------------------------------------------------
@dataclass
class _FrameworkRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    args: dict[str, str]
    form: dict[str, str]
    lists: dict[str, list[str]] = field(default_factory=dict)


class _Payload(OAuth2Payload):
    def __init__(self, req: _FrameworkRequest) -> None:
        self._req = req

    @property
    def data(self) -> dict[str, str]:
        return {**self._req.args, **self._req.form}

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return defaultdict(list, self._req.lists)


class _OAuth2Request(OAuth2Request):
    def __init__(self, req: _FrameworkRequest) -> None:
        super().__init__(req.method, req.url, headers=req.headers)
        self._req = req
        self.payload = _Payload(req)

    @property
    def args(self) -> dict[str, str]:
        return self._req.args

    @property
    def form(self) -> dict[str, str]:
        return self._req.form


def _framework_request(
    method: str, url: str, headers: Mapping[str, str], query: Any, form: Any
) -> _FrameworkRequest:
    lists: dict[str, list[str]] = defaultdict(list)
    for source in (query, form):
        for key, value in source.items():
            lists[key].append(str(value))
    return _FrameworkRequest(
        method=method,
        url=url,
        headers=headers,
        args={k: str(v) for k, v in query.items()},
        form={k: str(v) for k, v in form.items()},
        lists=dict(lists),
    )


async def _from_aiohttp(request: web.Request) -> _FrameworkRequest:
    form = await request.post() if request.method == "POST" else {}
    return _framework_request(request.method, str(request.url), request.headers, request.query, form)


def _to_aiohttp(result: tuple[int, Any, list[tuple[str, str]]]) -> web.Response:
    status, body, headers = result
    if isinstance(body, dict):
        text = json.dumps(body)
    else:
        text = body or ""
    response = web.Response(status=status, text=text)
    for name, value in headers:
        if name.lower() == "content-type":
            response.content_type = value.split(";")[0].strip()
        else:
            response.headers[name] = value
    return response


# ---- authlib server and grants ---------------------------------------------------------------
class _Server(AuthorizationServer):
    def __init__(self, owner: OAuthServer) -> None:
        super().__init__()
        self.owner = owner

    def query_client(self, client_id: str) -> TestClient | None:
        return self.owner.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.owner._save_token(token, request)

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        return _OAuth2Request(request)

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Any:
        return status, body, headers

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None


class _CodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    @property
    def owner(self) -> OAuthServer:
        return self.server.owner  # type: ignore[no-any-return]

    def validate_authorization_request(self) -> str:
        redirect_uri: str = super().validate_authorization_request()
        data = self.request.payload.data
        # a strict provider: PKCE with S256 on every authorization request
        if not data.get("code_challenge") or data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE (S256) is required", redirect_uri=redirect_uri)
        return redirect_uri

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        with self.owner.lock:
            self.owner.codes[code] = AuthCode(
                code=code,
                client_id=request.client.get_client_id(),
                redirect_uri=request.payload.redirect_uri or "",
                scope=request.scope or "",
                user=request.user,
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                expires_at=self.owner.now() + CODE_LIFETIME,
            )

    def query_authorization_code(self, code: str, client: Any) -> AuthCode | None:
        with self.owner.lock:
            item = self.owner.codes.get(code)
        if item is None or item.client_id != client.get_client_id() or item.expires_at < self.owner.now():
            return None
        return item

    def delete_authorization_code(self, authorization_code: AuthCode) -> None:
        with self.owner.lock:
            self.owner.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: AuthCode) -> str:
        return authorization_code.user


class _PKCE(CodeChallenge):
    def get_authorization_code_challenge(self, authorization_code: AuthCode) -> str | None:
        return authorization_code.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code: AuthCode) -> str | None:
        return authorization_code.code_challenge_method


class _RefreshGrant(RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    @property
    def owner(self) -> OAuthServer:
        return self.server.owner  # type: ignore[no-any-return]

    @property  # type: ignore[override]
    def INCLUDE_NEW_REFRESH_TOKEN(self) -> bool:  # noqa: N802 - authlib's name
        client = self.request.client
        return bool(client is not None and client.rotate_refresh_tokens)

    def authenticate_refresh_token(self, refresh_token: str) -> TokenView | None:
        with self.owner.lock:
            grant = self.owner.by_refresh.get(refresh_token)
        if grant is None or grant.refresh_revoked:
            return None
        return TokenView(grant, "refresh_token", self.owner)

    def authenticate_user(self, refresh_token: TokenView) -> str:
        return refresh_token.grant.user

    def revoke_old_credential(self, refresh_token: TokenView) -> None:
        with self.owner.lock:
            self.owner.refresh_count += 1
            if self.INCLUDE_NEW_REFRESH_TOKEN:
                refresh_token.grant.refresh_revoked = True

    def issue_token(self, user: str, refresh_token: TokenView) -> dict[str, Any]:
        token: dict[str, Any] = super().issue_token(user, refresh_token)
        if not self.INCLUDE_NEW_REFRESH_TOKEN:
            # the old refresh token stays valid: remember it for the new access token
            token["_keep_refresh"] = refresh_token.grant.refresh_token
        return token


class _DeviceGrant(DeviceCodeGrant):
    @property
    def owner(self) -> OAuthServer:
        return self.server.owner  # type: ignore[no-any-return]

    def query_device_credential(self, device_code: str) -> DeviceCredentialDict | None:
        with self.owner.lock:
            return self.owner.devices.get(device_code)

    def query_user_grant(self, user_code: str) -> tuple[str, bool] | None:
        with self.owner.lock:
            return self.owner.device_grants.get(user_code)

    def should_slow_down(self, credential: DeviceCredentialDict) -> bool:
        now = self.owner.now()
        last = credential.get("last_poll")
        credential["last_poll"] = now
        self.owner.device_polls += 1
        return last is not None and now - last < DEVICE_INTERVAL * 0.5


class _DeviceEndpoint(DeviceAuthorizationEndpoint):
    INTERVAL = DEVICE_INTERVAL
    EXPIRES_IN = 600

    @property
    def owner(self) -> OAuthServer:
        return self.server.owner  # type: ignore[no-any-return]

    def get_verification_uri(self) -> str:
        return self.owner.device_page_url or f"{self.owner.page_base_url}/device"

    def save_device_credential(self, client_id: str, scope: str | None, data: dict[str, Any]) -> None:
        item = DeviceCredentialDict(
            client_id=client_id, scope=scope, expires_at=time.time() + self.EXPIRES_IN, **data
        )
        with self.owner.lock:
            self.owner.devices[data["device_code"]] = item
            self.owner.user_codes[data["user_code"]] = data["device_code"]


class _Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["loopback_resource_server"]

    @property
    def owner(self) -> OAuthServer:
        return self.server.owner  # type: ignore[no-any-return]

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenView | None:
        with self.owner.lock:
            self.owner.introspections += 1
            return self.owner._view(token_string, token_type_hint)

    def check_permission(self, token: TokenView, client: Any, request: Any) -> bool:
        return True

    def introspect_token(self, token: TokenView) -> dict[str, Any]:
        grant = token.grant
        return {
            "active": True,
            "username": grant.user,
            "client_id": grant.client_id,
            "scope": grant.scope,
            "token_type": "Bearer",
            "exp": int(grant.issued_at + grant.expires_in),
        }


class _Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    @property
    def owner(self) -> OAuthServer:
        return self.server.owner  # type: ignore[no-any-return]

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenView | None:
        with self.owner.lock:
            return self.owner._view(token_string, token_type_hint)

    def revoke_token(self, token: TokenView, request: Any) -> None:
        with self.owner.lock:
            token.grant.access_revoked = True
            token.grant.refresh_revoked = True
            self.owner.revocations.append(token.kind)


def _loopback_resource_server(query_client: Any, request: Any) -> _ResourceServer:
    return _ResourceServer()


# ---- the server ------------------------------------------------------------------------------
def _page(title: str, body: str, status: int = 200) -> web.Response:
    text = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(status=status, text=text, content_type="text/html")


def _hidden(name: str, value: str) -> str:
    return f"<input type='hidden' name='{html.escape(name)}' value='{html.escape(value, quote=True)}'>"


class OAuthServer:
    """The provider. ``check_password(user, password)`` decides who may sign in."""

    def __init__(
        self,
        check_password: Callable[[str, str], bool],
        *,
        tls: ssl.SSLContext | None = None,
        browser_tls: ssl.SSLContext | None = None,
    ) -> None:
        """`tls` (a certificate for 127.0.0.1 from the test CA): the pages a person opens are
        also served over https (`page_base_url`), as the device flow's link must be; the bot
        itself talks to the loopback http endpoints. `browser_tls` trusts that CA
        (`browser()`)."""
        self.check_password = check_password
        self.tls = tls
        self.browser_tls = browser_tls
        self.page_base_url = ""  # https when `tls` is given, else base_url
        self.device_page_url: str | None = None  # a test may hand out another verification link
        self.lock = threading.RLock()
        self.clients: dict[str, TestClient] = {}
        self.codes: dict[str, AuthCode] = {}
        self.by_access: dict[str, Grant] = {}
        self.by_refresh: dict[str, Grant] = {}
        self.devices: dict[str, DeviceCredentialDict] = {}
        self.user_codes: dict[str, str] = {}
        self.device_grants: dict[str, tuple[str, bool]] = {}
        self.revocations: list[str] = []
        self.refresh_count = 0
        self.device_polls = 0
        self.introspections = 0
        self.next_authorize_error: str | None = None
        self.base_url = ""
        self._clock_offset = 0.0
        self._runner: web.AppRunner | None = None
        self._counter = itertools.count(1)
        self.server = _Server(self)
        self.server.register_token_generator("default", self._generate_token)
        self.server.register_grant(_CodeGrant, [_PKCE(required=True)])
        self.server.register_grant(_RefreshGrant)
        self.server.register_grant(_DeviceGrant)
        self.server.register_endpoint(_DeviceEndpoint(self.server))
        self.server.register_endpoint(_Introspection(self.server))
        self.server.register_endpoint(_Revocation(self.server))
        self.server.register_client_auth_method("loopback_resource_server", _loopback_resource_server)

    # -- URLs ------------------------------------------------------------------------------
    @property
    def authorize_url(self) -> str:
        return f"{self.base_url}/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    @property
    def device_url(self) -> str:
        return f"{self.base_url}/device/code"

    @property
    def introspection_url(self) -> str:
        return f"{self.base_url}/introspect"

    @property
    def revoke_url(self) -> str:
        return f"{self.base_url}/revoke"

    # -- test controls (thread-safe) -------------------------------------------------------
    def now(self) -> float:
        return time.time() + self._clock_offset

    def add_client(
        self,
        client_id: str | None = None,
        client_secret: str | None = "",
        *,
        redirect_uris: list[str] | None = None,
        device: bool = False,
        access_token_lifetime: int = DEFAULT_LIFETIME,
        rotate_refresh_tokens: bool = True,
    ) -> TestClient:
        """Register a client. client_secret "" = generate one; None = public client."""
        grant_types = {"authorization_code", "refresh_token"}
        if device:
            grant_types.add("urn:ietf:params:oauth:grant-type:device_code")
        client = TestClient(
            client_id=client_id or f"client-{secrets.token_hex(4)}",
            client_secret=secrets.token_urlsafe(16) if client_secret == "" else client_secret,
            redirect_uris=list(redirect_uris or []),
            grant_types=grant_types,
            access_token_lifetime=access_token_lifetime,
            rotate_refresh_tokens=rotate_refresh_tokens,
        )
        with self.lock:
            self.clients[client.client_id] = client
        return client

    def issue_token(self, user: str, client_id: str = "direct", lifetime: int = DEFAULT_LIFETIME) -> str:
        """An access token for `user` without any flow (for mail-stack tests)."""
        token = secrets.token_urlsafe(24)
        with self.lock:
            grant = Grant(token, None, client_id, user.lower(), "", self.now(), lifetime)
            self.by_access[token] = grant
        return token

    def expire_access_tokens(self, user: str | None = None) -> None:
        """Every access token (of `user`) stops working now; refresh tokens stay valid."""
        with self.lock:
            for grant in self.by_access.values():
                if user is None or grant.user == user.lower():
                    grant.expires_in = min(grant.expires_in, int(self.now() - grant.issued_at) - 1)

    def revoke_user(self, user: str) -> None:
        """The person withdrew consent at the provider: every token of theirs dies."""
        with self.lock:
            for grant in self.by_access.values():
                if grant.user == user.lower():
                    grant.access_revoked = grant.refresh_revoked = True

    def tokens_of(self, user: str) -> list[Grant]:
        with self.lock:
            return [g for g in self.by_access.values() if g.user == user.lower()]

    def is_active(self, access_token: str) -> bool:
        with self.lock:
            view = self._view(access_token, "access_token")
            return view is not None and not view.is_expired() and not view.is_revoked()

    # -- internals -------------------------------------------------------------------------
    def _generate_token(
        self,
        grant_type: str,
        client: TestClient,
        user: str | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": f"at-{next(self._counter)}-{secrets.token_urlsafe(24)}",
            "expires_in": expires_in or client.access_token_lifetime,
        }
        if scope:
            token["scope"] = scope
        if include_refresh_token:
            token["refresh_token"] = f"rt-{secrets.token_urlsafe(24)}"
        return token

    def _save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        kept = token.pop("_keep_refresh", None)
        refresh = token.get("refresh_token") or kept
        grant = Grant(
            access_token=token["access_token"],
            refresh_token=refresh,
            client_id=request.client.get_client_id(),
            user=str(request.user).lower(),
            scope=token.get("scope", ""),
            issued_at=self.now(),
            expires_in=int(token["expires_in"]),
        )
        with self.lock:
            self.by_access[grant.access_token] = grant
            if refresh:
                self.by_refresh[refresh] = grant

    def _view(self, token_string: str, hint: str | None) -> TokenView | None:
        order = ["refresh_token", "access_token"] if hint == "refresh_token" else ["access_token", "refresh_token"]
        for kind in order:
            table = self.by_access if kind == "access_token" else self.by_refresh
            grant = table.get(token_string)
            if grant is not None:
                return TokenView(grant, kind, self)
        return None

    # -- HTTP ------------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/authorize", self._authorize_page)
        app.router.add_post("/authorize", self._authorize_submit)
        app.router.add_post("/token", self._token)
        app.router.add_post("/device/code", self._device_code)
        app.router.add_get("/device", self._device_page)
        app.router.add_post("/device", self._device_submit)
        app.router.add_post("/introspect", self._introspect)
        app.router.add_post("/revoke", self._revoke)
        return app

    async def open(self, sock: socket.socket | None = None) -> None:
        """Serve on `sock` (bound, not yet listening) or on a free loopback port."""
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
        host, port = sock.getsockname()[:2]
        self.base_url = f"http://{host}:{port}"
        self._runner = web.AppRunner(self.make_app(), access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        self.page_base_url = self.base_url
        if self.tls is not None:
            secure = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            secure.bind((host, 0))
            await web.SockSite(self._runner, secure, ssl_context=self.tls).start()
            self.page_base_url = f"https://{host}:{secure.getsockname()[1]}"

    def browser(self) -> ScriptedBrowser:
        """A person's browser that trusts this server's https pages."""
        return ScriptedBrowser(self.browser_tls)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _sign_in_form(self, action: str, hidden: dict[str, str], error: str = "") -> web.Response:
        fields = "".join(_hidden(k, v) for k, v in hidden.items())
        problem = f"<p class='error'>{html.escape(error)}</p>" if error else ""
        body = (
            f"{problem}<form method='post' action='{html.escape(action)}'>{fields}"
            "<input name='username'><input name='password' type='password'>"
            "<button name='consent' value='allow'>Allow</button>"
            "<button name='consent' value='deny'>Deny</button></form>"
        )
        return _page("Sign in to Test Provider", body)

    async def _authorize_page(self, request: web.Request) -> web.Response:
        req = await _from_aiohttp(request)
        try:
            self.server.get_consent_grant(req)
        except OAuth2Error as error:
            if error.redirect_uri:
                return _to_aiohttp(self.server.handle_error_response(req, error))
            return _page("Request refused", f"<p>{html.escape(error.error or '')}</p>", 400)
        return self._sign_in_form("/authorize", {"q": request.query_string})

    async def _authorize_submit(self, request: web.Request) -> web.Response:
        form = await request.post()
        query = str(form.get("q", ""))
        args = dict(parse_qsl(query, keep_blank_values=True))
        req = _framework_request("GET", f"{self.base_url}/authorize?{query}", request.headers, args, {})
        try:
            grant = self.server.get_consent_grant(req)
        except OAuth2Error as error:
            return _page("Request refused", f"<p>{html.escape(error.error or '')}</p>", 400)
        forced = self.next_authorize_error
        if forced:
            self.next_authorize_error = None
            location = grant.redirect_uri + "?" + urlencode({"error": forced, "state": args.get("state", "")})
            raise web.HTTPFound(location)
        if form.get("consent") != "allow":
            return _to_aiohttp(self.server.create_authorization_response(req, grant_user=None, grant=grant))
        username = str(form.get("username", "")).strip()
        if not self.check_password(username, str(form.get("password", ""))):
            return self._sign_in_form("/authorize", {"q": query}, "Wrong user name or password")
        return _to_aiohttp(self.server.create_authorization_response(req, grant_user=username.lower(), grant=grant))

    async def _token(self, request: web.Request) -> web.Response:
        return _to_aiohttp(self.server.create_token_response(await _from_aiohttp(request)))

    async def _device_code(self, request: web.Request) -> web.Response:
        return _to_aiohttp(self.server.create_endpoint_response("device_authorization", await _from_aiohttp(request)))

    async def _introspect(self, request: web.Request) -> web.Response:
        return _to_aiohttp(self.server.create_endpoint_response("introspection", await _from_aiohttp(request)))

    async def _revoke(self, request: web.Request) -> web.Response:
        return _to_aiohttp(self.server.create_endpoint_response("revocation", await _from_aiohttp(request)))

    async def _device_page(self, request: web.Request) -> web.Response:
        return self._sign_in_form("/device", {"user_code": request.query.get("user_code", "")})

    async def _device_submit(self, request: web.Request) -> web.Response:
        form = await request.post()
        user_code = str(form.get("user_code", "")).strip().upper()
        with self.lock:
            device_code = self.user_codes.get(user_code)
            credential = self.devices.get(device_code or "")
        if credential is None or credential.is_expired():
            return _page("Unknown code", "<p>This code is wrong or expired.</p>", 400)
        if form.get("consent") != "allow":
            with self.lock:
                self.device_grants[user_code] = ("", False)
            return _page("Access denied", "<p>You may close this page.</p>")
        username = str(form.get("username", "")).strip()
        if not self.check_password(username, str(form.get("password", ""))):
            return self._sign_in_form("/device", {"user_code": user_code}, "Wrong user name or password")
        with self.lock:
            self.device_grants[user_code] = (username.lower(), True)
        return _page("Signed in", "<p>You may return to your device.</p>")


# ---- the person's browser --------------------------------------------------------------------
class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.hidden: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = values.get("action", "")
        elif tag == "input" and values.get("type") == "hidden" and values.get("name"):
            self.hidden[values["name"]] = values.get("value", "")


@dataclass
class BrowserPage:
    status: int
    url: str
    text: str


class ScriptedBrowser:
    """A person at a browser: opens the sign-in page, types, presses Allow or Deny, follows the
    redirects (to the bot's callback page, for the code flow)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.history: list[str] = []
        self.tls = tls  # trusted CAs for https pages (None: the system's)

    def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.tls) if self.tls is not None else None)

    async def _submit_form(
        self,
        session: aiohttp.ClientSession,
        page_url: str,
        page_text: str,
        fields: dict[str, str],
        follow_redirects: bool = True,
    ) -> BrowserPage:
        parser = _FormParser()
        parser.feed(page_text)
        if parser.action is None:
            raise AssertionError(f"no form on {page_url}: {page_text[:300]}")
        target = urljoin(page_url, parser.action)
        async with session.post(target, data={**parser.hidden, **fields}, allow_redirects=follow_redirects) as response:
            self.history += [str(r.url) for r in response.history] + [str(response.url)]
            if not follow_redirects and response.status in (301, 302, 303, 307):
                return BrowserPage(response.status, response.headers.get("Location", ""), "")
            return BrowserPage(response.status, str(response.url), await response.text())

    async def open(self, url: str) -> BrowserPage:
        async with self._session() as session, session.get(url) as response:
            self.history += [str(r.url) for r in response.history] + [str(response.url)]
            return BrowserPage(response.status, str(response.url), await response.text())

    async def sign_in(
        self, authorize_url: str, username: str, password: str, *, allow: bool = True, follow_redirects: bool = True
    ) -> BrowserPage:
        """Open the authorization URL, sign in, consent (or not); return where it ends (with
        follow_redirects=False: the provider's redirect, its Location as `url`)."""
        async with self._session() as session:
            async with session.get(authorize_url) as response:
                page = BrowserPage(response.status, str(response.url), await response.text())
            if page.status != 200:
                return page
            return await self._submit_form(
                session,
                page.url,
                page.text,
                {"username": username, "password": password, "consent": "allow" if allow else "deny"},
                follow_redirects,
            )

    async def enter_device_code(
        self, verification_uri: str, user_code: str, username: str, password: str, *, allow: bool = True
    ) -> BrowserPage:
        async with self._session() as session:
            async with session.get(verification_uri) as response:
                page = BrowserPage(response.status, str(response.url), await response.text())
            return await self._submit_form(
                session,
                page.url,
                page.text,
                {
                    "user_code": user_code,
                    "username": username,
                    "password": password,
                    "consent": "allow" if allow else "deny",
                },
            )
