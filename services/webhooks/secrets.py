"""Each workspace's webhook signing secret: derived, never stored.

The secret is never stored, in the log or anywhere else: it is derived, as
`whsec_` + base64(HMAC-SHA256(webhook key, workspace id, salt)), from a control-plane key
(`NGPU_WEBHOOK_KEY`, else derived from `NGPU_ADMIN_TOKEN`, else generated into the data
dir, as the node call key is) and the workspace's current salt. The salt is random and
not secret: `WorkspaceRegistered.webhook_salt`, replaced by each `WebhookSecretRotated`.
The ingress derives the secret to answer it once (at creation, at a rotation); the
`webhooks` role derives it again to sign. So the log, which is archived for good, holds
nothing that signs a webhook, and a rotation makes the old secret unreachable for good
(nothing to scrub from the archive).

The key and the salts the role folds are in `services.webhooks.salts`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
_CONTEXT = b"ngpu webhook secret v1\n"


def new_salt() -> str:
    return secrets.token_hex(16)


def workspace_secret(key: bytes, workspace_id: str, salt: str) -> str:
    """The secret of `workspace_id` while its salt is `salt`, in the Standard Webhooks
    form (`whsec_` and 32 bytes in base64) that its libraries take as is."""
    message = _CONTEXT + workspace_id.encode() + b"\n" + salt.encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return PREFIX + base64.b64encode(digest).decode("ascii")
