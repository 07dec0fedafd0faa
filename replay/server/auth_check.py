"""Checking VALR's request signatures (pure: headers, request and time in, verdict out).

Status codes and messages for refusals are only partly documented: a request sent without an
API key is refused with HTTP 403 [C-off]; for an unknown key, a bad signature and a stale or
future timestamp VALR's status is not documented, and we answer 401 [INF]. Error codes are
[INF] too (VALR's error bodies carry a negative integer code).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Collection, Mapping

from replay.auth import (
    API_KEY_HEADER,
    SECRET_HEADERS,
    SIGNATURE_HEADER,
    SUBACCOUNT_HEADER,
    TIMESTAMP_HEADER,
    verify,
)

SCRUBBED = "<scrubbed>"
TIMESTAMP_RE = re.compile(r"[0-9]{1,19}")

# [INF] messages: the alunajs ValrErrorEnum lists these strings; which status goes with which
# is not documented.
MSG_UNAUTHORIZED = "Unauthorized"
MSG_BAD_KEY = "API key or secret is invalid"
MSG_BAD_SIGNATURE = "Request has an invalid signature"
MSG_BAD_TIMESTAMP = "Request timestamp is invalid"
MSG_EXPIRED = "Request has expired"
MSG_BAD_SUBACCOUNT = "Invalid sub-account id"


@dataclass(frozen=True)
class AuthOk:
    account: str  # the exchange account name the key belongs to
    api_key: str
    subaccount_id: str = ""
    #: the signature covered the path without its query string (see check_signature)
    query_unsigned: bool = False


@dataclass(frozen=True)
class AuthRefused:
    status: int
    code: int
    message: str

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


def scrub_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``headers`` with the values of VALR's secret-bearing headers replaced."""
    secret = {h.lower() for h in SECRET_HEADERS}
    out: dict[str, str] = {}
    for name, value in headers.items():
        out[name] = SCRUBBED if name.lower() in secret else value
    return out


def _get(headers: Mapping[str, str], name: str) -> str | None:
    # aiohttp's CIMultiDict is case-insensitive already; a plain dict may not be.
    value = headers.get(name)
    if value is None:
        lname = name.lower()
        for key, val in headers.items():
            if key.lower() == lname:
                return val
    return value


def check_signature(
    headers: Mapping[str, str],
    method: str,
    path_with_query: str,
    body: bytes | str,
    *,
    secrets_by_key: Mapping[str, tuple[str, str]],
    now_ms: int,
    window_ms: int,
    subaccounts: Mapping[str, Collection[str]] | None = None,
) -> AuthOk | AuthRefused:
    """Verify VALR's three (or four) auth headers.

    ``secrets_by_key`` maps an API key to ``(account name, secret)``. The signature covers
    timestamp + METHOD + path with query + raw body + sub-account id (when that header is sent).
    The timestamp must lie within ``window_ms`` of ``now_ms`` either way ([INF]: VALR's
    tolerance is undocumented). With ``subaccounts`` (account -> its sub-account ids), an
    ``X-VALR-SUB-ACCOUNT-ID`` the account does not own is refused.
    """
    api_key = _get(headers, API_KEY_HEADER)
    if not api_key:
        return AuthRefused(403, -1, MSG_UNAUTHORIZED)
    entry = secrets_by_key.get(api_key)
    if entry is None:
        return AuthRefused(401, -11, MSG_BAD_KEY)
    account, secret = entry
    signature = _get(headers, SIGNATURE_HEADER)
    if not signature:
        return AuthRefused(401, -12, MSG_BAD_SIGNATURE)
    ts_text = _get(headers, TIMESTAMP_HEADER)
    # Milliseconds since the epoch in ASCII digits: str.isdigit() also takes "¹²³", which int()
    # refuses, and a few thousand digits reach int()'s conversion limit; 19 digits cover int64.
    if not ts_text or not TIMESTAMP_RE.fullmatch(ts_text.strip()):
        return AuthRefused(401, -13, MSG_BAD_TIMESTAMP)
    ts = int(ts_text.strip())
    if abs(now_ms - ts) > window_ms:
        return AuthRefused(401, -14, MSG_EXPIRED)
    subaccount = _get(headers, SUBACCOUNT_HEADER) or ""
    query_unsigned = False
    if not verify(secret, signature, ts_text.strip(), method, path_with_query, body, subaccount):
        # VALR documents the query string as part of the signed path, but the published
        # valr-python client signs GETs with parameters over the bare path (its
        # get_order_history(skip, limit), for one) and is used against VALR, so VALR
        # evidently accepts that form too. Accept it, and say so (AuthOk.query_unsigned).
        path, _, query = path_with_query.partition("?")
        if not query or not verify(secret, signature, ts_text.strip(), method, path, body, subaccount):
            return AuthRefused(401, -12, MSG_BAD_SIGNATURE)
        query_unsigned = True
    if subaccount and subaccounts is not None and subaccount not in subaccounts.get(account, ()):
        # [INF] status and text for a sub-account the key does not own are undocumented.
        return AuthRefused(401, -15, MSG_BAD_SUBACCOUNT)
    return AuthOk(account, api_key, subaccount, query_unsigned)


def check_payload_auth(
    payload: Any,
    path: str,
    *,
    secrets_by_key: Mapping[str, tuple[str, str]],
    now_ms: int,
    window_ms: int,
    subaccounts: Mapping[str, Collection[str]] | None = None,
) -> AuthOk | AuthRefused:
    """The in-band ``AUTHENTICATE`` payload ``{apiKey, signature, timestamp}`` [C-doc3].

    [INF] the signature is assumed to cover the same text as the header handshake:
    timestamp + "GET" + path.
    """
    if not isinstance(payload, dict):
        return AuthRefused(403, -1, MSG_UNAUTHORIZED)
    headers = {
        API_KEY_HEADER: str(payload.get("apiKey") or ""),
        SIGNATURE_HEADER: str(payload.get("signature") or ""),
        TIMESTAMP_HEADER: str(payload.get("timestamp") or ""),
    }
    return check_signature(headers, "GET", path, "", secrets_by_key=secrets_by_key,
                           now_ms=now_ms, window_ms=window_ms, subaccounts=subaccounts)
