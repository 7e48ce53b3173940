"""Address validation against the BIP-173/BIP-350 vectors and base58check examples."""

from __future__ import annotations

import re

import pytest

from services.brc20 import (
    MAINNET,
    Brc20ConfigError,
    BtcNetwork,
    InvalidBtcAddress,
    resolve_network,
    validate_btc_address,
)

VALID_MAINNET = [
    # (input, normalized)
    ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"),
    (
        "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
        "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
    ),
    ("BC1SW50QGDZ25J", "bc1sw50qgdz25j"),  # witness v16, 2-byte program
    ("bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs", "bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs"),
    (
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
    ),
    (  # the contract's example (taproot)
        "bc1pp8vyhh2ma0ntzjwr26xxrn5r0w296yu68wdwle5rrhgtv3a2lgkqtyayus",
        "bc1pp8vyhh2ma0ntzjwr26xxrn5r0w296yu68wdwle5rrhgtv3a2lgkqtyayus",
    ),
    ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"),  # P2PKH
    ("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"),  # P2SH
]


@pytest.mark.parametrize(("address", "normalized"), VALID_MAINNET)
def test_valid_mainnet_addresses_are_normalized(address: str, normalized: str) -> None:
    assert validate_btc_address(address) == normalized
    assert validate_btc_address(address, MAINNET) == normalized


INVALID_MAINNET = [
    # (address, words the reason must contain)
    ("tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut", "neither"),  # bad hrp
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd", "v1 address with a bech32 "),
    (
        "BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL",
        "v16 address with a bech32 ",
    ),
    ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh", "v0 address with a bech32m checksum"),
    ("bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4", "outside the bech32"),
    ("BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R", "witness version 17"),
    ("bc1pw5dgrnzv", "invalid witness v1 program"),  # 1-byte program
    (
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",
        "invalid witness v1 program",  # 41-byte program
    ),
    ("BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P", "invalid witness v0 program"),  # 16 bytes, v0
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf", "program"),  # padding
    ("bc1gmk9yu", "empty data part"),
    ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", "bad bech32/bech32m checksum"),  # 1 char off
    ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kV8F3T4", "mixes upper and lower case"),
    ("bc1qw", "too short"),
    ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7", "testnet/signet address"),
    ("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", "regtest address"),
    ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb", "invalid checksum"),  # base58, last char changed
    ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfN0", "invalid character"),  # '0' is not base58
    ("mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn", "not mainnet"),  # testnet P2PKH
    ("2MzQwSSnBHWHqSAqtTVQ6v47XtaisrJa1Vc", "not mainnet"),  # testnet P2SH
    ("1A1zP1eP5QGef", "26 to 35 characters"),
    (" 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "whitespace"),
    ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa\n", "whitespace"),
    ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4" * 3, "at most 90"),
    ("", "empty"),
    ("0x52908400098527886E0F7030069857D2E4169EE7", "neither"),  # an Ethereum address
]


@pytest.mark.parametrize(("address", "reason"), INVALID_MAINNET)
def test_invalid_mainnet_addresses_say_why(address: str, reason: str) -> None:
    with pytest.raises(InvalidBtcAddress, match="(?i)" + re.escape(reason)):
        validate_btc_address(address)


@pytest.mark.parametrize(
    ("network", "address", "normalized"),
    [
        (
            "testnet",
            "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
            "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
        ),
        (
            "signet",
            "tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c",
            "tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c",
        ),
        ("testnet", "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn", "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"),
        ("testnet", "2MzQwSSnBHWHqSAqtTVQ6v47XtaisrJa1Vc", "2MzQwSSnBHWHqSAqtTVQ6v47XtaisrJa1Vc"),
        (
            "regtest",
            "BCRT1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KYGT080",
            "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
        ),
        ("regtest", "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn", "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"),
    ],
)
def test_other_networks_accept_their_addresses(network: str, address: str, normalized: str) -> None:
    assert validate_btc_address(address, network) == normalized


@pytest.mark.parametrize(
    ("network", "address", "reason"),
    [
        ("testnet", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "mainnet address"),
        ("testnet", "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "mainnet address, not testnet"),
        ("regtest", "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7", "testnet"),
        # BIP-350: a bech32 (not bech32m) checksum on v1 is invalid on testnet too
        ("testnet", "tb1z0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqglt7rf", "bech32 "),
        ("testnet", "tb1q0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq24jc47", "bech32m"),
        ("testnet", "tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vpggkg4j", "program"),
    ],
)
def test_other_networks_refuse_foreign_addresses(network: str, address: str, reason: str) -> None:
    with pytest.raises(InvalidBtcAddress, match=re.escape(reason)):
        validate_btc_address(address, network)


def test_a_custom_network_value_is_accepted() -> None:
    custom = BtcNetwork("custom", "bcrt", 0x6F, 0xC4)
    assert resolve_network(custom) is custom
    assert validate_btc_address("mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn", custom)


def test_an_unknown_network_name_is_a_config_error() -> None:
    with pytest.raises(Brc20ConfigError, match="unknown BTC network 'mainet'"):
        validate_btc_address("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "mainet")


def test_a_non_string_is_refused() -> None:
    with pytest.raises(InvalidBtcAddress, match="must be a string"):
        validate_btc_address(123)  # type: ignore[arg-type]


def test_invalid_address_is_a_value_error_for_generic_handlers() -> None:
    with pytest.raises(ValueError, match="invalid BTC address"):
        validate_btc_address("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5")
