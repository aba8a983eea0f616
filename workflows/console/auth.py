"""The console's gate: credentials from settings, the exposure check, CSRF-safe actions.

* Basic auth (``CANVASFLOW_UI_USERNAME`` + ``CANVASFLOW_UI_PASSWORD``) and/or a bearer token
  (``CANVASFLOW_UI_TOKEN``). With any configured, every request but ``/healthz`` needs one.
* :func:`check_exposure` refuses to serve beyond localhost with none configured.
* Actions are POSTs only. A form POST carries a token bound to the run and the action
  (HMAC with a secret of this process), and a request naming its origin (``Origin``, else
  ``Referer``) must come from the console's own; an API POST must be ``application/json``
  (which a cross-site form cannot send).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from canvasflow.config.errors import SettingsError
from canvasflow.config.settings import Settings

OPEN_PATHS = frozenset({"/healthz"})


@dataclass(frozen=True)
class Credentials:
    username: str | None = None
    password: str | None = None
    token: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Credentials:
        found = cls(settings.ui_username or None, settings.ui_password or None, settings.ui_token or None)
        if bool(found.username) != bool(found.password):
            raise SettingsError(
                "give both CANVASFLOW_UI_USERNAME and CANVASFLOW_UI_PASSWORD for the console's basic auth "
                "(or neither, and CANVASFLOW_UI_TOKEN for a bearer token)"
            )
        return found

    @property
    def required(self) -> bool:
        return bool(self.password or self.token)

    def accept(self, authorization: str) -> bool:
        scheme, _, value = authorization.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and self.token:
            return hmac.compare_digest(value.encode(), self.token.encode())
        if scheme.lower() == "basic" and self.username and self.password:
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return hmac.compare_digest(user.encode(), self.username.encode()) & hmac.compare_digest(
                password.encode(), self.password.encode()
            )
        return False


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, credentials: Credentials) -> None:
    """Refuse to listen beyond localhost with no credentials configured."""
    if not is_loopback(host) and not credentials.required:
        raise SettingsError(
            f"refusing to serve the console on {host} without credentials: set CANVASFLOW_UI_USERNAME and "
            "CANVASFLOW_UI_PASSWORD (basic auth) or CANVASFLOW_UI_TOKEN (bearer token), or bind it to "
            "127.0.0.1 (--host)"
        )


class AuthMiddleware:
    """401 with a basic-auth challenge unless the request carries accepted credentials."""

    def __init__(self, app: ASGIApp, credentials: Credentials) -> None:
        self.app = app
        self.credentials = credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.credentials.required or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.credentials.accept(headers.get(b"authorization", b"").decode("latin-1")):
            await self.app(scope, receive, send)
            return
        challenge = (
            {"WWW-Authenticate": 'Basic realm="canvasflow console"'} if self.credentials.password else {}
        )
        response = PlainTextResponse(
            "credentials required: basic auth (CANVASFLOW_UI_USERNAME/PASSWORD) or a bearer token "
            "(CANVASFLOW_UI_TOKEN)",
            status_code=401,
            headers=challenge,
        )
        await response(scope, receive, send)


class ActionGuard:
    """Tokens for the confirmation forms and the same-origin check of every POST."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)

    def token(self, run_id: str, action: str) -> str:
        return hmac.new(self._secret, f"{run_id}\0{action}".encode(), hashlib.sha256).hexdigest()

    def valid(self, run_id: str, action: str, token: str) -> bool:
        return hmac.compare_digest(self.token(run_id, action), token or "")


def cross_origin(request: Request) -> str | None:
    """Why this request is not from the console's own pages (None when it is, or says nothing)."""
    here = request.headers.get("host", "")
    for header in ("origin", "referer"):
        value = request.headers.get(header)
        if value and value != "null":
            if urlsplit(value).netloc != here:
                return f"{header} {value!r} is not this console ({here})"
            return None
        if value == "null":
            return f"{header} is null"
    return None
