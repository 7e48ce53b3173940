"""A checkpoint: the state of a fold and the log positions it covers, as one value.

Wire form: a JSON header line (`name`, `version`, `positions`, `written_at`), then the
state pickled and zlib-compressed. The state is read back only when the header's
`version` equals the reader's: the version carries a fingerprint of the field names of
every class the state is made of, so a checkpoint written by code whose state looks
different is discarded (the fold replays the log instead), never misread.

Unpickling admits only the classes of this project's state and plain containers
(`RestrictedUnpickler`): whoever can write where checkpoints are kept (the bus) must not
thereby run code in the reader.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import pickle
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

import orjson

from events import utc_now

Positions = Mapping[tuple[str, int], int]
"""The next offset to read of each (topic, partition) the state has folded."""

FORMAT = 1
"""The wire form's own version: bump it when the header or the encoding changes."""

_ALLOWED_MODULE_PREFIXES = ("events.", "services.scheduler.", "services.ingress.directory")
_ALLOWED_GLOBALS = {
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "dict"),
    ("builtins", "list"), ("builtins", "tuple"), ("builtins", "object"),
    ("collections", "OrderedDict"), ("collections", "Counter"),
    ("datetime", "datetime"), ("datetime", "timezone"), ("datetime", "timedelta"),
    ("copyreg", "_reconstructor"), ("copyreg", "__newobj__"),
    ("pydantic_core._pydantic_core", "TzInfo"),  # the tzinfo of times the codec decodes
    (__name__, "_mapping_proxy"),
}  # fmt: skip


class CheckpointUnreadable(Exception):
    """The bytes are not a checkpoint this code can read (damaged, or a class outside the
    allowed state); the caller replays instead."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """`state` after folding every record below `positions` (partitions not named were
    not read at all), written by code of `version`."""

    name: str
    version: str
    positions: Positions
    state: Any
    written_at: datetime = dataclasses.field(default_factory=utc_now)


def fingerprint(name: str, classes: Iterable[type]) -> str:
    """The version of a fold's checkpoints: its name, `FORMAT`, and a digest of the
    field names of `classes` (dataclass fields, else `__slots__`), so adding, removing or
    renaming a field of any of them makes older checkpoints unreadable, never misread."""
    digest = hashlib.sha256()
    for cls in sorted(classes, key=lambda c: f"{c.__module__}.{c.__qualname__}"):
        if dataclasses.is_dataclass(cls):
            names = [f.name for f in dataclasses.fields(cls)]
        else:
            names = list(getattr(cls, "__slots__", ()))
        digest.update(f"{cls.__module__}.{cls.__qualname__}:{','.join(names)};".encode())
    return f"{name}/{FORMAT}/{digest.hexdigest()[:16]}"


def _mapping_proxy(items: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(items)


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, MappingProxyType):
            return _mapping_proxy, (dict(obj),)
        return NotImplemented


class RestrictedUnpickler(pickle.Unpickler):
    """Loads only this project's state classes, enums and plain containers."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS or module.startswith(_ALLOWED_MODULE_PREFIXES):
            return super().find_class(module, name)
        raise CheckpointUnreadable(f"a checkpoint may not load {module}.{name}")


def encode(checkpoint: Checkpoint) -> bytes:
    """The wire form of `checkpoint` (pickling must happen while the state is not being
    changed: call it between folds)."""
    header = {
        "name": checkpoint.name,
        "version": checkpoint.version,
        "positions": sorted([t, p, o] for (t, p), o in checkpoint.positions.items()),
        "written_at": checkpoint.written_at.isoformat(),
    }
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(checkpoint.state)
    return orjson.dumps(header) + b"\n" + zlib.compress(buffer.getvalue(), 1)


def decode(raw: bytes, version: str) -> Checkpoint | None:
    """The checkpoint in `raw`, or None when it was written by code of another version.
    Raises `CheckpointUnreadable` for bytes that are not a checkpoint."""
    head, sep, body = raw.partition(b"\n")
    try:
        header = orjson.loads(head)
        if not sep or not isinstance(header, dict):
            raise ValueError("no header line")
        if header.get("version") != version:
            return None
        positions = {(str(t), int(p)): int(o) for t, p, o in header["positions"]}
        written_at = datetime.fromisoformat(header["written_at"])
        state = RestrictedUnpickler(io.BytesIO(zlib.decompress(body))).load()
    except CheckpointUnreadable:
        raise
    except Exception as exc:  # any damage: orjson, zlib, pickle and shape errors alike
        raise CheckpointUnreadable(f"not a readable checkpoint: {exc!r}") from exc
    return Checkpoint(str(header["name"]), version, positions, state, written_at)


def header_of(raw: bytes) -> dict[str, Any]:
    """The header of a checkpoint's wire form (for tools and logs); {} if there is none."""
    try:
        header = orjson.loads(raw.partition(b"\n")[0])
    except orjson.JSONDecodeError:
        return {}
    return header if isinstance(header, dict) else {}
