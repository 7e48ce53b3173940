"""GPU discovery: NVML (through `pynvml`, package nvidia-ml-py), else `nvidia-smi`, else the
configured list. Names are returned raw (only stripped): normalizing them (`NVIDIA GeForce
RTX 4090` -> `RTX4090`) is the scheduler's `normalize_gpu_type`, so both sides agree."""

from __future__ import annotations

import importlib
import logging
import re
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

from events.node import GpuInfo
from services.nodeagent.errors import GpuDiscoveryError, GpuSourceUnavailable

log = logging.getLogger(__name__)

GpuSource = Literal["nvml", "nvidia-smi", "configured", "none"]

NVIDIA_SMI_ARGS = ("--query-gpu=name,memory.total", "--format=csv,noheader,nounits")
_MIB = 1024 * 1024
_MEMORY = re.compile(r"^(?P<value>\d+)\s*(?P<unit>gb|g|gib|mb|m|mib)?$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class GpuDiscovery:
    """What discovery found: the GPUs, the source that answered, and why each source
    before it did not (for the agent's start-up log)."""

    gpus: tuple[GpuInfo, ...]
    source: GpuSource
    skipped: tuple[str, ...] = ()


def parse_nvidia_smi(output: str) -> tuple[GpuInfo, ...]:
    """Parse `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits`:
    one `name, MiB` line per GPU; blank lines are ignored, an unreadable memory (`[N/A]`)
    is 0. Raises `GpuDiscoveryError` naming a line that is not `name, number`."""
    gpus: list[GpuInfo] = []
    for line in output.splitlines():
        if not line.strip():
            continue
        # rsplit: the memory is the last column; a name is never split by it.
        name, sep, memory = (part.strip() for part in line.rpartition(","))
        if not sep or not name:
            raise GpuDiscoveryError(f"nvidia-smi line is not 'name, memory': {line!r}")
        if memory.isdigit():
            memory_mb = int(memory)
        elif memory.startswith("["):  # [N/A], [Not Supported]
            memory_mb = 0
        else:
            raise GpuDiscoveryError(f"nvidia-smi memory is not a number of MiB: {line!r}")
        gpus.append(GpuInfo(type=name, memory_mb=memory_mb))
    return tuple(gpus)


def parse_configured(entries: Iterable[str]) -> tuple[GpuInfo, ...]:
    """Expand a configured list such as `["RTX4090:2", "A100:1:80GB"]` into one `GpuInfo`
    per GPU. Each entry is `TYPE[:COUNT[:MEMORY]]`; COUNT defaults to 1; MEMORY is MiB, or
    a number with `MB`/`GB` (`GB` = 1024 MiB). Raises `GpuDiscoveryError` naming the entry."""
    gpus: list[GpuInfo] = []
    for entry in entries:
        parts = [part.strip() for part in entry.split(":")]
        if not parts[0] or len(parts) > 3:
            raise GpuDiscoveryError(f"GPU entry is not TYPE[:COUNT[:MEMORY]]: {entry!r}")
        count = _parse_count(parts[1], entry) if len(parts) > 1 else 1
        memory_mb = _parse_memory(parts[2], entry) if len(parts) > 2 else 0
        gpus.extend(GpuInfo(type=parts[0], memory_mb=memory_mb) for _ in range(count))
    return tuple(gpus)


def _parse_count(text: str, entry: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise GpuDiscoveryError(f"GPU count must be a positive integer in {entry!r}")
    return int(text)


def _parse_memory(text: str, entry: str) -> int:
    match = _MEMORY.match(text)
    if match is None:
        raise GpuDiscoveryError(f"GPU memory must be MiB or a number with MB/GB in {entry!r}")
    value = int(match["value"])
    return value * 1024 if (match["unit"] or "").lower().startswith("g") else value


def from_nvml(module_name: str = "pynvml") -> tuple[GpuInfo, ...]:
    """The GPUs NVML reports. Raises `GpuSourceUnavailable` when the module is not
    installed, the driver library is absent, or NVML sees no GPU."""
    try:
        nvml = importlib.import_module(module_name)
    except ImportError as exc:
        raise GpuSourceUnavailable(f"NVML: {module_name} is not installed ({exc})") from exc
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError subclasses, generated at import time
        raise GpuSourceUnavailable(f"NVML: cannot initialise: {exc}") from exc
    try:
        gpus = _read_nvml(nvml)
    except Exception as exc:
        raise GpuSourceUnavailable(f"NVML: cannot read devices: {exc}") from exc
    finally:
        _shutdown_nvml(nvml)
    if not gpus:
        raise GpuSourceUnavailable("NVML: no GPU found")
    return gpus


def _read_nvml(nvml: ModuleType) -> tuple[GpuInfo, ...]:
    gpus = []
    for index in range(nvml.nvmlDeviceGetCount()):
        device = nvml.nvmlDeviceGetHandleByIndex(index)
        name = nvml.nvmlDeviceGetName(device)
        if isinstance(name, bytes):  # older bindings return bytes
            name = name.decode("utf-8", "replace")
        memory = nvml.nvmlDeviceGetMemoryInfo(device)
        gpus.append(GpuInfo(type=str(name).strip(), memory_mb=int(memory.total) // _MIB))
    return tuple(gpus)


def _shutdown_nvml(nvml: ModuleType) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:  # shutting down a half-initialised NVML must not hide the result
        log.debug("nvmlShutdown failed", exc_info=True)


def from_nvidia_smi(binary: str = "nvidia-smi", timeout_s: float = 10.0) -> tuple[GpuInfo, ...]:
    """The GPUs `nvidia-smi` lists. Raises `GpuSourceUnavailable` when the binary is
    absent, fails, times out, prints nothing, or prints something unreadable."""
    try:
        done = subprocess.run(
            [binary, *NVIDIA_SMI_ARGS],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise GpuSourceUnavailable(f"nvidia-smi: cannot run {binary!r}: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        raise GpuSourceUnavailable(f"nvidia-smi: exit code {done.returncode}: {detail[0]}")
    try:
        gpus = parse_nvidia_smi(done.stdout)
    except GpuDiscoveryError as exc:
        raise GpuSourceUnavailable(f"nvidia-smi: {exc}") from exc
    if not gpus:
        raise GpuSourceUnavailable("nvidia-smi: no GPU listed")
    return gpus


def discover_gpus(
    configured: Sequence[str] = (),
    *,
    nvml: Callable[[], tuple[GpuInfo, ...]] = from_nvml,
    nvidia_smi: Callable[[], tuple[GpuInfo, ...]] = from_nvidia_smi,
) -> GpuDiscovery:
    """Try NVML, then `nvidia-smi`, then the configured list; the first that yields GPUs
    wins. With no GPU anywhere the result is empty with source `none`. A malformed
    configured list raises `GpuDiscoveryError` even when it is not needed: it is a
    configuration error, found at start rather than on the day the driver breaks."""
    configured_gpus = parse_configured(configured)
    skipped: list[str] = []
    probes: tuple[tuple[GpuSource, Callable[[], tuple[GpuInfo, ...]]], ...] = (
        ("nvml", nvml),
        ("nvidia-smi", nvidia_smi),
    )
    for source, probe in probes:
        try:
            return GpuDiscovery(gpus=probe(), source=source, skipped=tuple(skipped))
        except GpuSourceUnavailable as exc:
            skipped.append(str(exc))
    if configured_gpus:
        return GpuDiscovery(gpus=configured_gpus, source="configured", skipped=tuple(skipped))
    return GpuDiscovery(gpus=(), source="none", skipped=(*skipped, "configured: empty list"))
