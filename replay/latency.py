"""Durations, latency distributions and the base latency model (pure).

Spellings accepted wherever a duration is expected:
    a number (seconds: ``0.25``), or a string ``"250ms"``, ``"5s"``, ``"1.5s"``, ``"1m"``,
    ``"2h"``, ``"500us"``; a bare numeric string (``"0.25"``) is seconds.

Spellings accepted wherever a latency distribution is expected:
    constant            ``"5ms"`` (or any duration above)
    uniform             ``"2ms..8ms"`` (``"2..8ms"`` takes the unit of the upper bound)
    log-normal          ``"lognormal(mean=5ms, sigma=0.5)"``, optionally ``max=1s`` to cap it.
                        ``mean`` is the mean of the distribution (not of its logarithm), so the
                        average latency stays what is written; ``sigma`` is the standard
                        deviation of the underlying normal (0.5 = moderate tail, 1.0 = heavy).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Mapping, Protocol


class SpecError(ValueError):
    """A bad value in a scenario's spec. ``key`` is the dotted path of the offending key."""

    def __init__(self, key: str | None, problem: str):
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}" if key else problem)


_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_DURATION_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(us|µs|ms|s|min|m|h)?\s*$")


def parse_duration(value: Any, key: str | None = None) -> float:
    """A duration in seconds from ``"250ms"``, ``"5s"``, ``"1m"`` or a number of seconds.

    Raises :class:`SpecError` naming ``key`` for anything else (negative, wrong type, bad unit).
    """
    if isinstance(value, bool):
        raise SpecError(key, f"expected a duration like '250ms', '5s', '1m' or a number of seconds, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION_RE.match(value)
        if not m:
            raise SpecError(key, f"bad duration {value!r}: expected e.g. '250ms', '5s', '1m' or a number of seconds")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise SpecError(
            key, f"expected a duration like '250ms', '5s', '1m' or a number of seconds, got {type(value).__name__}"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise SpecError(key, f"bad duration {value!r}: must be a finite number >= 0")
    return seconds


# --- distributions ---------------------------------------------------------------------


class Distribution(Protocol):
    @property
    def spec(self) -> str: ...  # read-only: the implementations are frozen dataclasses

    def sample(self, rng: random.Random) -> float: ...


@dataclass(frozen=True)
class Constant:
    value: float
    spec: str = ""

    def sample(self, rng: random.Random) -> float:  # consumes no random draw
        return self.value


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float
    spec: str = ""

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)


@dataclass(frozen=True)
class LogNormal:
    """Heavy-tailed latency with the given mean; ``cap`` (seconds) bounds a draw if set."""

    mean: float
    sigma: float
    cap: float | None = None
    spec: str = ""

    def sample(self, rng: random.Random) -> float:
        if self.mean <= 0:
            return 0.0
        mu = math.log(self.mean) - self.sigma * self.sigma / 2.0
        value = rng.lognormvariate(mu, self.sigma)
        return min(value, self.cap) if self.cap is not None else value


ZERO = Constant(0.0, "0")

_LOGNORMAL_RE = re.compile(r"^\s*lognormal\s*\((.*)\)\s*$", re.IGNORECASE)
_HAS_UNIT_RE = re.compile(r"[a-zµ]\s*$", re.IGNORECASE)


def parse_distribution(value: Any, key: str | None = None) -> Distribution:
    """A latency distribution from its spelling (see the module docstring)."""
    if isinstance(value, str) and ".." in value:
        low_s, _, high_s = value.partition("..")
        low_s, high_s = low_s.strip(), high_s.strip()
        if not low_s or not high_s:
            raise SpecError(key, f"bad range {value!r}: expected 'LOW..HIGH', e.g. '2ms..8ms'")
        if not _HAS_UNIT_RE.search(low_s) and _HAS_UNIT_RE.search(high_s):
            unit = re.search(r"(us|µs|ms|min|s|m|h)\s*$", high_s)
            if unit:
                low_s = low_s + unit.group(1)
        low = parse_duration(low_s, key)
        high = parse_duration(high_s, key)
        if high < low:
            raise SpecError(key, f"bad range {value!r}: upper bound is below the lower bound")
        return Uniform(low, high, value)
    if isinstance(value, str):
        m = _LOGNORMAL_RE.match(value)
        if m:
            return _parse_lognormal(value, m.group(1), key)
    try:
        return Constant(parse_duration(value, key), str(value))
    except SpecError:
        raise SpecError(
            key,
            f"bad latency {value!r}: expected a duration ('5ms'), a range ('2ms..8ms') "
            "or 'lognormal(mean=5ms, sigma=0.5)'",
        ) from None


def _parse_lognormal(value: str, inner: str, key: str | None) -> LogNormal:
    params: dict[str, str] = {}
    for part in inner.split(","):
        name, eq, raw = part.partition("=")
        name = name.strip().lower()
        if not eq or not name:
            raise SpecError(key, f"bad lognormal {value!r}: expected 'lognormal(mean=5ms, sigma=0.5)'")
        if name not in ("mean", "sigma", "max"):
            raise SpecError(key, f"bad lognormal {value!r}: unknown parameter {name!r} (use mean, sigma, max)")
        params[name] = raw.strip()
    if "mean" not in params or "sigma" not in params:
        raise SpecError(key, f"bad lognormal {value!r}: needs both mean= and sigma=")
    mean = parse_duration(params["mean"], key)
    try:
        sigma = float(params["sigma"])
    except ValueError:
        raise SpecError(key, f"bad lognormal {value!r}: sigma must be a number") from None
    if not math.isfinite(sigma) or sigma < 0:
        raise SpecError(key, f"bad lognormal {value!r}: sigma must be >= 0")
    cap = parse_duration(params["max"], key) if "max" in params else None
    return LogNormal(mean, sigma, cap, value)


# --- routes ----------------------------------------------------------------------------

_ROUTE_RE = re.compile(r"^\s*(?:([A-Za-z*]+)\s+)?(/\S*)\s*$")


@dataclass(frozen=True)
class RoutePattern:
    """``"POST /v1/orders/limit"``: a method (or ``*``/omitted for any) and a path pattern.

    In the path, ``*`` matches any run of characters and ``{name}`` one path segment. A path
    matches when it equals the pattern text (the server may pass its route template) or
    matches it as a pattern (the server may pass the concrete path).
    """

    method: str
    path: str
    spec: str = ""

    @classmethod
    def parse(cls, value: Any, key: str | None = None) -> "RoutePattern":
        if not isinstance(value, str):
            raise SpecError(key, f"expected a route like 'POST /v1/orders/limit', got {type(value).__name__}")
        m = _ROUTE_RE.match(value)
        if not m:
            raise SpecError(key, f"bad route {value!r}: expected 'METHOD /path', e.g. 'POST /v1/orders/limit'")
        return cls((m.group(1) or "*").upper(), m.group(2), value)

    def matches(self, method: str, route: str) -> bool:
        if self.method != "*" and self.method != method.upper():
            return False
        path = route.split("?", 1)[0]
        if path == self.path:
            return True
        glob = re.sub(r"\{[^}/]*\}", "\x00", self.path)
        regex = "^" + ".*".join(re.escape(p).replace("\x00", "[^/]+") for p in glob.split("*")) + "$"
        return re.match(regex, path) is not None or fnmatchcase(path, self.path)


# --- the base latency model ------------------------------------------------------------

_TRANSPORT_KEYS = ("ws", "rest")
_CONN_KINDS = ("account", "trade")
_TYPE_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _check_message_type(name: str, key: str) -> None:
    """A ``[latency]`` key in capitals must be a VALR message type (``replay.codec.MESSAGE_TYPES``),
    so a typo is refused instead of never matching."""
    from .codec import MESSAGE_TYPES as known

    if name in known:
        return
    import difflib

    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    if close:
        hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
    else:
        hint = "expected one of " + ", ".join(sorted(known))
    raise SpecError(key, f"unknown message type {name!r}: {hint}")


def conn_kind(conn: str) -> str:
    """``"account-1"`` -> ``"account"``."""
    return conn.split("-", 1)[0]


def transport_of(conn: str) -> str:
    return "rest" if conn_kind(conn) == "rest" else "ws"


@dataclass
class LatencyModel:
    """Base latency, drawn per message; all values in seconds.

    A pushed message's latency comes from the first of: its type, its connection kind
    (``account``/``trade``), its transport (``ws``/``rest``), ``default``.
    A REST response's latency (:meth:`http`) comes from the first matching route key, then
    ``rest``, then ``default``. The engine delay (:meth:`engine`) from ``engine`` (a
    distribution or a table of command -> distribution with its own ``default``), else 0.
    """

    default: Distribution = ZERO
    by_type: dict[str, Distribution] = field(default_factory=dict)
    by_conn_kind: dict[str, Distribution] = field(default_factory=dict)
    by_transport: dict[str, Distribution] = field(default_factory=dict)
    by_route: list[tuple[RoutePattern, Distribution]] = field(default_factory=list)
    engine_default: Distribution = ZERO
    engine_by_command: dict[str, Distribution] = field(default_factory=dict)

    def message(self, rng: random.Random, conn: str, msg_type: str) -> float:
        dist = (
            self.by_type.get(msg_type)
            or self.by_conn_kind.get(conn_kind(conn))
            or self.by_transport.get(transport_of(conn))
            or self.default
        )
        return dist.sample(rng)

    def http(self, rng: random.Random, method: str, route: str) -> float:
        for pattern, dist in self.by_route:
            if pattern.matches(method, route):
                return dist.sample(rng)
        return (self.by_transport.get("rest") or self.default).sample(rng)

    def engine(self, rng: random.Random, command: str) -> float:
        return self.engine_by_command.get(command, self.engine_default).sample(rng)

    @classmethod
    def from_spec(cls, table: Mapping[str, Any] | None, prefix: str = "latency") -> "LatencyModel":
        """Build from a scenario's ``[latency]`` table; errors name ``latency.<key>``."""
        model = cls()
        if table is None:
            return model
        if not isinstance(table, Mapping):
            raise SpecError(prefix, f"expected a table, got {type(table).__name__}")
        for name, value in table.items():
            key = f"{prefix}.{name}"
            if name == "default":
                model.default = parse_distribution(value, key)
            elif name in _TRANSPORT_KEYS:
                model.by_transport[name] = parse_distribution(value, key)
            elif name in _CONN_KINDS:
                model.by_conn_kind[name] = parse_distribution(value, key)
            elif name == "engine":
                if isinstance(value, Mapping):
                    for cmd, sub in value.items():
                        if cmd == "default":
                            model.engine_default = parse_distribution(sub, f"{key}.default")
                        elif _TYPE_RE.match(cmd):
                            model.engine_by_command[cmd] = parse_distribution(sub, f"{key}.{cmd}")
                        else:
                            raise SpecError(f"{key}.{cmd}", "unknown key: expected 'default' or a command "
                                            "type such as PLACE_LIMIT_ORDER")
                else:
                    model.engine_default = parse_distribution(value, key)
            elif "/" in name:
                model.by_route.append((RoutePattern.parse(name, key), parse_distribution(value, key)))
            elif _TYPE_RE.match(name):
                _check_message_type(name, key)
                model.by_type[name] = parse_distribution(value, key)
            else:
                raise SpecError(
                    key,
                    "unknown key: expected default, ws, rest, account, trade, engine, a message type "
                    "in capitals (OPEN_ORDERS_UPDATE) or a route ('POST /v1/orders/limit')",
                )
        return model
