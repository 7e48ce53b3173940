"""`/v1/workspaces`: register, read, update and delete workspaces (admin token)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Response, status

from events import WebhookSecretRotated, WorkspaceDeleted, WorkspaceRegistered, WorkspaceUpdated
from services.ingress import registryauth
from services.ingress.answers import (
    MANAGEMENT_ERRORS,
    CreatedWorkspace,
    WebhookSecret,
    Workspace,
)
from services.ingress.auth import AdminAuth, Context
from services.ingress.capacity import replica_counts
from services.ingress.context import IngressContext
from services.ingress.directory import WorkspaceView
from services.ingress.errors import Conflict, NotFound
from services.ingress.models import WorkspaceCreate, WorkspaceUpdate
from services.ingress.tokens import new_userkey, new_workspace_id
from services.webhooks.secrets import new_salt, workspace_secret

router = APIRouter(prefix="/v1/workspaces", tags=["workspaces"], responses=MANAGEMENT_ERRORS)


def workspace_body(view: WorkspaceView, context: IngressContext) -> dict[str, Any]:
    """The workspace as the management API answers it (the Workspace ID included: the
    operator is trusted with it). `registry_auth` shows the server and user name only.
    `replicas` holds `min` and `max`, `wanted` (the scheduler's last decision, else
    `min`), `ready`, `starting`, `draining`, and `unplaced` (why) when fewer are placed
    than wanted."""
    ws = view.registered
    directory, lost_after_s = context.follower.directory, context.settings.node_lost_after_s
    return {
        "workspace_id": ws.workspace_id,
        "userkey": ws.userkey,
        "name": ws.name,
        "image": ws.image,
        "command": list(ws.command),
        "env": view.env,
        "gpu": {"type": ws.gpu_type, "count": ws.gpu_count},
        "ports": list(ws.ports),
        "health_path": ws.health_path,
        "replicas": replica_counts(directory, view, datetime.now(UTC), lost_after_s),
        "timeout_s": view.timeout_s,
        "retry_on_timeout": view.retry_on_timeout,
        "max_priority": view.max_priority,
        "concurrency": ws.concurrency,
        "created_at": view.created_at.isoformat(),
        "revision": view.revision,
        "scaling": {**view.scaling, "last": view.scaled},
        "rollout": view.rollout,
        "registry_auth": registryauth.summary(view, context.secret_box),
    }


def _get(context: Context, workspace_id: str) -> WorkspaceView:
    view = context.follower.directory.workspaces.get(workspace_id)
    if view is None:
        raise NotFound(f"no workspace {workspace_id!r}", field="workspace_id")
    return view


@router.post("", status_code=status.HTTP_201_CREATED, response_model=None,
             responses={201: {"model": CreatedWorkspace}})  # fmt: skip
async def create_workspace(body: WorkspaceCreate, context: Context, _: AdminAuth) -> dict[str, Any]:
    """Register a workspace. Names are unique (409 when taken). `registry_auth` is sealed
    with `NGPU_SECRETS_KEY` before it is published (503 naming it when unset)."""
    sealed = registryauth.seal(context.secret_box, body.registry_auth) if body.registry_auth else ""
    async with context.registration_lock:
        if body.name in context.follower.directory.workspace_names:
            raise Conflict(f"a workspace named {body.name!r} exists", field="name")
        event = WorkspaceRegistered(
            workspace_id=new_workspace_id(), name=body.name, userkey=new_userkey(),
            image=body.image, command=body.argv(), gpu_type=body.gpu.type,
            gpu_count=body.gpu.count, ports=tuple(body.ports), health_path=body.health_path,
            env=dict(body.env), replicas_min=body.replicas.min, replicas_max=body.replicas.max,
            timeout_s=body.timeout_s, concurrency=body.concurrency,
            retry_on_timeout=body.retry_on_timeout, max_priority=body.max_priority,
            webhook_salt=new_salt(), scaling_metric=body.scaling.metric,
            scaling_target=body.scaling.resolved_target(body.concurrency),
            scale_up_after_s=body.scaling.scale_up_after_s,
            scale_down_after_s=body.scaling.scale_down_after_s,
            registry_auth=sealed,
        )  # fmt: skip
        await context.publish([event])
    # The webhook secret is answered here once (and at each rotation): it is never stored.
    secret = workspace_secret(context.webhook_key, event.workspace_id, event.webhook_salt)
    body_out = workspace_body(_get(context, event.workspace_id), context)
    return {**body_out, "webhook_secret": secret}


@router.post("/{workspace_id}/webhook-secret", response_model=None,
             responses={200: {"model": WebhookSecret}})  # fmt: skip
async def rotate_webhook_secret(
    workspace_id: str, context: Context, _: AdminAuth
) -> dict[str, Any]:
    """A new webhook signing secret for the workspace, answered once; the old one signs
    nothing from then on (`WebhookSecretRotated`)."""
    _get(context, workspace_id)
    event = WebhookSecretRotated(workspace_id=workspace_id, salt=new_salt())
    await context.publish([event])
    return {
        "workspace_id": workspace_id,
        "webhook_secret": workspace_secret(context.webhook_key, workspace_id, event.salt),
    }


@router.get("/{workspace_id}", response_model=None, responses={200: {"model": Workspace}})
async def read_workspace(workspace_id: str, context: Context, _: AdminAuth) -> dict[str, Any]:
    return workspace_body(_get(context, workspace_id), context)


@router.patch("/{workspace_id}", response_model=None, responses={200: {"model": Workspace}})
async def update_workspace(
    workspace_id: str, body: WorkspaceUpdate, context: Context, _: AdminAuth
) -> dict[str, Any]:
    """Change settings (replicas, timeout_s, retry_on_timeout, max_priority, scaling) or
    what the replicas run (image, command, env, gpu, ports, health_path, concurrency);
    fields left out keep their values. A change of what they run is a new `revision`,
    rolled out one replica at a time (a new one ready before an old one stops; old ones
    finish their tasks first); the Workspace ID never changes. A revision whose replicas
    keep failing to start is rolled back (`rollout` says so)."""
    view = _get(context, workspace_id)
    ws = view.registered
    template = {
        "image": body.image or ws.image,
        "command": body.argv() or ws.command,
        "gpu_type": body.gpu.type if body.gpu else ws.gpu_type,
        "gpu_count": body.gpu.count if body.gpu else ws.gpu_count,
        "ports": tuple(body.ports) if body.ports else ws.ports,
        "health_path": body.health_path or ws.health_path,
        "concurrency": body.concurrency or ws.concurrency,
    }
    env = dict(body.env) if body.env is not None else view.env
    current = {**{name: getattr(ws, name) for name in template}, "command": tuple(ws.command)}
    changed = template != current or env != view.env
    scaling = body.scaling
    event = WorkspaceUpdated(
        workspace_id=workspace_id,
        env=env,
        replicas_min=body.replicas.min if body.replicas else view.replicas_min,
        replicas_max=body.replicas.max if body.replicas else view.replicas_max,
        timeout_s=body.timeout_s if body.timeout_s is not None else view.timeout_s,
        retry_on_timeout=(
            body.retry_on_timeout if body.retry_on_timeout is not None else view.retry_on_timeout
        ),
        max_priority=body.max_priority if body.max_priority is not None else view.max_priority,
        scaling_metric=scaling.metric if scaling else view.scaling["metric"],
        scaling_target=(
            scaling.resolved_target(int(template["concurrency"]))  # type: ignore[call-overload]
            if scaling
            else view.scaling["target"]
        ),
        scale_up_after_s=scaling.scale_up_after_s if scaling else view.scaling["scale_up_after_s"],
        scale_down_after_s=(
            scaling.scale_down_after_s if scaling else view.scaling["scale_down_after_s"]
        ),
        revision=view.latest_revision + 1 if changed else 0,
        **(template if changed else {}),  # type: ignore[arg-type]
    )
    await context.publish([event])
    return workspace_body(_get(context, workspace_id), context)


@router.delete("/{workspace_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_workspace(workspace_id: str, context: Context, _: AdminAuth) -> Response:
    """Delete a workspace: its ID stops working and its replicas are stopped."""
    _get(context, workspace_id)
    await context.publish([WorkspaceDeleted(workspace_id=workspace_id)])
    return Response(status_code=status.HTTP_204_NO_CONTENT)
