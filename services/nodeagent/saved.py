"""What a node agent keeps in its work dir so that, restarted, it resumes as the same node
instead of registering a new one (whose predecessor's replicas would wait to be declared
lost before moving): its registration, and a lock that keeps two agents off one work dir.

The registration file holds the node's own token, so it is written owner-only (0600),
atomically, and only used again by the same control plane and the same identity."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from services.nodeagent.control import Registration
from services.nodeagent.errors import NodeAgentError

REGISTRATION_FILE = "registration.json"
LOCK_FILE = "agent.lock"


class WorkDirBusy(NodeAgentError):
    """Another agent runs with this work dir (two agents must not share one node)."""


@dataclass(frozen=True, slots=True)
class SavedRegistration:
    """A registration, and what it was made for: a different control plane or identity
    (host, address, GPUs, region, runtime) registers anew."""

    control_plane: str
    identity: dict[str, Any]
    registration: Registration

    def matches(self, control_plane: str, identity: dict[str, Any]) -> bool:
        return self.control_plane == control_plane and self.identity == identity


def load_registration(path: Path) -> SavedRegistration | None:
    """The saved registration, or None when there is none or it cannot be read (then the
    agent registers anew: an unreadable file costs a new node id, never a wrong one)."""
    try:
        data = json.loads(path.read_text())
        return SavedRegistration(
            str(data["control_plane"]), dict(data["identity"]),
            Registration(**data["registration"]),
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_registration(path: Path, saved: SavedRegistration) -> None:
    """Write `saved` to `path` atomically, readable by the owner only."""
    document = {
        "control_plane": saved.control_plane,
        "identity": saved.identity,
        "registration": asdict(saved.registration),
    }
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(json.dumps(document, indent=2))
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def forget_registration(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def lock_work_dir(work_dir: Path) -> IO[str]:
    """Hold `work_dir`'s lock for as long as the returned file stays open (the process's
    life); the file names the holder's pid. `WorkDirBusy` when another process holds it."""
    work_dir.mkdir(parents=True, exist_ok=True)
    handle = (work_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise WorkDirBusy(
            f"another node agent (pid {holder}) runs with the work dir {work_dir}"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def lock_holder(work_dir: Path) -> int | None:
    """The pid of the agent holding `work_dir`'s lock, or None when it is free."""
    path = work_dir / LOCK_FILE
    try:
        handle = path.open("r")
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else None
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return None
