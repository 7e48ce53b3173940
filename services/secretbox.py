"""Secrets at rest in the event log: Fernet (AES-128-CBC with HMAC-SHA256, `cryptography`)
under the operator's key(s), `NGPU_SECRETS_KEY`.

The log is read by every role, archived forever in ClickHouse and, on Kafka, readable by
whoever reads the topics: a secret the control plane must give back later (a registry
password a node needs to pull) is written there only as a token of this box. Several
comma-separated keys rotate: the first encrypts, each of them decrypts.
"""

from __future__ import annotations

from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from events.errors import NgpuError

SETTING = "NGPU_SECRETS_KEY"


class SecretBoxError(NgpuError):
    """A token this box cannot open (another key, or not a token); says which setting."""


class SecretBox:
    """Seals JSON objects into opaque ASCII tokens and opens them again."""

    def __init__(self, keys: list[bytes]) -> None:
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def __repr__(self) -> str:
        return "SecretBox(<keys hidden>)"

    @classmethod
    def parse(cls, value: str) -> SecretBox:
        """From the setting's value. Raises `ValueError` naming the setting (never
        quoting the key) when a key is not a Fernet key (32 bytes, url-safe base64)."""
        keys = [k.strip().encode() for k in value.split(",") if k.strip()]
        if not keys:
            raise ValueError(f"{SETTING}: no key given")
        try:
            return cls(keys)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"{SETTING}: each key must be 32 url-safe base64-encoded bytes, as "
                "cryptography.fernet.Fernet.generate_key() makes"
            ) from exc

    def seal(self, document: dict[str, Any]) -> str:
        return self._fernet.encrypt(orjson.dumps(document)).decode("ascii")

    def open(self, token: str) -> dict[str, Any]:
        """The sealed object. Raises `SecretBoxError`."""
        try:
            document = orjson.loads(self._fernet.decrypt(token.encode("ascii")))
        except (InvalidToken, UnicodeEncodeError, orjson.JSONDecodeError) as exc:
            raise SecretBoxError(f"a sealed secret cannot be opened with {SETTING}") from exc
        if not isinstance(document, dict):
            raise SecretBoxError("a sealed secret is not an object")
        return document
