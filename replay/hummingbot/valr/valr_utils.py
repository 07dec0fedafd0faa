"""Small VALR helpers: fees, time and decimal parsing, error classification."""

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Optional

from hummingbot.core.data_type.trade_fee import TradeFeeSchema

from . import valr_constants as CONSTANTS

CENTRALIZED = True
EXAMPLE_PAIR = "BTC-ZAR"

# A flat default (VALR's maker rebate / taker fee vary by pair and tier).
DEFAULT_FEES = TradeFeeSchema(
    maker_percent_fee_decimal=Decimal("0"),
    taker_percent_fee_decimal=Decimal("0.001"),
    buy_percent_fee_deducted_from_returns=True,
)


def decimal_or(value: Any, default: Optional[Decimal] = None) -> Optional[Decimal]:
    if value is None or value == "":
        return default
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return default


def parse_valr_time(value: Any) -> Optional[float]:
    """VALR's ISO 8601 timestamp (``2024-05-08T11:51:29.169Z``) or epoch ms/s -> epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value / 1000.0 if value > 1e11 else float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def error_text(body: Any) -> str:
    """The ``message`` and ``code`` of a VALR error body (REST or a WS ``error`` object), as text."""
    if isinstance(body, dict):
        err = inner if isinstance(inner := body.get("error"), dict) else body
        if isinstance(data := err.get("data"), dict) and "message" not in err:
            err = data
        return f"{err.get('message', '')} (code {err.get('code', '')})"
    return str(body)


def is_order_not_found(text: str) -> bool:
    """VALR's unknown-order answer: ``{"code":-1,"message":"Invalid Order. "}`` (HTTP 400), or a 404."""
    t = text.lower()
    return (CONSTANTS.ORDER_NOT_FOUND_MESSAGE.lower() in t
            or "http status is 404" in t
            or "order not found" in t
            or "does not exist" in t)


def is_duplicate_customer_order_id(text: str) -> bool:
    t = text.lower()
    return CONSTANTS.DUPLICATE_CID_MESSAGE.lower() in t or str(CONSTANTS.DUPLICATE_CID_CODE) in t


def is_timestamp_error(text: str) -> bool:
    return any(m.lower() in text.lower() for m in CONSTANTS.TIMESTAMP_ERROR_MESSAGES)


_AGE_GUARD = re.compile(r"^age-guard\s*:\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}


def parse_open_orders_policy(text: str) -> tuple:
    """``naive`` | ``age-guard:S`` | ``ignore`` | ``reconcile`` -> (name, seconds or None).

    S is seconds (``5``, ``2.5``) or a duration (``2s``, ``500ms``, ``1m``).
    """
    if not isinstance(text, str):
        raise ValueError(f"open_orders_policy must be a string, one of {', '.join(CONSTANTS.OPEN_ORDERS_POLICIES)}")
    t = text.strip().lower()
    if t in ("naive", "ignore", "reconcile"):
        return t, None
    m = _AGE_GUARD.match(t)
    if m:
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
        if seconds > 0:
            return "age-guard", seconds
    raise ValueError(f"unknown open_orders_policy {text!r}: expected one of "
                     f"{', '.join(CONSTANTS.OPEN_ORDERS_POLICIES)} (age-guard with a positive age, e.g. age-guard:5)")
