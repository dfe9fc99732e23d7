"""Credentials never reach a run record or a message: URLs are recorded without the user and token they may carry."""
from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def masked_url(url: str) -> str:
    """A URL without the credentials it may carry (`https://user:token@host/...` → `https://***@host/...`); a path
    or a URL without credentials is returned unchanged."""
    parts = urlsplit(url)
    if not parts.netloc or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
