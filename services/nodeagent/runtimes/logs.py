"""Per-deployment log files: where they live, rotation, and reading their last lines."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_TAIL_CHUNK = 64 * 1024


def log_path(log_dir: Path, deployment_id: str) -> Path:
    """`<log_dir>/<deployment_id>.log`, any character outside `[A-Za-z0-9._-]` replaced
    by `_` so that an id can never name a path outside `log_dir`."""
    safe = _UNSAFE.sub("_", deployment_id).lstrip(".") or "_"
    return log_dir / f"{safe}.log"


def rotate_if_large(path: Path, max_bytes: int) -> None:
    """Move a log over `max_bytes` to `<name>.1` (replacing the previous one)."""
    try:
        if path.stat().st_size > max_bytes:
            os.replace(path, path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass


def append_marker(path: Path, text: str) -> None:
    """Append one `[ngpu <UTC time>] text` line: the agent's own notes between the
    deployment's output (starts, exits, restarts)."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    with path.open("a", encoding="utf-8") as f:
        f.write(f"[ngpu {stamp}] {text}\n")


def tail_lines(path: Path, count: int, window: int = _TAIL_CHUNK) -> tuple[str, ...]:
    """The last `count` lines of the file (decoded leniently), reading at most its last
    `window` bytes (64 KiB); empty if the file does not exist."""
    if count <= 0:
        return ()
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - window))
            data = f.read()
    except FileNotFoundError:
        return ()
    lines = data.decode("utf-8", "replace").splitlines()
    if size > window and lines:
        lines = lines[1:]  # the first line is likely cut
    return tuple(lines[-count:])
