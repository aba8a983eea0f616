"""Who may use the console, and where it may listen, decided without a web framework (the
``canvasflow ui`` and ``flower`` commands check it before starlette or Flower is loaded).

* Basic auth (``CANVASFLOW_UI_USERNAME`` + ``CANVASFLOW_UI_PASSWORD``) and/or a bearer token
  (``CANVASFLOW_UI_TOKEN``): :class:`Credentials`, which ``console/auth.py`` asks of every request.
* :func:`check_exposure` refuses to serve beyond localhost with none configured.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
from dataclasses import dataclass

from canvasflow.config.errors import SettingsError
from canvasflow.config.settings import Settings


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
