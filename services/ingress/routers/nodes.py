"""`/v1/nodes`: node registration (join token), heartbeats, assignments and deployment
reports (the node's own token), and the nodes listing (admin token)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Response, status

from events import GpuInfo, NodeHeartbeat, NodeRegistered
from services.ingress.auth import AdminAuth, Context, JoinAuth, NodeAuth
from services.ingress.directory import NodeView
from services.ingress.errors import BadRequest, NotFound
from services.ingress.models import DeploymentStatus, Heartbeat, NodeRegister
from services.ingress.tokens import digest, new_node_id, new_token
from services.nodeagent.runtimes.base import StatusReport
from services.scheduler.gpu import normalize_gpu_type

router = APIRouter(prefix="/v1/nodes", tags=["nodes"])


@router.post("/register", status_code=status.HTTP_201_CREATED)
async def register_node(body: NodeRegister, context: Context, _: JoinAuth) -> dict[str, Any]:
    """Join the cluster; answers the node id and the node's own token (shown once)."""
    token = new_token()
    event = NodeRegistered(
        node_id=new_node_id(),
        address=body.address,
        host=body.host,
        region=body.region,
        gpus=tuple(GpuInfo(normalize_gpu_type(g.type), g.memory_mb) for g in body.gpus),
        runtime=body.runtime,
        token_sha256=digest(token),
    )
    await context.publish([event])
    settings = context.settings
    return {
        "node_id": event.node_id,
        "token": token,
        "heartbeat_interval_s": settings.heartbeat_interval_s,
        "lost_after_s": settings.node_lost_after_s,
    }


@router.post("/{node_id}/heartbeat")
async def heartbeat(
    node: NodeAuth, context: Context, body: Heartbeat | None = None
) -> dict[str, Any]:
    node_id = node.registered.node_id
    await context.publish([NodeHeartbeat(node_id, (body or Heartbeat()).in_flight)], visible=False)
    return {"assignments_etag": context.follower.directory.assignments_etag(node_id)}


@router.get("/{node_id}/assignments")
async def assignments(
    node: NodeAuth,
    context: Context,
    etag: str = Query("", max_length=64, description="The etag of the set the node holds."),
    wait: float = Query(0, ge=0, description="Seconds to wait for a change of `etag`."),
) -> dict[str, Any]:
    """The deployments this node should run. With `etag` and `wait`, a long poll: the
    answer comes as soon as the set differs from `etag`, or after `wait` seconds."""
    node_id, directory = node.registered.node_id, context.follower.directory
    loop_deadline = min(wait, context.settings.assignment_wait_max_s)
    started = datetime.now(UTC)
    while etag and directory.assignments_etag(node_id) == etag:
        remaining = loop_deadline - (datetime.now(UTC) - started).total_seconds()
        if remaining <= 0:
            break
        await context.follower.wait_for_change(remaining)
    return {
        "etag": directory.assignments_etag(node_id),
        "deployments": [asdict(d) for d in directory.assignments(node_id)],
    }


@router.post("/{node_id}/deployments/{deployment_id}/status", status_code=204)
async def report_deployment(
    deployment_id: str, body: DeploymentStatus, node: NodeAuth, context: Context
) -> Response:
    """A node agent's report: starting, ready (with host ports), failed, stopped."""
    deployment = node.deployments.get(deployment_id)
    if deployment is None:
        raise NotFound(f"no deployment {deployment_id!r} on this node", field="deployment_id")
    declared = {str(p) for p in deployment.spec.ports}
    if body.state == "ready" and set(body.host_ports) != declared:
        raise BadRequest(
            f"host_ports must map exactly the declared ports {sorted(declared)}",
            field="host_ports",
        )
    report = StatusReport(
        deployment_id, node.registered.node_id, deployment.spec.workspace_id, body.state,
        reason=body.reason, host_ports=dict(body.host_ports),
    )  # fmt: skip
    await context.publish([report.to_event()])
    return Response(status_code=204)


def node_body(node: NodeView, context: Context, now: datetime) -> dict[str, Any]:
    reg = node.registered
    return {
        "node_id": reg.node_id,
        "address": reg.address,
        "host": reg.host,
        "region": reg.region,
        "runtime": reg.runtime,
        "gpus": [asdict(g) for g in reg.gpus],
        "healthy": node.healthy(now, context.settings.node_lost_after_s),
        # Counted from the task events this ingress followed; agents cannot see requests.
        "in_flight": context.tasks.view.in_flight(reg.node_id) if context.tasks else 0,
        "last_heartbeat": node.last_heartbeat.isoformat(),
        "deployments": [
            {
                "deployment_id": deployment_id,
                "workspace_id": d.spec.workspace_id,
                "state": d.state,
                "ports": d.host_ports,
                "reason": d.reason,
            }
            for deployment_id, d in sorted(node.deployments.items())
        ],
    }


@router.get("")
async def list_nodes(context: Context, _: AdminAuth) -> dict[str, Any]:
    now = datetime.now(UTC)
    nodes = context.follower.directory.nodes.values()
    return {
        "nodes": [
            node_body(n, context, now) for n in sorted(nodes, key=lambda n: n.registered.node_id)
        ]
    }
