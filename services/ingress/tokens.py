"""Credentials: generated ids and tokens, digests, constant-time checks, and the admin and
join tokens kept in the data dir when the environment does not set them."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import uuid
from pathlib import Path

WORKSPACE_ID_DIGITS = 20


def new_workspace_id() -> str:
    """A 20-digit decimal id (about 66 bits of entropy): the NGPU API's bearer credential,
    shaped like the contract's numeric workspace ids."""
    low = 10 ** (WORKSPACE_ID_DIGITS - 1)
    return str(low + secrets.randbelow(9 * low))


def new_userkey() -> str:
    """A user key as the contract shows it: `ts-<uuid4>`."""
    return f"ts-{uuid.uuid4()}"


def new_node_id() -> str:
    return f"node-{secrets.token_hex(8)}"


def new_token() -> str:
    """A random bearer token (256 bits)."""
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(presented: str, expected: str) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(presented.encode(), expected.encode())


def load_or_create(path: Path, configured: str | None) -> tuple[str, str]:
    """The token to use and where it came from: the configured value, else the one stored
    at `path`, else a new one written there (mode 0600)."""
    if configured:
        return configured, "environment"
    if path.exists():
        return path.read_text().strip(), str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = new_token()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token, str(path)
