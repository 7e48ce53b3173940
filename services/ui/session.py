"""The dashboard's session cookie: proof that its holder typed the admin token, without
the token itself. Its value is `<expiry>.<tag>`, the tag an HMAC-SHA256 of a fixed label
and the expiry (Unix seconds) keyed by the admin token: the gateway keeps no session
state, a stolen cookie works only until it expires, and a new admin token ends every
session at once. Pure."""

from __future__ import annotations

import hashlib
import hmac

COOKIE = "ngpu_ui"
LIFETIME_S = 12 * 3600
_LABEL = b"ngpu-ui-session-v1:"


def _tag(admin_token: str, expiry: int) -> str:
    return hmac.new(admin_token.encode(), _LABEL + str(expiry).encode(), hashlib.sha256).hexdigest()


def issue(admin_token: str, now: float, lifetime_s: int = LIFETIME_S) -> str:
    """A session value valid until `now + lifetime_s`."""
    expiry = int(now) + lifetime_s
    return f"{expiry}.{_tag(admin_token, expiry)}"


def valid(value: str | None, admin_token: str, now: float) -> bool:
    """Whether `value` is a session `issue` made under `admin_token` that has not expired
    by `now`. The tag is compared in constant time."""
    expiry_text, dot, tag = (value or "").partition(".")
    if not dot or not (expiry_text.isascii() and expiry_text.isdigit()) or len(expiry_text) > 12:
        return False
    expiry = int(expiry_text)
    return hmac.compare_digest(tag.encode(), _tag(admin_token, expiry).encode()) and now < expiry
