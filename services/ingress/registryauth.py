"""Workspaces' registry credentials at the control plane: sealed before they are
published, summarized (server and user name, never the password) for the operator, and
opened only for a node that runs one of the workspace's deployments."""

from __future__ import annotations

from typing import Any

from services.ingress.directory import WorkspaceView
from services.ingress.errors import ServiceUnavailable
from services.ingress.models import RegistryAuth
from services.secretbox import SETTING, SecretBox, SecretBoxError


def seal(box: SecretBox | None, auth: RegistryAuth) -> str:
    """The token the events carry. 503 naming `NGPU_SECRETS_KEY` when the gateway has no
    key: credentials are never published in the clear."""
    if box is None:
        raise ServiceUnavailable(
            f"registry_auth needs {SETTING} (a Fernet key) on the gateway, which is not set",
            field="registry_auth",
        )
    return box.seal(auth.model_dump())


def summary(view: WorkspaceView, box: SecretBox | None) -> dict[str, Any] | None:
    """`{"server", "username"}` of the workspace's credentials (None: it has none). When
    they cannot be opened (no key, another key), both are null and `sealed` is true."""
    if not view.registry_auth:
        return None
    try:
        opened = _open(view.registry_auth, box)
    except SecretBoxError:
        return {"server": None, "username": None, "sealed": True}
    return {"server": opened.get("server"), "username": opened.get("username")}


def opened(view: WorkspaceView, box: SecretBox | None) -> dict[str, str]:
    """`{"server", "username", "password"}`. Raises `SecretBoxError`."""
    document = _open(view.registry_auth, box)
    return {k: str(document.get(k, "")) for k in ("server", "username", "password")}


def _open(token: str, box: SecretBox | None) -> dict[str, Any]:
    if box is None:
        raise SecretBoxError(f"{SETTING} is not set")
    return box.open(token)
