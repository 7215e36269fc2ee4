"""Integer fixed-point helpers mirroring the sidecar's wire conventions:
USD amounts are decimal strings with exactly 8 fractional digits. Python
ints only; no floats anywhere.
"""

from __future__ import annotations

import re

USD_DECIMALS = 8
_DECIMAL = re.compile(r"^(\d*)(?:\.(\d+))?$")


def parse_decimal(text: str, decimals: int) -> int:
    """"25" -> 25 * 10**decimals; "5.5" -> 55 * 10**(decimals-1). Rejects more
    fractional digits than `decimals` (after trailing zeros), signs, exponents."""
    m = _DECIMAL.match(text)
    if not text or m is None or (m.group(1) == "" and m.group(2) is None):
        raise ValueError(f"not a non-negative decimal: {text!r}")
    whole, frac = m.group(1) or "0", (m.group(2) or "").rstrip("0")
    if len(frac) > decimals:
        raise ValueError(f"{text!r} has more than {decimals} fractional digits")
    return int(whole) * 10**decimals + (int(frac) * 10 ** (decimals - len(frac)) if frac else 0)


def parse_usd(text: str) -> int:
    """A USD decimal string as an integer of 10^-8 dollars."""
    return parse_decimal(text, USD_DECIMALS)


def format_fixed(value: int, decimals: int) -> str:
    """Exactly `decimals` fractional digits: format_fixed(1500000, 6) == "1.500000"."""
    if value < 0:
        raise ValueError(f"negative amount {value}")
    if decimals == 0:
        return str(value)
    whole, frac = divmod(value, 10**decimals)
    return f"{whole}.{frac:0{decimals}d}"


def format_usd(value: int) -> str:
    return format_fixed(value, USD_DECIMALS)


def floor_div(a: int, b: int) -> int:
    if a < 0 or b <= 0:
        raise ValueError("floor_div expects a >= 0, b > 0")
    return a // b


def ceil_div(a: int, b: int) -> int:
    if a < 0 or b <= 0:
        raise ValueError("ceil_div expects a >= 0, b > 0")
    return -(-a // b)


def scale_div(numerator: int, exp: int, denominator: int, *, round_up: bool) -> int:
    """numerator * 10**exp / denominator (exp may be negative), rounded as told."""
    if exp >= 0:
        num, den = numerator * 10**exp, denominator
    else:
        num, den = numerator, denominator * 10 ** (-exp)
    return ceil_div(num, den) if round_up else floor_div(num, den)


def value_usd(amount: int, decimals: int, answer: int, feed_decimals: int) -> int:
    """USD value (10^-8 units) of `amount` base units at a feed answer, rounded
    down: floor(amount * answer / 10**(decimals + feed_decimals - 8))."""
    return scale_div(amount * answer, USD_DECIMALS - decimals - feed_decimals, 1, round_up=False)


def units_for_usd(usd: int, decimals: int, answer: int, feed_decimals: int, *, round_up: bool) -> int:
    """Base units worth `usd` (10^-8 units) at a feed answer:
    usd * 10**(decimals + feed_decimals - 8) / answer."""
    return scale_div(usd, decimals + feed_decimals - USD_DECIMALS, answer, round_up=round_up)
