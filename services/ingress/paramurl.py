"""Validation of the container path a caller asks for (`paramUrl`, or the sync path).

The caller never chooses a host: the value must be a relative path (with an optional
query), which the dispatcher appends to the node address the scheduler chose.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from services.ingress.errors import BadRequest

_ALLOWED = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@/%?]*$")
_MAX_LENGTH = 2048


def container_path(raw: str, *, field: str = "paramUrl") -> str:
    """The normalized path (`/sdapi/v1/img2img`, query kept) for a caller's value, or
    `BadRequest` naming `field` for anything that is not a plain relative path: a scheme
    or host (`http://…`, `//host`), `..` segments (also percent-encoded), backslashes,
    control characters, CR/LF, or characters outside RFC 3986."""
    if not raw or len(raw) > _MAX_LENGTH:
        raise BadRequest(f"must be a path of 1 to {_MAX_LENGTH} characters", field=field)
    if not _ALLOWED.match(raw):
        raise BadRequest("may hold only URL path characters (no spaces, quotes, backslashes, "
                         "control characters or line breaks)", field=field)  # fmt: skip
    path, _, query = raw.partition("?")
    decoded = unquote(path)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in decoded) or "\\" in decoded:
        raise BadRequest("must not encode control characters or backslashes", field=field)
    if raw.startswith("//") or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", path):
        raise BadRequest("must be a relative path, not a URL with a scheme or host", field=field)
    segments = decoded.split("/")
    if any(segment in ("..", ".") for segment in segments):
        raise BadRequest("must not contain '.' or '..' segments", field=field)
    normalized = "/" + path.lstrip("/")
    return f"{normalized}?{query}" if query else normalized
