"""Credentials a workspace's replicas need, as the log holds them: sealed.

`registry_auth` is a token of the control plane's secret box (`services.secretbox`,
`NGPU_SECRETS_KEY`) holding `{"server", "username", "password"}` of the registry the
workspace's image is pulled from, or "" for none. The log, the archive and every reader of
the topics see only the token; the ingress opens it to hand it to a node running one of
the workspace's deployments."""

from __future__ import annotations

from dataclasses import dataclass

from events.workspace import WorkspaceEvent


@dataclass(frozen=True, slots=True)
class RegistryAuthChanged(WorkspaceEvent):
    """The workspace's registry credentials were replaced ("" : removed). Sealed."""

    workspace_id: str
    registry_auth: str = ""
