import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.scheduler import normalize_gpu_type


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("RTX 4090", "RTX4090"),
        ("rtx4090", "RTX4090"),
        ("rtx_4090", "RTX4090"),
        ("NVIDIA GeForce RTX 4090", "RTX4090"),
        ("  NVIDIA  GeForce RTX 4090  ", "RTX4090"),
        ("RTX4090", "RTX4090"),
        ("NVIDIA GeForce RTX 4090 D", "RTX4090D"),
        ("NVIDIA GeForce RTX 3090 Ti", "RTX3090TI"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA A100-SXM4-40GB", "A100"),
        ("NVIDIA A100 80GB PCIe", "A100"),
        ("A100 40G", "A100"),
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H100 PCIe", "H100"),
        ("NVIDIA H100 NVL", "H100"),
        ("H100 80 GB", "H100"),
        ("Tesla V100-SXM2-16GB", "V100"),
        ("Tesla T4", "T4"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA RTX A6000", "RTXA6000"),
        ("NVIDIA RTX 6000 Ada Generation", "RTX6000ADA"),
        ("Quadro RTX 8000", "RTX8000"),
        ("AMD Instinct MI300X", "MI300X"),
        ("AMD Radeon RX 7900 XTX", "RX7900XTX"),
        ("", ""),
        ("NVIDIA", ""),
    ],
)
def test_normalize_gpu_type(raw: str, expected: str) -> None:
    assert normalize_gpu_type(raw) == expected


_WORDS = st.sampled_from(
    [
        "NVIDIA",
        "GeForce",
        "RTX",
        "4090",
        "A100",
        "SXM4",
        "80GB",
        "80",
        "GB",
        "PCIe",
        "Ti",
        "H100",
        "HBM3",
        "-",
        "_",
        " ",
        "sx",
        "m",
        "G",
        "4",
        "nvl",
        "Tesla",
        "a",
        "x",
    ]
)


@given(st.lists(_WORDS, max_size=8).map("".join) | st.text(max_size=20))
def test_normalization_is_idempotent(raw: str) -> None:
    once = normalize_gpu_type(raw)
    assert normalize_gpu_type(once) == once


@given(st.text(max_size=20))
def test_normalized_names_have_no_separators_or_lower_case(raw: str) -> None:
    name = normalize_gpu_type(raw)
    assert not any(c in name for c in " _-/\t\n")
    assert name == name.upper()
