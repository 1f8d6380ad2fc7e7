"""List pagination (``limit``/``nextToken``) and ``clientToken`` idempotency digests.

``nextToken`` is opaque to clients: base64 of the last name returned; the next page starts
after it (names are listed sorted), so pages stay correct when resources come and go.
"""
from __future__ import annotations

import base64
import hashlib
import json
from typing import Callable, Sequence, TypeVar

from xds_server.api.errors import bad_request

T = TypeVar("T")
DEFAULT_LIMIT = 100


def paginate(items: Sequence[T], sort_key: Callable[[T], str], limit: int | None, token: str | None) -> tuple[list[T], str | None]:
    ordered = sorted(items, key=sort_key)
    limit = DEFAULT_LIMIT if limit is None else limit
    if token:
        try:
            after = base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            raise bad_request(f"nextToken: {token!r} is not a token this server gave out") from None
        ordered = [i for i in ordered if sort_key(i) > after]
    page = ordered[:limit]
    more = len(ordered) > limit
    return page, (base64.urlsafe_b64encode(sort_key(page[-1]).encode()).decode().rstrip("=") if more and page else None)


def request_digest(operation: str, params: dict) -> str:
    """What identifies a request for idempotency: the operation and every parameter but the token."""
    body = {k: v for k, v in params.items() if k != "clientToken"}
    return hashlib.sha256(json.dumps([operation, body], sort_keys=True, default=str).encode()).hexdigest()
