"""`/v1/nodes`: node registration (join token, limited per client IP, host checked),
heartbeats, assignments and deployment reports (the node's own token), and the nodes
listing, drain and revoke (admin token)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from events import GpuInfo, NodeDrained, NodeHeartbeat, NodeRegistered, NodeRevoked
from services.callsign import deployment_secret
from services.certs import certificate_sha256
from services.hosts import HostPolicy, host_refusal
from services.ingress.answers import (
    MANAGEMENT_ERRORS,
    Assignments,
    HeartbeatAnswer,
    Node,
    NodeList,
    NodeRegistration,
)
from services.ingress.auth import AdminAuth, Context, JoinAuth, NodeAuth
from services.ingress.clientip import client_ip, rate_key
from services.ingress.directory import NodeView
from services.ingress.errors import BadRequest, NotFound, RateLimited, Unprocessable
from services.ingress.models import DeploymentStatus, Heartbeat, NodeRegister
from services.ingress.tokens import digest, new_node_id, new_token
from services.nodeagent.runtimes.base import Assignment, StatusReport
from services.scheduler.gpu import normalize_gpu_type

router = APIRouter(prefix="/v1/nodes", tags=["nodes"], responses=MANAGEMENT_ERRORS)


async def limit_registrations(request: Request, context: Context) -> None:
    """429 past `NGPU_NODE_REGISTER_RATE_PER_S` per client IP; checked before the join
    token, so a leaked or guessed one cannot register (or be tried) without limit."""
    peer = request.client.host if request.client else ""
    caller = client_ip(peer, request.headers.get("x-forwarded-for"), context.proxies)
    limiter = context.register_limiter
    if limiter is not None and not limiter.allow(rate_key(caller)):
        raise RateLimited("too many node registrations from this client; slow down")


RegisterLimit = Annotated[None, Depends(limit_registrations)]


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=None,
             responses={201: {"model": NodeRegistration}})  # fmt: skip
async def register_node(
    _limit: RegisterLimit, _: JoinAuth, body: NodeRegister, context: Context
) -> dict[str, Any]:
    """Join the cluster; answers the node id and the node's own token (shown once). The
    host must be one the dispatcher may call (`services.hosts`): 422 naming `host`. The
    proxies' certificate, when given, is recorded with its SHA-256 (the dispatcher's pin):
    422 naming `proxy_cert` when it is not one PEM certificate."""
    refusal = await host_refusal(body.host, context.hosts or HostPolicy())
    if refusal is not None:
        raise Unprocessable(f"the node's host is refused: {refusal}", field="host")
    token = new_token()
    event = NodeRegistered(
        node_id=new_node_id(),
        address=body.address,
        host=body.host,
        region=body.region,
        gpus=tuple(GpuInfo(normalize_gpu_type(g.type), g.memory_mb) for g in body.gpus),
        runtime=body.runtime,
        token_sha256=digest(token),
        proxy_cert=body.proxy_cert,
        proxy_cert_sha256=certificate_sha256(body.proxy_cert) if body.proxy_cert else "",
    )
    await context.publish([event])
    settings = context.settings
    return {
        "node_id": event.node_id,
        "token": token,
        "heartbeat_interval_s": settings.heartbeat_interval_s,
        "lost_after_s": settings.node_lost_after_s,
    }


@router.post("/{node_id}/heartbeat", response_model=None,
             responses={200: {"model": HeartbeatAnswer}})  # fmt: skip
async def heartbeat(
    node: NodeAuth, context: Context, body: Heartbeat | None = None
) -> dict[str, Any]:
    node_id = node.registered.node_id
    await context.publish([NodeHeartbeat(node_id, (body or Heartbeat()).in_flight)], visible=False)
    return {"assignments_etag": context.follower.directory.assignments_etag(node_id)}


@router.get("/{node_id}/assignments", response_model=None,
            responses={200: {"model": Assignments}})  # fmt: skip
async def assignments(
    node: NodeAuth,
    context: Context,
    etag: str = Query("", max_length=64, description="The etag of the set the node holds."),
    wait: float = Query(0, ge=0, description="Seconds to wait for a change of `etag`."),
) -> dict[str, Any]:
    """The deployments this node should run, as the node may see them: an opaque
    deployment id, what to run and the deployment's secret, never the workspace. With
    `etag` and `wait`, a long poll: the answer comes as soon as the set differs from
    `etag`, or after `wait` seconds."""
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
        "deployments": [
            Assignment.from_request(
                d,
                deployment_secret(context.node_call_key, d.deployment_id),
                registry_auth=_has_registry_auth(context, d.workspace_id),
            ).to_document()
            for d in directory.assignments(node_id)
        ],
    }


def _has_registry_auth(context: Context, workspace_id: str) -> bool:
    view = context.follower.directory.workspaces.get(workspace_id)
    return view is not None and bool(view.registry_auth)


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
        deployment_id, node.registered.node_id, body.state,
        reason=body.reason, host_ports=dict(body.host_ports),
    )  # fmt: skip
    await context.publish([report.to_event(deployment.spec.workspace_id)])
    return Response(status_code=204)


def node_body(node: NodeView, context: Context, now: datetime) -> dict[str, Any]:
    reg = node.registered
    return {
        "node_id": reg.node_id,
        "address": reg.address,
        "host": reg.host,
        "region": reg.region,
        "runtime": reg.runtime,
        "proxy_cert": reg.proxy_cert,
        "proxy_cert_sha256": reg.proxy_cert_sha256,
        "gpus": [asdict(g) for g in reg.gpus],
        "healthy": node.healthy(now, context.settings.node_lost_after_s),
        "draining": node.draining,
        "lost": node.lost,
        "revoked": node.revoked,
        # Counted from the task events this ingress followed; agents cannot see requests.
        "in_flight": context.tasks.view.in_flight(reg.node_id) if context.tasks else 0,
        "last_heartbeat": node.last_heartbeat.isoformat(),
        "deployments": [
            {
                "deployment_id": deployment_id,
                "workspace_id": d.spec.workspace_id,
                "revision": d.spec.revision or 1,
                "state": d.state,
                "ports": d.host_ports,
                "reason": d.reason,
            }
            for deployment_id, d in sorted(node.deployments.items())
        ],
    }


@router.get("", response_model=None, responses={200: {"model": NodeList}})
async def list_nodes(context: Context, _: AdminAuth) -> dict[str, Any]:
    now = datetime.now(UTC)
    nodes = context.follower.directory.nodes.values()
    return {
        "nodes": [
            node_body(n, context, now) for n in sorted(nodes, key=lambda n: n.registered.node_id)
        ]
    }


def _known_node(node_id: str, context: Context) -> NodeView:
    node = context.follower.directory.nodes.get(node_id)
    if node is None:
        raise NotFound(f"no node {node_id!r}", field="node_id")
    return node


@router.post("/{node_id}/drain", response_model=None, responses={200: {"model": Node}})
async def drain_node(node_id: str, context: Context, _: AdminAuth) -> dict[str, Any]:
    """The node takes no new tasks or replicas; what it runs finishes, then its replicas
    stop and are placed elsewhere (`NodeDrained`). Idempotent: answers the node."""
    node = _known_node(node_id, context)
    if not node.draining and not node.revoked:
        await context.publish([NodeDrained(node_id=node_id)])
    return node_body(_known_node(node_id, context), context, datetime.now(UTC))


@router.delete("/{node_id}", status_code=204)
async def revoke_node(node_id: str, context: Context, _: AdminAuth) -> Response:
    """Revoke the node (`NodeRevoked`): its token is refused from the answer on (by this
    ingress; others once they have followed the log), it is lost, its replicas are
    placed elsewhere. Idempotent."""
    node = _known_node(node_id, context)
    if not node.revoked:
        await context.publish([NodeRevoked(node_id=node_id, reason="revoked by the operator")])
    return Response(status_code=204)
