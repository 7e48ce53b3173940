"""Bearer-token checks as FastAPI dependencies (`Annotated` aliases); constant-time.
They are `async def` although they do not await: FastAPI runs plain `def` dependencies
in a thread pool, a thread hop per dependency per request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.ingress.context import IngressContext
from services.ingress.directory import NodeView, WorkspaceView
from services.ingress.errors import Unauthorized
from services.ingress.tokens import digest, same_secret
from services.logs import bind, workspace_hash


def context_of(request: Request) -> IngressContext:
    """The `IngressContext` the app was created over."""
    context: IngressContext = request.app.state.context
    return context


async def get_context(request: Request) -> IngressContext:
    return context_of(request)


Context = Annotated[IngressContext, Depends(get_context)]


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; 401 when absent or malformed."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("expected header 'Authorization: Bearer <token>'", field="Authorization")
    return token.strip()


def _scheme(name: str, description: str) -> HTTPBearer:
    """A bearer scheme OpenAPI documents (so `/docs` can authorize with it). It answers None
    for an absent or malformed header, so the 401 stays ours (`token_of`)."""
    return HTTPBearer(scheme_name=name, description=description, auto_error=False)


ADMIN_SCHEME = _scheme("AdminToken", "`Authorization: Bearer <NGPU_ADMIN_TOKEN>`: the operator.")
JOIN_SCHEME = _scheme("JoinToken", "`Authorization: Bearer <NGPU_JOIN_TOKEN>`: node registration.")
NODE_SCHEME = _scheme(
    "NodeToken", "`Authorization: Bearer <node token>`: the token a node got when it "
    "registered, valid for that node's own routes only.",
)  # fmt: skip
Credentials = HTTPAuthorizationCredentials | None


def token_of(credentials: Credentials) -> str:
    """The bearer token a scheme read; 401 when there was none."""
    return bearer_token(f"Bearer {credentials.credentials}" if credentials else None)


async def require_admin(
    context: Context, credentials: Annotated[Credentials, Depends(ADMIN_SCHEME)]
) -> None:
    if not same_secret(token_of(credentials), context.admin_token):
        raise Unauthorized("the admin token is not valid", field="Authorization")


AdminAuth = Annotated[None, Depends(require_admin)]


async def require_join_token(
    context: Context, credentials: Annotated[Credentials, Depends(JOIN_SCHEME)]
) -> None:
    if not same_secret(token_of(credentials), context.join_token):
        raise Unauthorized("the node join token is not valid", field="Authorization")


JoinAuth = Annotated[None, Depends(require_join_token)]


async def authenticated_node(
    node_id: str, context: Context, credentials: Annotated[Credentials, Depends(NODE_SCHEME)]
) -> NodeView:
    """The node addressed by the path, when the bearer is that node's own token and the
    node was not revoked. An unknown node, a revoked one and a wrong token answer alike
    (401) so ids cannot be probed."""
    node = context.follower.directory.nodes.get(node_id)
    expected = node.registered.token_sha256 if node else digest("")
    if not same_secret(digest(token_of(credentials)), expected) or node is None or node.revoked:
        raise Unauthorized("the node token is not valid for this node", field="Authorization")
    return node


NodeAuth = Annotated[NodeView, Depends(authenticated_node)]


WORKSPACE_SECURITY_SCHEME = {
    "WorkspaceID": {"type": "http", "scheme": "bearer",
                    "description": "`Authorization: Bearer <Workspace ID>`"},
}  # fmt: skip
"""How `authenticated_workspace` is documented in OpenAPI (it resolves no `Header` or
`HTTPBearer` dependency, which would cost 15 to 40 µs per call)."""


async def authenticated_workspace(request: Request) -> WorkspaceView:
    """The workspace whose ID is the bearer token. Looked up by the token's digest, then
    compared in constant time, so response times say nothing about valid IDs. It reads
    the header and the context off the request itself: it runs on every NGPU API call,
    and each dependency FastAPI resolves costs about 15 µs."""
    token = bearer_token(request.headers.get("authorization"))
    directory = context_of(request).follower.directory
    workspace_id = directory.workspace_digests.get(digest(token), "")
    view = directory.workspaces.get(workspace_id)
    if view is None or not same_secret(token, workspace_id):
        raise Unauthorized("the workspace ID is not valid", field="Authorization")
    bind(workspace=workspace_hash(workspace_id))  # on this request's log lines
    return view


WorkspaceAuth = Annotated[WorkspaceView, Depends(authenticated_workspace)]
