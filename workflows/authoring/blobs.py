"""Large values by reference: ``key = blobs.put(data)`` in one step, ``blobs.get(key)`` in another.

Inputs, step arguments and results travel as JSON in messages and the journal, up to
``CANVASFLOW_MAX_PAYLOAD_BYTES`` (1 MiB by default). Anything larger goes to the blob store
and the key (a short string) travels instead::

    from canvasflow import blobs, step

    @step
    def render(order_id: int) -> str:
        return blobs.put(make_pdf(order_id))        # -> "blob:3f2a...", fits any message

    @step
    def mail(pdf_key: str) -> None:
        send(blobs.get(pdf_key))

The store is Redis: ``CANVASFLOW_BLOB_URL``, else the state Redis; keys are the SHA-256 of
the content (putting the same bytes twice stores them once), under the key prefix, and
expire after ``CANVASFLOW_BLOB_TTL`` seconds (7 days). A Redis value holds up to 512 MB.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

from canvasflow.config.errors import InputError
from canvasflow.config.redis_clients import state_client
from canvasflow.config.settings import get_settings

PREFIX = "blob:"


@lru_cache(maxsize=4)
def _client(url: str) -> Any:
    return state_client(url)


def _store() -> tuple[Any, str]:
    s = get_settings()
    return _client(s.blob_url or s.redis_state_url), f"{s.key_prefix}:"


def put(data: bytes | str) -> str:
    """Store ``data`` (str is stored as UTF-8); return its key, ``blob:<sha256>``."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    key = PREFIX + hashlib.sha256(raw).hexdigest()
    client, prefix = _store()
    client.set(prefix + key, raw, ex=get_settings().blob_ttl)
    return key


def get(key: str) -> bytes:
    """The bytes stored under ``key``; InputError when it is not a blob key or has expired."""
    if not isinstance(key, str) or not key.startswith(PREFIX):
        raise InputError(f"{key!r:.80} is not a blob key (blobs.put returns them: 'blob:<sha256>')")
    client, prefix = _store()
    raw = client.get(prefix + key)
    if raw is None:
        raise InputError(f"blob {key} is not stored (expired after CANVASFLOW_BLOB_TTL, or never put)")
    return bytes(raw)


def delete(key: str) -> None:
    """Remove a blob before it expires."""
    client, prefix = _store()
    client.delete(prefix + key)
