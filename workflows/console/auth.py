"""The console's gate: credentials asked of every request, CSRF-safe actions.

* With credentials configured (``console/credentials.py``), every request but ``/healthz``
  needs them: basic auth or a bearer token.
* Actions are POSTs only. A form POST carries a token bound to the run and the action
  (HMAC with a secret of this process), and a request naming its origin (``Origin``, else
  ``Referer``) must come from the console's own; an API POST must be ``application/json``
  (which a cross-site form cannot send).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from canvasflow.workflows.console.credentials import Credentials

OPEN_PATHS = frozenset({"/healthz"})


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
