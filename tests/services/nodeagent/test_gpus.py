"""GPU discovery: the pure parsers, each source on this machine, and the fallback order."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from events import GpuInfo
from services.nodeagent import (
    GpuDiscoveryError,
    GpuSourceUnavailable,
    discover_gpus,
    from_nvidia_smi,
    from_nvml,
    parse_configured,
    parse_nvidia_smi,
)


def _nvml_works() -> bool:
    try:
        from_nvml()
    except GpuSourceUnavailable:
        return False
    return True


HAS_GPU = _nvml_works() or shutil.which("nvidia-smi") is not None


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("", ()),
        ("\n  \n", ()),
        ("NVIDIA GeForce RTX 4090, 24564\n", (GpuInfo("NVIDIA GeForce RTX 4090", 24564),)),
        (
            "NVIDIA A100-SXM4-80GB, 81920\nNVIDIA A100-SXM4-80GB, 81920\n",
            (GpuInfo("NVIDIA A100-SXM4-80GB", 81920),) * 2,
        ),
        ("  Tesla T4 ,  15360  \r\n", (GpuInfo("Tesla T4", 15360),)),
        ("NVIDIA H100 PCIe, [N/A]\n", (GpuInfo("NVIDIA H100 PCIe", 0),)),
        ("Odd, Name, With Commas, 1024", (GpuInfo("Odd, Name, With Commas", 1024),)),
    ],
)
def test_parse_nvidia_smi(output: str, expected: tuple[GpuInfo, ...]) -> None:
    assert parse_nvidia_smi(output) == expected


@pytest.mark.parametrize(
    "output",
    ["NVIDIA GeForce RTX 4090", ", 24564", "RTX 4090, 24 GiB", "No devices were found, x"],
)
def test_parse_nvidia_smi_refuses_other_output(output: str) -> None:
    with pytest.raises(GpuDiscoveryError, match="nvidia-smi"):
        parse_nvidia_smi(output)


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([], ()),
        (["RTX4090:2"], (GpuInfo("RTX4090"), GpuInfo("RTX4090"))),
        (["A100"], (GpuInfo("A100"),)),
        (["A100:1:81920"], (GpuInfo("A100", 81920),)),
        (["A100:1:80GB"], (GpuInfo("A100", 81920),)),
        (["A100:1:80g"], (GpuInfo("A100", 81920),)),
        (["T4:1:15360MB"], (GpuInfo("T4", 15360),)),
        ([" RTX4090 : 1 ", "A100:1"], (GpuInfo("RTX4090"), GpuInfo("A100"))),
        (["NVIDIA GeForce RTX 4090:1"], (GpuInfo("NVIDIA GeForce RTX 4090"),)),
    ],
)
def test_parse_configured(entries: list[str], expected: tuple[GpuInfo, ...]) -> None:
    assert parse_configured(entries) == expected


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("", "TYPE"),
        (":2", "TYPE"),
        ("A100:1:2:3", "TYPE"),
        ("A100:0", "count"),
        ("A100:two", "count"),
        ("A100:-1", "count"),
        ("A100:1:lots", "memory"),
        ("A100:1:80TB", "memory"),
    ],
)
def test_parse_configured_names_the_bad_entry(entry: str, message: str) -> None:
    with pytest.raises(GpuDiscoveryError, match=message) as raised:
        parse_configured(["RTX4090:1", entry])
    assert repr(entry) in str(raised.value)


def test_nvml_without_its_module_is_unavailable() -> None:
    with pytest.raises(GpuSourceUnavailable, match="NVML: no_such_nvml_module is not installed"):
        from_nvml("no_such_nvml_module")


@pytest.mark.skipif(HAS_GPU, reason="this host has an NVIDIA driver")
def test_nvml_without_a_driver_is_unavailable() -> None:
    pytest.importorskip("pynvml")
    with pytest.raises(GpuSourceUnavailable, match="NVML: cannot initialise"):
        from_nvml()


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "nvidia-smi"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_nvidia_smi_output_is_read(tmp_path: Path) -> None:
    binary = _script(
        tmp_path,
        'test "$1 $2" = "--query-gpu=name,memory.total --format=csv,noheader,nounits" || exit 9\n'
        'printf "NVIDIA GeForce RTX 4090, 24564\\nNVIDIA GeForce RTX 4090, 24564\\n"',
    )
    assert from_nvidia_smi(binary) == (GpuInfo("NVIDIA GeForce RTX 4090", 24564),) * 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("echo 'NVIDIA-SMI has failed: no driver' >&2; exit 9", "exit code 9: NVIDIA-SMI has"),
        ("echo 'No devices were found'", "nvidia-smi: nvidia-smi line"),
        ("exit 0", "no GPU listed"),
    ],
)
def test_nvidia_smi_failures_are_unavailable(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(GpuSourceUnavailable, match=message):
        from_nvidia_smi(_script(tmp_path, body))


def test_a_missing_nvidia_smi_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(GpuSourceUnavailable, match="cannot run"):
        from_nvidia_smi(str(tmp_path / "nvidia-smi"))


def _unavailable(name: str) -> tuple[GpuInfo, ...]:
    raise GpuSourceUnavailable(f"{name}: absent")


@pytest.mark.parametrize(
    ("nvml_ok", "smi_ok", "configured", "source", "types"),
    [
        (True, True, ["A100:1"], "nvml", ["nvml-gpu"]),
        (False, True, ["A100:1"], "nvidia-smi", ["smi-gpu"]),
        (False, False, ["A100:2"], "configured", ["A100", "A100"]),
        (False, False, [], "none", []),
    ],
)
def test_discovery_takes_the_first_source_that_answers(
    nvml_ok: bool, smi_ok: bool, configured: list[str], source: str, types: list[str]
) -> None:
    found = discover_gpus(
        configured,
        nvml=lambda: (GpuInfo("nvml-gpu"),) if nvml_ok else _unavailable("NVML"),
        nvidia_smi=lambda: (GpuInfo("smi-gpu"),) if smi_ok else _unavailable("nvidia-smi"),
    )
    assert found.source == source
    assert [g.type for g in found.gpus] == types
    expected_skips = (not nvml_ok) + (not nvml_ok and not smi_ok)
    assert len(found.skipped) == expected_skips + (source == "none")


def test_a_malformed_configured_list_is_an_error_even_when_nvml_answers() -> None:
    with pytest.raises(GpuDiscoveryError):
        discover_gpus(["A100:many"], nvml=lambda: (GpuInfo("nvml-gpu"),))


@pytest.mark.skipif(HAS_GPU, reason="this host has an NVIDIA driver")
def test_on_this_machine_discovery_falls_back_to_the_configured_list() -> None:
    found = discover_gpus(["RTX4090:2"])
    assert found.source == "configured"
    assert found.gpus == (GpuInfo("RTX4090"), GpuInfo("RTX4090"))
    assert [reason.split(":")[0] for reason in found.skipped] == ["NVML", "nvidia-smi"]
