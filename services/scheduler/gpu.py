"""GPU type names: one normalization for node inventories, workspaces and tasks.

Rule (applied until the result stops changing, so it is idempotent):
1. upper-case; `_`, `-`, `/` and runs of whitespace separate tokens;
2. drop vendor and family words: NVIDIA, GEFORCE, TESLA, QUADRO, AMD, RADEON, INSTINCT,
   INTEL, GPU, GENERATION;
3. drop memory sizes (`80GB`, `80 GB`, `16G`, `24576MiB`) and memory kinds (`HBM3`,
   `HBM2E`, `GDDR6X`), and form factors (`SXM`, `SXM4`, `PCIE`, `NVL`);
4. join what is left with no separator.

So "RTX 4090", "rtx4090" and "NVIDIA GeForce RTX 4090" are "RTX4090"; "NVIDIA
A100-SXM4-80GB" and "NVIDIA A100 80GB PCIe" are "A100"; "NVIDIA RTX A6000" is
"RTXA6000"; "NVIDIA GeForce RTX 3090 Ti" is "RTX3090TI"; "AMD Instinct MI300X" is
"MI300X". Memory size and form factor are not part of the type: a task asking for an
A100 runs on either memory size (`GpuInfo.memory_mb` carries the size).
"""

from __future__ import annotations

import re
from functools import lru_cache

_SEPARATORS = re.compile(r"[\s_\-/]+")
_MEMORY = re.compile(r"\b\d+(?:\.\d+)?(?:\s*(?:GB|GIB|MB|MIB)|G)\b")
_DROPPED_WORDS = frozenset(
    {
        "NVIDIA",
        "GEFORCE",
        "TESLA",
        "QUADRO",
        "AMD",
        "RADEON",
        "INSTINCT",
        "INTEL",
        "GPU",
        "GENERATION",
        "PCIE",
        "NVL",
    }
)
_DROPPED_TOKEN = re.compile(r"(?:SXM\d*|HBM\d*E?|GDDR\d*X?)")


@lru_cache(maxsize=4096)
def normalize_gpu_type(name: str) -> str:
    """The canonical GPU type for `name` (see the module docstring). Pure and idempotent:
    `normalize_gpu_type(normalize_gpu_type(x)) == normalize_gpu_type(x)`. Empty in, empty
    out."""
    current = name
    while True:
        step = _normalize_once(current)
        if step == current:
            return step
        current = step


def _normalize_once(name: str) -> str:
    upper = _MEMORY.sub(" ", _SEPARATORS.sub(" ", name.upper()))
    kept = [
        token
        for token in upper.split()
        if token not in _DROPPED_WORDS and not _DROPPED_TOKEN.fullmatch(token)
    ]
    return "".join(kept)
