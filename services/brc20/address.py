"""Bitcoin address validation: bech32 (segwit v0), bech32m (segwit v1+, taproot) and
base58check (P2PKH, P2SH), for one configured network.

The verdict always comes from the libraries (`bech32m`, the BIP-350 reference code, and
`base58`); the cheap string checks before them only exist to say *why* an address fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import base58
from bech32m import codecs  # type: ignore[import-untyped, unused-ignore]

from services.brc20.errors import Brc20ConfigError, InvalidBtcAddress

# BIP-173 caps a bech32 string at 90 characters; base58check addresses are shorter.
MAX_ADDRESS_LENGTH = 90
_BASE58_LENGTHS = range(26, 36)  # 25 bytes in base58: 26..35 characters
_BASE58_PAYLOAD_BYTES = 21  # version byte + 20-byte hash


@dataclass(frozen=True, slots=True)
class BtcNetwork:
    """What tells one network's addresses apart: the bech32 human-readable part and the
    base58check version bytes of P2PKH and P2SH."""

    name: str
    hrp: str
    p2pkh_version: int
    p2sh_version: int


MAINNET = BtcNetwork("mainnet", "bc", 0x00, 0x05)
TESTNET = BtcNetwork("testnet", "tb", 0x6F, 0xC4)
SIGNET = BtcNetwork("signet", "tb", 0x6F, 0xC4)
REGTEST = BtcNetwork("regtest", "bcrt", 0x6F, 0xC4)
NETWORKS: dict[str, BtcNetwork] = {n.name: n for n in (MAINNET, TESTNET, SIGNET, REGTEST)}


def resolve_network(network: str | BtcNetwork) -> BtcNetwork:
    """The network named `network` (`mainnet`, `testnet`, `signet`, `regtest`), or the
    value itself. Raises `Brc20ConfigError` for an unknown name."""
    if isinstance(network, BtcNetwork):
        return network
    try:
        return NETWORKS[network]
    except KeyError:
        known = ", ".join(NETWORKS)
        raise Brc20ConfigError(
            f"unknown BTC network {network!r}; expected one of {known}"
        ) from None


def validate_btc_address(address: str, network: str | BtcNetwork = "mainnet") -> str:
    """The address in normal form (bech32 lower-cased, base58 unchanged) if it is a valid
    address of `network`; else `InvalidBtcAddress` whose message says why. Pure."""
    net = resolve_network(network)
    if not isinstance(address, str):
        raise InvalidBtcAddress(f"BTC address must be a string, got {type(address).__name__}")
    if not address:
        raise InvalidBtcAddress("BTC address is empty")
    if len(address) > MAX_ADDRESS_LENGTH:
        raise _invalid(address, f"is {len(address)} characters long (at most 90)")
    if any(not "!" <= ch <= "~" for ch in address):
        raise _invalid(address, "contains whitespace or a character outside printable ASCII")
    if _bech32_hrp(address) is not None:
        return _validate_segwit(address, net)
    return _validate_base58(address, net)


def _invalid(address: str, why: str) -> InvalidBtcAddress:
    shown = address if len(address) <= MAX_ADDRESS_LENGTH else address[:MAX_ADDRESS_LENGTH] + "…"
    return InvalidBtcAddress(f"invalid BTC address {shown!r}: {why}")


def _bech32_hrp(address: str) -> str | None:
    """The known hrp `address` starts with (`bc1…`, `tb1…`, `bcrt1…`), if any. No base58
    address of any network starts like that, so the prefix picks the decoder."""
    lowered = address.lower()
    for hrp in sorted({n.hrp for n in NETWORKS.values()}, key=len, reverse=True):
        if lowered.startswith(hrp + "1"):
            return hrp
    return None


def _networks_with(predicate: str, value: object) -> str:
    names = [n.name for n in NETWORKS.values() if getattr(n, predicate) == value]
    return "/".join(names)


def _validate_segwit(address: str, net: BtcNetwork) -> str:
    if address not in (address.lower(), address.upper()):
        raise _invalid(address, "mixes upper and lower case (bech32 forbids it)")
    lowered = address.lower()
    data_part = lowered[lowered.rfind("1") + 1 :]
    if len(data_part) < 6:
        raise _invalid(address, "is too short for bech32 (a 6-character checksum at least)")
    bad = sorted(set(data_part) - set(codecs.CHARSET))
    if bad:
        raise _invalid(address, f"contains {''.join(bad)!r}, outside the bech32 alphabet")
    try:
        hrp, data, spec = codecs.bech32_decode(lowered)
    except codecs.DecodeError:
        raise _invalid(address, "has a bad bech32/bech32m checksum") from None
    if hrp != net.hrp:
        raise _invalid(
            address,
            f"is a {_networks_with('hrp', hrp)} address; {net.name} addresses start with "
            f"{net.hrp + '1'!r}",
        )
    try:
        codecs.decode(net.hrp, lowered)
    except codecs.DecodeError:
        raise _invalid(address, _segwit_reason(list(data), spec)) from None
    return lowered


def _segwit_reason(data: list[int], spec: object) -> str:
    """Why the library refused a checksum-valid segwit string (BIP-141/173/350 rules)."""
    if not data:
        return "has an empty data part"
    version = data[0]
    if version > 16:
        return f"has witness version {version} (at most 16)"
    if version == 0 and spec != codecs.Encoding.BECH32:
        return "is a witness v0 address with a bech32m checksum (v0 uses bech32, BIP-350)"
    if version > 0 and spec != codecs.Encoding.BECH32M:
        return f"is a witness v{version} address with a bech32 checksum (v1+ uses bech32m)"
    return f"has an invalid witness v{version} program (wrong length or padding)"


def _validate_base58(address: str, net: BtcNetwork) -> str:
    if len(address) not in _BASE58_LENGTHS:
        raise _invalid(
            address,
            f"is neither a {net.hrp}1… bech32 address nor a base58check address "
            f"(26 to 35 characters, got {len(address)})",
        )
    try:
        payload = base58.b58decode_check(address)
    except ValueError as exc:  # "Invalid checksum" or "Invalid character 'x'"
        raise _invalid(address, f"is not valid base58check: {str(exc).lower()}") from None
    if len(payload) != _BASE58_PAYLOAD_BYTES:
        raise _invalid(address, f"decodes to {len(payload)} bytes, not 21 (version + hash)")
    version = payload[0]
    if version in (net.p2pkh_version, net.p2sh_version):
        return address
    other = _networks_with("p2pkh_version", version) or _networks_with("p2sh_version", version)
    if other:
        raise _invalid(address, f"is a {other} address, not {net.name}")
    raise _invalid(address, f"has unknown version byte 0x{version:02x}")
