"""The BRC-20 asset gate: Bitcoin address validation, holdings providers (a JSON file,
the Hiro and UniSat indexers, none), a TTL cache, and the gate the ingress calls."""

from services.brc20.address import (
    MAINNET,
    NETWORKS,
    REGTEST,
    SIGNET,
    TESTNET,
    BtcNetwork,
    resolve_network,
    validate_btc_address,
)
from services.brc20.amounts import parse_balance
from services.brc20.cache import CachedProvider
from services.brc20.errors import (
    Brc20AssetMissing,
    Brc20ConfigError,
    Brc20Error,
    Brc20Unavailable,
    InvalidBtcAddress,
)
from services.brc20.factory import PROVIDER_KINDS, ProviderKind, provider_from_config
from services.brc20.file_holdings import FileHoldings
from services.brc20.gate import Brc20Check, Brc20Gate
from services.brc20.hiro import HiroIndexer
from services.brc20.provider import Brc20Provider, NoProvider
from services.brc20.unisat import UniSatIndexer

__all__ = [
    "MAINNET",
    "NETWORKS",
    "PROVIDER_KINDS",
    "REGTEST",
    "SIGNET",
    "TESTNET",
    "Brc20AssetMissing",
    "Brc20Check",
    "Brc20ConfigError",
    "Brc20Error",
    "Brc20Gate",
    "Brc20Provider",
    "Brc20Unavailable",
    "BtcNetwork",
    "CachedProvider",
    "FileHoldings",
    "HiroIndexer",
    "InvalidBtcAddress",
    "NoProvider",
    "ProviderKind",
    "UniSatIndexer",
    "parse_balance",
    "provider_from_config",
    "resolve_network",
    "validate_btc_address",
]
