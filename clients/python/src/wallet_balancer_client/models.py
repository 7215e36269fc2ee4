"""Typed views of the API's messages.

Amounts (wei, token base units) are Python ``int``; USD amounts and prices are
``decimal.Decimal`` parsed from the API's 8-decimal strings; never ``float``.
Every view keeps the protobuf message it came from in ``raw``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from ._proto import wallet_balancer_pb2 as pb

__all__ = [
    "Conversion",
    "ConversionEvent",
    "ConversionState",
    "EnsureResult",
    "Outcome",
    "ProtocolError",
    "TokenStatus",
    "Venue",
    "WalletStatus",
    "parse_uint",
    "parse_usd",
]

_UINT = re.compile(r"^[0-9]+$")
_USD = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


class ProtocolError(ValueError):
    """The sidecar sent a field that does not follow the API's conventions."""


def parse_uint(name: str, text: str) -> int:
    """A base-unit amount: decimal digits only (no sign, exponent, separator)."""
    if not _UINT.match(text):
        raise ProtocolError(f"{name}: {text!r} is not an unsigned decimal integer")
    return int(text)


def _optional_uint(name: str, text: str) -> int | None:
    return None if text == "" else parse_uint(name, text)


def parse_usd(name: str, text: str) -> Decimal:
    """A USD amount or price: a decimal string (the API sends 8 fractional digits)."""
    if not _USD.match(text):
        raise ProtocolError(f"{name}: {text!r} is not a decimal USD amount")
    return Decimal(text)


def _time(ts: Any) -> datetime:
    return datetime.fromtimestamp(ts.seconds, tz=timezone.utc).replace(microsecond=ts.nanos // 1000)


class Outcome(enum.IntEnum):
    """What EnsureEth did."""

    UNSPECIFIED = pb.ENSURE_OUTCOME_UNSPECIFIED
    #: The wallet already held the need; nothing was converted.
    SUFFICIENT = pb.ENSURE_OUTCOME_SUFFICIENT
    #: Tokens were converted; the wallet now holds at least the need.
    CONVERTED = pb.ENSURE_OUTCOME_CONVERTED
    #: dry_run: the conversions are the plan; nothing was sent.
    PLANNED = pb.ENSURE_OUTCOME_PLANNED


class Venue(enum.IntEnum):
    UNSPECIFIED = pb.VENUE_UNSPECIFIED
    WETH_UNWRAP = pb.VENUE_WETH_UNWRAP
    UNISWAP_V2 = pb.VENUE_UNISWAP_V2
    UNISWAP_V3 = pb.VENUE_UNISWAP_V3


class ConversionState(enum.IntEnum):
    UNSPECIFIED = pb.CONVERSION_STATE_UNSPECIFIED
    PLANNED = pb.CONVERSION_STATE_PLANNED
    SUBMITTED = pb.CONVERSION_STATE_SUBMITTED
    REPLACED = pb.CONVERSION_STATE_REPLACED
    CONFIRMED = pb.CONVERSION_STATE_CONFIRMED
    FAILED = pb.CONVERSION_STATE_FAILED
    REORGED = pb.CONVERSION_STATE_REORGED

    @property
    def final(self) -> bool:
        return self in (ConversionState.CONFIRMED, ConversionState.FAILED)


def _enum(cls: type[enum.IntEnum], value: int) -> Any:
    try:
        return cls(value)
    except ValueError:  # a newer server's value: keep the number
        return value


@dataclass(frozen=True)
class Conversion:
    """One token-to-ETH conversion (sent, or planned on a dry run)."""

    conversion_id: str
    token_symbol: str
    token_address: str
    venue: Venue
    venue_name: str
    #: Uniswap V3 fee tier in hundredths of a bip; 0 otherwise.
    fee_tier: int
    eth_out_wei: int
    max_amount_in: int
    quoted_amount_in: int
    #: Tokens actually sold (from the receipt); None until confirmed.
    amount_in: int | None
    token_price_usd: Decimal
    eth_price_usd: Decimal
    state: ConversionState
    #: None until submitted.
    tx_hash: str | None
    approval_tx_hashes: tuple[str, ...]
    gas_used: int
    gas_cost_wei: int
    #: 0 until confirmed.
    block_number: int
    #: Why it failed; None otherwise.
    error: str | None
    raw: pb.Conversion = field(repr=False, compare=False)

    @classmethod
    def from_pb(cls, m: pb.Conversion) -> Conversion:
        return cls(
            conversion_id=m.conversion_id,
            token_symbol=m.token_symbol,
            token_address=m.token_address,
            venue=_enum(Venue, m.venue),
            venue_name=m.venue_name,
            fee_tier=m.fee_tier,
            eth_out_wei=parse_uint("eth_out_wei", m.eth_out_wei),
            max_amount_in=parse_uint("max_amount_in", m.max_amount_in),
            quoted_amount_in=parse_uint("quoted_amount_in", m.quoted_amount_in),
            amount_in=_optional_uint("amount_in", m.amount_in),
            token_price_usd=parse_usd("token_price_usd", m.token_price_usd),
            eth_price_usd=parse_usd("eth_price_usd", m.eth_price_usd),
            state=_enum(ConversionState, m.state),
            tx_hash=m.tx_hash or None,
            approval_tx_hashes=tuple(m.approval_tx_hashes),
            gas_used=m.gas_used,
            gas_cost_wei=_optional_uint("gas_cost_wei", m.gas_cost_wei) or 0,
            block_number=m.block_number,
            error=m.error or None,
            raw=m,
        )


@dataclass(frozen=True)
class EnsureResult:
    """What EnsureEth did; figures of sent conversions come from receipts."""

    chain: str
    request_id: str
    outcome: Outcome
    conversion_needed: bool
    eth_before_wei: int
    eth_after_wei: int
    required_wei: int
    gas_reserve_wei: int
    need_wei: int
    shortage_wei: int
    target_eth_out_wei: int
    conversions: tuple[Conversion, ...]
    total_eth_out_wei: int
    total_gas_cost_wei: int
    block_number: int
    raw: pb.EnsureEthResponse = field(repr=False, compare=False)

    @classmethod
    def from_pb(cls, m: pb.EnsureEthResponse) -> EnsureResult:
        return cls(
            chain=m.chain,
            request_id=m.request_id,
            outcome=_enum(Outcome, m.outcome),
            conversion_needed=m.conversion_needed,
            eth_before_wei=parse_uint("eth_before_wei", m.eth_before_wei),
            eth_after_wei=parse_uint("eth_after_wei", m.eth_after_wei),
            required_wei=parse_uint("required_wei", m.required_wei),
            gas_reserve_wei=parse_uint("gas_reserve_wei", m.gas_reserve_wei),
            need_wei=parse_uint("need_wei", m.need_wei),
            shortage_wei=parse_uint("shortage_wei", m.shortage_wei),
            target_eth_out_wei=parse_uint("target_eth_out_wei", m.target_eth_out_wei),
            conversions=tuple(Conversion.from_pb(c) for c in m.conversions),
            total_eth_out_wei=parse_uint("total_eth_out_wei", m.total_eth_out_wei),
            total_gas_cost_wei=parse_uint("total_gas_cost_wei", m.total_gas_cost_wei),
            block_number=m.block_number,
            raw=m,
        )


@dataclass(frozen=True)
class TokenStatus:
    symbol: str
    address: str
    decimals: int
    balance: int
    price_usd: Decimal
    value_usd: Decimal
    min_reserve_usd: Decimal
    min_reserve: int
    #: Above the reserve, in base units; 0 when under the reserve or the minimum conversion size.
    convertible: int
    convertible_usd: Decimal
    priority: int
    #: Why the token's price cannot be used (a stale or non-positive feed);
    #: ``None`` when it can. An unusable token is left out of conversions.
    price_error: str | None
    raw: pb.TokenStatus = field(repr=False, compare=False)

    @classmethod
    def from_pb(cls, m: pb.TokenStatus) -> TokenStatus:
        return cls(
            symbol=m.symbol,
            address=m.address,
            decimals=m.decimals,
            balance=parse_uint("balance", m.balance),
            price_usd=parse_usd("price_usd", m.price_usd),
            value_usd=parse_usd("value_usd", m.value_usd),
            min_reserve_usd=parse_usd("min_reserve_usd", m.min_reserve_usd),
            min_reserve=parse_uint("min_reserve", m.min_reserve),
            convertible=parse_uint("convertible", m.convertible),
            convertible_usd=parse_usd("convertible_usd", m.convertible_usd),
            priority=m.priority,
            price_error=m.price_error or None,
            raw=m,
        )


@dataclass(frozen=True)
class WalletStatus:
    """The wallet on one chain, read at one block."""

    chain: str
    chain_id: int
    wallet_address: str
    block_number: int
    block_timestamp: datetime
    eth_balance_wei: int
    eth_price_usd: Decimal
    eth_value_usd: Decimal
    gas_reserve_wei: int
    tokens: tuple[TokenStatus, ...]
    total_value_usd: Decimal
    total_convertible_usd: Decimal
    max_eth_after_conversion_wei: int
    raw: pb.WalletStatus = field(repr=False, compare=False)

    def token(self, symbol: str) -> TokenStatus:
        for t in self.tokens:
            if t.symbol == symbol:
                return t
        raise KeyError(symbol)

    @classmethod
    def from_pb(cls, m: pb.WalletStatus) -> WalletStatus:
        return cls(
            chain=m.chain,
            chain_id=m.chain_id,
            wallet_address=m.wallet_address,
            block_number=m.block_number,
            block_timestamp=_time(m.block_timestamp),
            eth_balance_wei=parse_uint("eth_balance_wei", m.eth_balance_wei),
            eth_price_usd=parse_usd("eth_price_usd", m.eth_price_usd),
            eth_value_usd=parse_usd("eth_value_usd", m.eth_value_usd),
            gas_reserve_wei=parse_uint("gas_reserve_wei", m.gas_reserve_wei),
            tokens=tuple(TokenStatus.from_pb(t) for t in m.tokens),
            total_value_usd=parse_usd("total_value_usd", m.total_value_usd),
            total_convertible_usd=parse_usd("total_convertible_usd", m.total_convertible_usd),
            max_eth_after_conversion_wei=parse_uint(
                "max_eth_after_conversion_wei", m.max_eth_after_conversion_wei
            ),
            raw=m,
        )


@dataclass(frozen=True)
class ConversionEvent:
    """One state change of one conversion; ``sequence`` is the resume cursor."""

    sequence: int
    time: datetime
    chain: str
    request_id: str
    conversion_id: str
    state: ConversionState
    tx_hash: str | None
    conversion: Conversion | None
    raw: pb.ConversionEvent = field(repr=False, compare=False)

    @classmethod
    def from_pb(cls, m: pb.ConversionEvent) -> ConversionEvent:
        return cls(
            sequence=m.sequence,
            time=_time(m.time),
            chain=m.chain,
            request_id=m.request_id,
            conversion_id=m.conversion_id,
            state=_enum(ConversionState, m.state),
            tx_hash=m.tx_hash or None,
            conversion=Conversion.from_pb(m.conversion) if m.HasField("conversion") else None,
            raw=m,
        )
