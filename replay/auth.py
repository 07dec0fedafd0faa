"""VALR request signing, shared by the fake server (to verify) and the connector (to sign).

signature = hex(HMAC-SHA512(secret as UTF-8, timestamp + VERB + path_with_query + body + subaccountId))
The secret is used as its raw string, not hex-decoded; the digest is lowercase hex.
"""

from __future__ import annotations

import hashlib
import hmac
import time

API_KEY_HEADER = "X-VALR-API-KEY"
SIGNATURE_HEADER = "X-VALR-SIGNATURE"
TIMESTAMP_HEADER = "X-VALR-TIMESTAMP"
SUBACCOUNT_HEADER = "X-VALR-SUB-ACCOUNT-ID"
SECRET_HEADERS = (API_KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, SUBACCOUNT_HEADER)


def sign(
    secret: str,
    timestamp_ms: int | str,
    method: str,
    path_with_query: str,
    body: str | bytes = "",
    subaccount_id: str = "",
) -> str:
    # Over the body's bytes as sent: a body that is not UTF-8 is signed (and refused later, as a bad
    # payload), never decoded here.
    raw = body if isinstance(body, bytes) else body.encode("utf-8")
    payload = f"{timestamp_ms}{method.upper()}{path_with_query}".encode() + raw + subaccount_id.encode("utf-8")
    return hmac.new(secret.encode("utf-8"), payload, hashlib.sha512).hexdigest()


def auth_headers(
    api_key: str,
    secret: str,
    method: str,
    path_with_query: str,
    body: str | bytes = "",
    subaccount_id: str = "",
    timestamp_ms: int | None = None,
) -> dict[str, str]:
    """The headers a signed VALR request carries."""
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    headers = {
        API_KEY_HEADER: api_key,
        SIGNATURE_HEADER: sign(secret, ts, method, path_with_query, body, subaccount_id),
        TIMESTAMP_HEADER: str(ts),
    }
    if subaccount_id:
        headers[SUBACCOUNT_HEADER] = subaccount_id
    return headers


def verify(secret: str, signature: str, timestamp_ms: str, method: str, path_with_query: str,
           body: str | bytes = "", subaccount_id: str = "") -> bool:
    if not signature.isascii():  # compare_digest takes ASCII text only; no hex digest is anything else
        return False
    expected = sign(secret, timestamp_ms, method, path_with_query, body, subaccount_id)
    return hmac.compare_digest(expected, signature.lower())
