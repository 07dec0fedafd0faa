"""VALR's rate limits as a pure counter fed epoch milliseconds [C-doc3 R3 /guides/rate-limiting].

Per API key per minute, per IP per minute (both windows reset at the start of each minute),
and per route per second. A refused request does not use up quota ([INF]). The server counts a
request in two steps (``check``'s ``routes`` and ``api_key``): its IP first, before anything else
is looked at; its key (and route) only once the signature is verified, so that requests signed
badly with someone else's key cost that key nothing (they count against their IP).
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

# (method or "*", path glob or prefix, limit per second). [C-doc3] values; the documented "/v1/public/*
# 30/min" is left out by default because clients (Hummingbot's time synchroniser) call
# /v1/public/time far more often than that in practice [INF].
DEFAULT_ROUTE_LIMITS: tuple[tuple[str, str, int], ...] = (
    ("POST", "/v1/orders*", 400),
    ("POST", "/v2/orders*", 400),
    ("DELETE", "/v1/orders*", 450),
    ("DELETE", "/v2/orders*", 450),
    ("POST", "/v1/batch/orders", 400),
    ("PUT", "/v2/orders/modify", 400),
    ("GET", "/v1/public/time", 20),
    ("GET", "/v1/public/status", 20),
)


MAX_KEY_CHARS = 128


@dataclass(frozen=True)
class Limited:
    """A refusal: which limit and how many whole seconds until it resets."""

    scope: str  # "key", "ip" or "route"
    limit: int
    retry_after_s: int

    def headers(self) -> dict[str, str]:
        return {"x-valr-ratelimited": "true", "Retry-After": str(self.retry_after_s)}

    def body(self) -> dict[str, int | str]:
        # [INF] VALR's error body for a 429; code -1 and this text are not documented.
        return {"code": -1, "message": f"Rate limit exceeded ({self.scope}: {self.limit})"}


class RateLimiter:
    def __init__(
        self,
        per_key_per_min: int | None = 2000,
        per_ip_per_min: int | None = 1200,
        route_limits: Iterable[tuple[str, str, int]] | None = DEFAULT_ROUTE_LIMITS,
    ):
        self.per_key_per_min = per_key_per_min
        self.per_ip_per_min = per_ip_per_min
        self.route_limits: Sequence[tuple[str, str, int]] = tuple(route_limits or ())
        self._minute_counts: dict[tuple[str, str], tuple[int, int]] = {}  # (scope, who) -> (window, n)
        self._second_counts: dict[int, tuple[int, int]] = {}  # route index -> (window, n)
        self._minute = -1  # the window _minute_counts holds: older counts are dropped when it ends

    def _route_indexes(self, method: str, path: str) -> list[int]:
        """Every rule that covers the request (each one counts and can refuse)."""
        out = []
        for i, (m, pattern, _limit) in enumerate(self.route_limits):
            if m != "*" and m.upper() != method.upper():
                continue
            if "*" in pattern or "?" in pattern:
                if fnmatch.fnmatchcase(path, pattern):
                    out.append(i)
            elif path == pattern or path.startswith(pattern.rstrip("/") + "/"):
                out.append(i)  # a plain path covers everything below it
        return out

    @staticmethod
    def _count(table: dict, key: object, window: int) -> int:
        w, n = table.get(key, (window, 0))
        return n if w == window else 0

    def check(self, now_ms: int, *, method: str, path: str, ip: str | None = None,
              api_key: str | None = None, routes: bool = True) -> Limited | None:
        """Count one request; return a ``Limited`` (and count nothing) when a limit is reached.
        Only the scopes given count: ``ip``, ``api_key``, and the route rules unless ``routes`` is
        False."""
        minute = now_ms // 60_000
        second = now_ms // 1000
        to_minute = max(1, math.ceil(((minute + 1) * 60_000 - now_ms) / 1000))
        to_second = max(1, math.ceil(((second + 1) * 1000 - now_ms) / 1000))
        if minute != self._minute:
            # counts of a past minute can refuse nothing: drop them, so memory follows the callers of
            # one minute, not of the whole run
            self._minute_counts.clear()
            self._minute = minute
        minute_keys: list[tuple[tuple[str, str], int]] = []
        if api_key and self.per_key_per_min:
            # a real key is 64 characters; a longer header is counted by its start (and refused later)
            minute_keys.append((("key", api_key[:MAX_KEY_CHARS]), self.per_key_per_min))
        if ip and self.per_ip_per_min:
            minute_keys.append((("ip", ip), self.per_ip_per_min))
        for key, limit in minute_keys:
            if self._count(self._minute_counts, key, minute) >= limit:
                return Limited(key[0], limit, to_minute)
        indexes = self._route_indexes(method, path) if routes else []
        for route in indexes:
            limit = self.route_limits[route][2]
            if self._count(self._second_counts, route, second) >= limit:
                return Limited("route", limit, to_second)
        for route in indexes:
            self._second_counts[route] = (second, self._count(self._second_counts, route, second) + 1)
        for key, _limit in minute_keys:
            self._minute_counts[key] = (minute, self._count(self._minute_counts, key, minute) + 1)
        return None
