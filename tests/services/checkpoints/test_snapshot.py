"""Checkpoints on the wire: round trips, versions that differ, and bytes that are not one."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from types import MappingProxyType

import pytest

from services.checkpoints.snapshot import (
    Checkpoint,
    CheckpointUnreadable,
    decode,
    encode,
    fingerprint,
)
from services.checkpoints.snapshot import decode as decode_checkpoint
from services.scheduler.records import WorkspaceSpec
from tests.services.scheduler.builders import Cluster, dispatched, failed, submitted


def _busy_cluster() -> Cluster:
    c = Cluster()
    c.node("n1", ["RTX4090", "RTX4090"])
    c.workspace("ws")
    c.replica("d1", "n1", "ws")
    first = dispatched("t1", "ws", "n1", "d1")
    c.fold(submitted("t1", "ws"), submitted("t2", "ws"), first, failed(first))
    return c


def test_a_cluster_state_comes_back_equal_to_a_fresh_fold() -> None:
    c = _busy_cluster()
    positions = {("ngpu.tasks", 0): 12, ("ngpu.nodes", 3): 4}
    raw = encode(Checkpoint("scheduler", "v1", positions, c.state))
    back = decode(raw, "v1")
    assert back is not None and back.positions == positions and back.name == "scheduler"
    rebuilt = c.rebuilt()
    for name in type(rebuilt).__slots__:
        if name != "queue":
            assert getattr(back.state, name) == getattr(rebuilt, name), name
    assert [t.task_id for t in back.state.queue] == [t.task_id for t in rebuilt.queue]
    assert isinstance(back.state.workspaces["ws"].env, MappingProxyType)


def test_a_checkpoint_of_another_version_is_not_read() -> None:
    raw = encode(Checkpoint("scheduler", "v1", {}, {"x": 1}))
    assert decode(raw, "v2") is None


@pytest.mark.parametrize("raw", [b"", b"garbage", b'{"version": "v1"}\nnot zlib', b"\n\n"])
def test_damaged_bytes_are_unreadable(raw: bytes) -> None:
    with pytest.raises(CheckpointUnreadable):
        decode(raw, "v1")


class Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, ("echo pwned",)


def test_a_checkpoint_cannot_make_the_reader_load_other_code() -> None:
    import zlib

    import orjson

    header = {
        "name": "x",
        "version": "v1",
        "positions": [],
        "written_at": "2026-12-01T00:00:00+00:00",
    }
    raw = orjson.dumps(header) + b"\n" + zlib.compress(pickle.dumps(Exploit()))
    with pytest.raises(CheckpointUnreadable, match="may not load"):
        decode(raw, "v1")


@dataclass
class _Before:
    a: int


@dataclass
class _After:
    a: int
    b: int = 0


def test_the_fingerprint_changes_with_the_fields_of_the_state() -> None:
    _After.__qualname__ = _Before.__qualname__
    assert fingerprint("s", [_Before]) != fingerprint("s", [_After])
    assert fingerprint("s", [WorkspaceSpec]) == fingerprint("s", [WorkspaceSpec])
    assert fingerprint("s", [WorkspaceSpec]) != fingerprint("t", [WorkspaceSpec])


def test_times_decoded_by_the_codec_survive_a_checkpoint() -> None:
    from events import Envelope, NodeRegistered, decode
    from events import encode as encode_event
    from events.node import GpuInfo
    from services.ingress.directory import Directory

    registered = NodeRegistered(node_id="n", address="0x" + "1" * 40, host="h", region="",
                                gpus=(GpuInfo(type="A10"),), runtime="process",
                                token_sha256="0" * 64)  # fmt: skip
    directory = Directory()
    directory.apply(decode(encode_event(Envelope(registered))))  # times with the codec's tzinfo
    back = decode_checkpoint(encode(Checkpoint("directory", "v1", {}, directory)), "v1")
    assert back is not None
    assert back.state.nodes["n"].last_heartbeat == directory.nodes["n"].last_heartbeat
