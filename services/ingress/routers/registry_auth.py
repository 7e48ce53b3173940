"""Workspaces' registry credentials: the operator sets or removes them (admin token), and
a node fetches them for a deployment it has been assigned (its own token), to pull the
image. Nothing here logs or answers a password but that one node route."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from events import RegistryAuthChanged
from services.ingress import registryauth
from services.ingress.answers import MANAGEMENT_ERRORS, RegistryCredentials, Workspace
from services.ingress.auth import AdminAuth, Context, NodeAuth
from services.ingress.errors import NotFound, ServiceUnavailable
from services.ingress.models import RegistryAuth
from services.ingress.routers.workspaces import _get, workspace_body
from services.secretbox import SETTING, SecretBoxError

router = APIRouter(tags=["registry-auth"], responses=MANAGEMENT_ERRORS)


@router.put("/v1/workspaces/{workspace_id}/registry-auth", tags=["workspaces"],
            response_model=None, responses={200: {"model": Workspace}})  # fmt: skip
async def set_registry_auth(
    workspace_id: str, body: RegistryAuth, context: Context, _: AdminAuth
) -> dict[str, Any]:
    """Replace the workspace's registry credentials (sealed with `NGPU_SECRETS_KEY`, 503
    naming it when unset); answers the workspace. Replicas started from then on pull
    with them; running ones are not restarted."""
    _get(context, workspace_id)
    sealed = registryauth.seal(context.secret_box, body)
    await context.publish([RegistryAuthChanged(workspace_id=workspace_id, registry_auth=sealed)])
    return workspace_body(_get(context, workspace_id), context)


@router.delete("/v1/workspaces/{workspace_id}/registry-auth", tags=["workspaces"],
               response_model=None, responses={200: {"model": Workspace}})  # fmt: skip
async def remove_registry_auth(workspace_id: str, context: Context, _: AdminAuth) -> dict[str, Any]:
    """Remove the workspace's registry credentials; answers the workspace. Idempotent."""
    if _get(context, workspace_id).registry_auth:
        await context.publish([RegistryAuthChanged(workspace_id=workspace_id, registry_auth="")])
    return workspace_body(_get(context, workspace_id), context)


@router.get("/v1/nodes/{node_id}/deployments/{deployment_id}/registry-auth", tags=["nodes"],
            response_model=None, responses={200: {"model": RegistryCredentials}})  # fmt: skip
async def deployment_registry_auth(
    deployment_id: str, node: NodeAuth, context: Context, response: Response
) -> dict[str, str]:
    """`{"server", "username", "password"}` of the registry the deployment's image is
    pulled from, for the node it is assigned to (not stopped, the node not lost) and no
    other: 404 for a deployment of another node, one stopped, or one whose workspace has
    no credentials."""
    deployment = node.deployments.get(deployment_id)
    if deployment is None or deployment.state == "stopped" or node.lost:
        raise NotFound(f"no deployment {deployment_id!r} on this node", field="deployment_id")
    view = context.follower.directory.workspaces.get(deployment.spec.workspace_id)
    if view is None or not view.registry_auth:
        raise NotFound("the deployment has no registry credentials", field="deployment_id")
    try:
        credentials = registryauth.opened(view, context.secret_box)
    except SecretBoxError as exc:
        raise ServiceUnavailable(
            f"the registry credentials cannot be opened: check {SETTING}"
        ) from exc
    response.headers["Cache-Control"] = "no-store"
    return credentials
