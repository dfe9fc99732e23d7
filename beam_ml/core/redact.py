"""What a run record or a message may show: URLs without the user and token they may carry, and long values cut to
a length a reader can use (with the length they had), so a 10 MB option value does not become a 20 MB record."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

TEXT_LIMIT = 4000  # characters of one string in a run record or a message


def masked_url(url: str) -> str:
    """A URL without the credentials it may carry (`https://user:token@host/...` → `https://***@host/...`); a path
    or a URL without credentials is returned unchanged."""
    parts = urlsplit(url)
    if not parts.netloc or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def clipped(text: str, limit: int = TEXT_LIMIT) -> str:
    """`text`, or its first `limit` characters and how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text):,} characters, cut to {limit:,}]"


def clipped_values(value: Any, limit: int = TEXT_LIMIT) -> Any:
    """`value` (JSON-like: dicts, lists, strings, numbers) with every string longer than `limit` clipped."""
    if isinstance(value, str):
        return clipped(value, limit)
    if isinstance(value, dict):
        return {k: clipped_values(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clipped_values(v, limit) for v in value]
    return value
