"""Fixtures: a real fake indexer on 127.0.0.1, a holdings file, known addresses."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.services.brc20.fake_indexer import FakeIndexer, serve_fake_indexer

# Valid mainnet addresses (BIP-350 vectors and the contract's example), normalized.
TAPROOT = "bc1pp8vyhh2ma0ntzjwr26xxrn5r0w296yu68wdwle5rrhgtv3a2lgkqtyayus"
SEGWIT_V0 = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
P2PKH = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"
P2SH = "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"


@pytest.fixture
async def indexer() -> AsyncIterator[FakeIndexer]:
    async with serve_fake_indexer() as fake:
        yield fake


@pytest.fixture
def dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def write_holdings(path: Path, holdings: object) -> Path:
    path.write_text(json.dumps(holdings), encoding="utf-8")
    return path


@pytest.fixture
def holdings_file(tmp_path: Path) -> Path:
    return write_holdings(
        tmp_path / "holdings.json",
        {
            TAPROOT: {"ainn": 100, "ordi": "2.5", "sats": "0.9"},
            SEGWIT_V0: {"ORDI": "7"},
            P2PKH: {},
        },
    )
