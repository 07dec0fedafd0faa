"""Exchange configuration: pairs, accounts, background market, server parameters.

Loaded from TOML (``load_config``) or from an already-parsed table (``config_from_dict``,
used by scenario files); ``default_config()`` is the built-in setup. Every section is
optional; an omitted section takes the default. Decimal values may be written as strings
(preferred: exact) or numbers.

TOML layout::

    [server]                        # ServerParams fields, all optional
    engine_latency_s = 0.0
    timestamp_window_s = 60.0
    max_frame_bytes = 65536
    idle_timeout_s = 30.0           # omit for no idle timeout
    rate_limit_per_minute_key = 2000
    rate_limit_per_minute_ip = 1200
    reference_currency = "ZAR"      # BALANCE_UPDATE's referenceCurrency; default: the first pair's quote
    mark_price_interval_s = 5.0     # MARK_PRICE_UPDATE cadence
    strict_signatures = false       # true: refuse a GET signed without its query string
    ws_send_queue_bytes = 4194304   # JSON a WebSocket may have waiting; past it: closed 1008
    [server.route_limits_per_second]
    "POST /v1/orders" = 400
    [server.ws_rate_limits_per_second]  # per account WebSocket connection; past one: RATE_LIMIT_EXCEEDED
    place = 400                     # PLACE_LIMIT_ORDER, PLACE_MARKET_ORDER
    cancel = 450                    # CANCEL_LIMIT_ORDER
    batch = 400                     # BATCH_ORDERS
    modify = 400                    # MODIFY_ORDER

    [[pairs]]                       # replaces the default pairs when present
    symbol = "BTCZAR"               # required: symbol, base, quote, tick_size, min_base, min_quote
    base = "BTC"
    quote = "ZAR"
    tick_size = "1"
    min_base = "0.0001"
    max_base = "4"                  # optional
    min_quote = "10"
    max_quote = "1000000"           # optional
    base_decimals = 8               # optional
    maker_fee = "0"                 # optional, a fraction (0.001 = 10 bps)
    taker_fee = "0.001"             # optional
    active = true                   # optional

    [[accounts]]                    # replaces the default account when present
    name = "demo"                   # required: name, api_key, api_secret
    api_key = "0123..."
    api_secret = "fedc..."
    subaccounts = []                # optional
    [accounts.balances]             # optional
    BTC = "10"
    ZAR = "10000000"

    [market.BTCZAR]                 # background market per pair; `mid` required, the rest optional
    mid = "1500000"
    spread_bps = 30
    levels = 10
    level_step_bps = 5
    level_quantity = "0.05"
    volatility_bps = 2
    step_interval_s = 1.0
    taker_probability = 0.3
    taker_quantity = "0.002"         # every taker's amount, unless a range is given:
    taker_min_quantity = "0.0002"   # optional: draw each taker's amount uniformly from
    taker_max_quantity = "0.002"    #   [min, max] (one bound alone: the other is taker_quantity)
    taker_min_depth_bps = 5
    taker_max_depth_bps = 50

Errors raise ``ConfigError("<file>: <key>: <what is wrong>")``.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import AbstractSet, Any, Mapping

from replay.exchange.model import PairSpec

DEMO_API_KEY = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
DEMO_API_SECRET = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

# VALR's per-second route limits [C-doc3 R3 /guides/rate-limiting].
DEFAULT_ROUTE_LIMITS: dict[str, int] = {
    "POST /v1/orders": 400,
    "DELETE /v1/orders": 450,
    "POST /v1/batch/orders": 400,
    "/v1/public/time": 20,
    "/v1/public/status": 20,
}

# Account WebSocket write limits per connection per second, by kind of command (see ServerParams).
DEFAULT_WS_RATE_LIMITS: dict[str, int] = {"place": 400, "cancel": 450, "batch": 400, "modify": 400}


class ConfigError(ValueError):
    """Bad configuration; the message names the file and the key."""


@dataclass
class AccountConfig:
    name: str
    api_key: str
    api_secret: str
    balances: dict[str, Decimal] = field(default_factory=dict)
    subaccounts: list[str] = field(default_factory=list)


@dataclass
class MarketParams:
    """The background market of one pair (see replay.exchange.background).

    Its ladder sits from ``spread_bps / 2`` away from the mid outwards, one level every
    ``level_step_bps``; takers cross to a depth drawn from
    ``[taker_min_depth_bps, taker_max_depth_bps]`` away from the mid.

    A taker's amount is ``taker_quantity`` unless ``taker_min_quantity`` or
    ``taker_max_quantity`` is set: then it is drawn uniformly from ``[taker_min_quantity,
    taker_max_quantity]`` (a bound left unset is ``taker_quantity``), floored to the pair's
    ``base_decimals``. A range reaching below a bot's quote (0.001 BTC) leaves some of the
    bot's orders Partially Filled; with neither set (the default) no amount is drawn, so
    existing seeds give the same market as before.
    """

    mid: Decimal
    spread_bps: Decimal = Decimal("30")
    levels: int = 10
    level_quantity: Decimal = Decimal("0.05")
    volatility_bps: Decimal = Decimal("2")
    step_interval_s: float = 1.0
    taker_probability: float = 0.3
    taker_quantity: Decimal = Decimal("0.002")
    level_step_bps: Decimal = Decimal("5")
    taker_min_depth_bps: Decimal = Decimal("5")
    taker_max_depth_bps: Decimal = Decimal("50")
    taker_min_quantity: Decimal | None = None
    taker_max_quantity: Decimal | None = None

    def taker_quantity_range(self) -> tuple[Decimal, Decimal] | None:
        """``(low, high)`` when takers' amounts are drawn, None when every taker is ``taker_quantity``."""
        if self.taker_min_quantity is None and self.taker_max_quantity is None:
            return None
        low = self.taker_min_quantity if self.taker_min_quantity is not None else self.taker_quantity
        high = self.taker_max_quantity if self.taker_max_quantity is not None else self.taker_quantity
        return low, high


@dataclass
class ServerParams:
    engine_latency_s: float = 0.0
    timestamp_window_s: float = 60.0
    max_frame_bytes: int = 65536
    idle_timeout_s: float | None = None
    rate_limit_per_minute_key: int = 2000
    rate_limit_per_minute_ip: int = 1200
    route_limits_per_second: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_ROUTE_LIMITS))
    # VALR's account WebSocket write limits, per connection per second [C-off Postman "Rate
    # limiting": "WebSocket account write ... Place: 400 p/s, Cancel: 450p/s, Batch: 400p/s, Modify:
    # 400p/s"; that they count per connection is the issue's reading, INF].
    ws_rate_limits_per_second: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_WS_RATE_LIMITS))
    reference_currency: str | None = None
    mark_price_interval_s: float = 5.0
    # A GET signed over its path without the query string (what valr-python sends) is accepted
    # and traced (LENIENT_SIGNATURE) by default; true refuses it, as VALR's documentation reads.
    strict_signatures: bool = False
    # What one WebSocket connection may have waiting to be written (characters of JSON); a client
    # that reads slower than that is disconnected (1008, a SLOW_CONSUMER trace record).
    ws_send_queue_bytes: int = 4 * 1024 * 1024


@dataclass
class ExchangeConfig:
    pairs: list[PairSpec]
    accounts: list[AccountConfig]
    market: dict[str, MarketParams]
    server: ServerParams
    source: str

    def pair(self, symbol: str) -> PairSpec:
        for p in self.pairs:
            if p.symbol == symbol:
                return p
        raise KeyError(symbol)

    def account(self, name: str) -> AccountConfig:
        for a in self.accounts:
            if a.name == name:
                return a
        raise KeyError(name)


def _default_pairs() -> list[PairSpec]:
    # BTCZAR limits as in the /v1/public/pairs sample [C-code HB docstring]; ETHZAR's maxima [INF].
    return [
        PairSpec("BTCZAR", "BTC", "ZAR", Decimal("1"), Decimal("0.0001"), Decimal("4"),
                 Decimal("10"), Decimal("1000000"), base_decimals=8),
        PairSpec("ETHZAR", "ETH", "ZAR", Decimal("1"), Decimal("0.001"), Decimal("100"),
                 Decimal("10"), Decimal("1000000"), base_decimals=8),
    ]  # fmt: skip


def _default_market() -> dict[str, MarketParams]:
    return {
        "BTCZAR": MarketParams(mid=Decimal("1500000")),
        "ETHZAR": MarketParams(
            mid=Decimal("60000"), level_quantity=Decimal("1"), taker_quantity=Decimal("0.05")
        ),
    }


def _default_accounts() -> list[AccountConfig]:
    return [
        AccountConfig(
            "demo",
            DEMO_API_KEY,
            DEMO_API_SECRET,
            {"BTC": Decimal("10"), "ETH": Decimal("100"), "ZAR": Decimal("10000000")},
        )
    ]


def default_config() -> ExchangeConfig:
    return ExchangeConfig(_default_pairs(), _default_accounts(), _default_market(), ServerParams(), "<default>")


# --- validation -----------------------------------------------------------------------------


class _V:
    """Typed field readers that raise ConfigError naming the source and the key."""

    def __init__(self, source: str):
        self.source = source

    def err(self, key: str, what: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {what}")

    def table(self, value: Any, key: str) -> dict:
        if not isinstance(value, dict):
            raise self.err(key, f"expected a table, got {_tname(value)}")
        return value

    def keys(
        self, table: Mapping, key: str, allowed: AbstractSet[str], required: AbstractSet[str] = frozenset()
    ) -> None:
        for k in table:
            if k not in allowed:
                raise self.err(_join(key, k), f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for k in sorted(required):
            if k not in table:
                raise self.err(_join(key, k), "missing required key")

    def string(self, value: Any, key: str, nonempty: bool = True) -> str:
        if not isinstance(value, str):
            raise self.err(key, f"expected a string, got {_tname(value)}")
        if nonempty and not value.strip():
            raise self.err(key, "must not be empty")
        return value

    def decimal(self, value: Any, key: str, *, positive: bool = False, nonneg: bool = False) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
            raise self.err(key, f"expected a decimal (string or number), got {_tname(value)}")
        try:
            # A float goes through repr: 0.1 becomes Decimal("0.1"), not its binary expansion.
            d = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
        except InvalidOperation:
            raise self.err(key, f"not a decimal number: {value!r}") from None
        if not d.is_finite():
            raise self.err(key, f"not a finite number: {value!r}")
        if positive and d <= 0:
            raise self.err(key, f"must be positive, got {value!r}")
        if nonneg and d < 0:
            raise self.err(key, f"must not be negative, got {value!r}")
        return d

    def integer(self, value: Any, key: str, *, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.err(key, f"expected an integer, got {_tname(value)}")
        if minimum is not None and value < minimum:
            raise self.err(key, f"must be at least {minimum}, got {value}")
        return value

    def number(self, value: Any, key: str, *, minimum: float | None = None, maximum: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.err(key, f"expected a number, got {_tname(value)}")
        value = float(value)
        if minimum is not None and value < minimum:
            raise self.err(key, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.err(key, f"must be at most {maximum}, got {value}")
        return value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.err(key, f"expected true or false, got {_tname(value)}")
        return value


def _tname(value: Any) -> str:
    return {
        dict: "a table", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
        float: "a float",
    }.get(type(value), type(value).__name__)  # fmt: skip


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


_PAIR_REQUIRED = {"symbol", "base", "quote", "tick_size", "min_base", "min_quote"}
_PAIR_ALLOWED = _PAIR_REQUIRED | {"max_base", "max_quote", "base_decimals", "maker_fee", "taker_fee", "active"}


def _pair(v: _V, raw: Any, key: str) -> PairSpec:
    t = v.table(raw, key)
    v.keys(t, key, _PAIR_ALLOWED, _PAIR_REQUIRED)
    k = lambda name: _join(key, name)  # noqa: E731
    symbol = v.string(t["symbol"], k("symbol"))
    if not re.fullmatch(r"[A-Z0-9]+", symbol):
        raise v.err(k("symbol"), f"expected upper-case letters and digits, got {symbol!r}")
    spec = PairSpec(
        symbol=symbol,
        base=v.string(t["base"], k("base")),
        quote=v.string(t["quote"], k("quote")),
        tick_size=v.decimal(t["tick_size"], k("tick_size"), positive=True),
        min_base=v.decimal(t["min_base"], k("min_base"), nonneg=True),
        max_base=v.decimal(t.get("max_base", "1000000000"), k("max_base"), positive=True),
        min_quote=v.decimal(t["min_quote"], k("min_quote"), nonneg=True),
        max_quote=v.decimal(t.get("max_quote", "1000000000000"), k("max_quote"), positive=True),
        base_decimals=v.integer(t.get("base_decimals", 8), k("base_decimals"), minimum=0),
        maker_fee=v.decimal(t.get("maker_fee", "0"), k("maker_fee")),
        taker_fee=v.decimal(t.get("taker_fee", "0.001"), k("taker_fee")),
        active=v.boolean(t.get("active", True), k("active")),
    )
    if spec.base == spec.quote:
        raise v.err(k("quote"), "base and quote must differ")
    if spec.max_base < spec.min_base:
        raise v.err(k("max_base"), "must not be below min_base")
    if spec.max_quote < spec.min_quote:
        raise v.err(k("max_quote"), "must not be below min_quote")
    return spec


_ACCOUNT_REQUIRED = {"name", "api_key", "api_secret"}
_ACCOUNT_ALLOWED = _ACCOUNT_REQUIRED | {"balances", "subaccounts"}


def _account(v: _V, raw: Any, key: str) -> AccountConfig:
    t = v.table(raw, key)
    v.keys(t, key, _ACCOUNT_ALLOWED, _ACCOUNT_REQUIRED)
    k = lambda name: _join(key, name)  # noqa: E731
    balances_raw = v.table(t.get("balances", {}), k("balances"))
    balances = {
        v.string(cur, k("balances")): v.decimal(amount, k(f"balances.{cur}"), nonneg=True)
        for cur, amount in balances_raw.items()
    }
    subs_raw = t.get("subaccounts", [])
    if not isinstance(subs_raw, list):
        raise v.err(k("subaccounts"), f"expected an array of strings, got {_tname(subs_raw)}")
    subs = [v.string(s, f"{k('subaccounts')}[{i}]") for i, s in enumerate(subs_raw)]
    return AccountConfig(
        name=v.string(t["name"], k("name")),
        api_key=v.string(t["api_key"], k("api_key")),
        api_secret=v.string(t["api_secret"], k("api_secret")),
        balances=balances,
        subaccounts=subs,
    )


_MARKET_FIELDS = {f.name for f in dataclasses.fields(MarketParams)}


def _market(v: _V, raw: Any, key: str) -> MarketParams:
    t = v.table(raw, key)
    v.keys(t, key, _MARKET_FIELDS, {"mid"})
    k = lambda name: _join(key, name)  # noqa: E731
    d = MarketParams(mid=Decimal(1))
    mp = MarketParams(
        mid=v.decimal(t["mid"], k("mid"), positive=True),
        spread_bps=v.decimal(t.get("spread_bps", d.spread_bps), k("spread_bps"), nonneg=True),
        levels=v.integer(t.get("levels", d.levels), k("levels"), minimum=0),
        level_quantity=v.decimal(t.get("level_quantity", d.level_quantity), k("level_quantity"), positive=True),
        volatility_bps=v.decimal(t.get("volatility_bps", d.volatility_bps), k("volatility_bps"), nonneg=True),
        step_interval_s=v.number(t.get("step_interval_s", d.step_interval_s), k("step_interval_s"), minimum=0.001),
        taker_probability=v.number(
            t.get("taker_probability", d.taker_probability), k("taker_probability"), minimum=0, maximum=1
        ),
        taker_quantity=v.decimal(t.get("taker_quantity", d.taker_quantity), k("taker_quantity"), positive=True),
        level_step_bps=v.decimal(t.get("level_step_bps", d.level_step_bps), k("level_step_bps"), nonneg=True),
        taker_min_depth_bps=v.decimal(
            t.get("taker_min_depth_bps", d.taker_min_depth_bps), k("taker_min_depth_bps"), nonneg=True
        ),
        taker_max_depth_bps=v.decimal(
            t.get("taker_max_depth_bps", d.taker_max_depth_bps), k("taker_max_depth_bps"), nonneg=True
        ),
    )
    if mp.taker_max_depth_bps < mp.taker_min_depth_bps:
        raise v.err(k("taker_max_depth_bps"), "must not be below taker_min_depth_bps")
    for name in ("taker_min_quantity", "taker_max_quantity"):
        if name in t:
            setattr(mp, name, v.decimal(t[name], k(name), positive=True))
    quantities = mp.taker_quantity_range()
    if quantities is not None and quantities[1] < quantities[0]:
        bad = "taker_max_quantity" if "taker_max_quantity" in t else "taker_min_quantity"
        raise v.err(k(bad), "the taker amount range is empty: taker_max_quantity (default taker_quantity) "
                    "must not be below taker_min_quantity (default taker_quantity)")
    return mp


_SERVER_FIELDS = {f.name for f in dataclasses.fields(ServerParams)}


def _server(v: _V, raw: Any, key: str) -> ServerParams:
    t = v.table(raw, key)
    v.keys(t, key, _SERVER_FIELDS)
    k = lambda name: _join(key, name)  # noqa: E731
    d = ServerParams()
    routes = dict(d.route_limits_per_second)
    if "route_limits_per_second" in t:
        for route, limit in v.table(t["route_limits_per_second"], k("route_limits_per_second")).items():
            routes[route] = v.integer(limit, k(f"route_limits_per_second.{route}"), minimum=1)
    idle = t.get("idle_timeout_s")
    ws_limits = dict(d.ws_rate_limits_per_second)
    if "ws_rate_limits_per_second" in t:
        for kind, limit in v.table(t["ws_rate_limits_per_second"], k("ws_rate_limits_per_second")).items():
            if kind not in DEFAULT_WS_RATE_LIMITS:
                raise v.err(k(f"ws_rate_limits_per_second.{kind}"),
                            f"unknown kind: expected {', '.join(DEFAULT_WS_RATE_LIMITS)}")
            ws_limits[kind] = v.integer(limit, k(f"ws_rate_limits_per_second.{kind}"), minimum=1)
    ref = t.get("reference_currency")
    return ServerParams(
        engine_latency_s=v.number(t.get("engine_latency_s", d.engine_latency_s), k("engine_latency_s"), minimum=0),
        timestamp_window_s=v.number(
            t.get("timestamp_window_s", d.timestamp_window_s), k("timestamp_window_s"), minimum=0
        ),
        max_frame_bytes=v.integer(t.get("max_frame_bytes", d.max_frame_bytes), k("max_frame_bytes"), minimum=1),
        idle_timeout_s=None if idle is None else v.number(idle, k("idle_timeout_s"), minimum=0.001),
        rate_limit_per_minute_key=v.integer(
            t.get("rate_limit_per_minute_key", d.rate_limit_per_minute_key), k("rate_limit_per_minute_key"), minimum=1
        ),
        rate_limit_per_minute_ip=v.integer(
            t.get("rate_limit_per_minute_ip", d.rate_limit_per_minute_ip), k("rate_limit_per_minute_ip"), minimum=1
        ),
        route_limits_per_second=routes,
        ws_rate_limits_per_second=ws_limits,
        reference_currency=None if ref is None else v.string(ref, k("reference_currency")),
        mark_price_interval_s=v.number(t.get("mark_price_interval_s", d.mark_price_interval_s),
                                       k("mark_price_interval_s"), minimum=0.001),
        strict_signatures=v.boolean(t.get("strict_signatures", d.strict_signatures), k("strict_signatures")),
        ws_send_queue_bytes=v.integer(t.get("ws_send_queue_bytes", d.ws_send_queue_bytes), k("ws_send_queue_bytes"),
                                      minimum=1),
    )


def _array_of_tables(v: _V, raw: Any, key: str) -> list:
    if not isinstance(raw, list):
        raise v.err(key, f"expected an array of tables ([[{key}]]), got {_tname(raw)}")
    return raw


def config_from_dict(data: dict, source: str) -> ExchangeConfig:
    """Build and validate a config from a parsed TOML table; errors name ``source``."""
    v = _V(source)
    v.table(data, "<top level>")
    v.keys(data, "", {"server", "pairs", "accounts", "market"})

    server = _server(v, data["server"], "server") if "server" in data else ServerParams()

    if "pairs" in data:
        pairs = [_pair(v, p, f"pairs[{i}]") for i, p in enumerate(_array_of_tables(v, data["pairs"], "pairs"))]
        if not pairs:
            raise v.err("pairs", "at least one pair is required")
    else:
        pairs = _default_pairs()
    seen: set[str] = set()
    for i, p in enumerate(pairs):
        if p.symbol in seen:
            raise v.err(f"pairs[{i}].symbol", f"duplicate pair {p.symbol!r}")
        seen.add(p.symbol)

    if "accounts" in data:
        raw_accounts = _array_of_tables(v, data["accounts"], "accounts")
        accounts = [_account(v, a, f"accounts[{i}]") for i, a in enumerate(raw_accounts)]
    else:
        accounts = _default_accounts()
    names: set[str] = set()
    keys: set[str] = set()
    for i, a in enumerate(accounts):
        if a.name in names:
            raise v.err(f"accounts[{i}].name", f"duplicate account name {a.name!r}")
        if a.api_key in keys:
            raise v.err(f"accounts[{i}].api_key", "duplicate api_key")
        names.add(a.name)
        keys.add(a.api_key)

    if "market" in data:
        raw_market = v.table(data["market"], "market")
        market = {}
        for symbol, params in raw_market.items():
            if symbol not in seen:
                raise v.err(f"market.{symbol}", f"no such pair (pairs: {', '.join(sorted(seen))})")
            market[symbol] = _market(v, params, f"market.{symbol}")
    else:
        market = {s: mp for s, mp in _default_market().items() if s in seen}

    return ExchangeConfig(pairs=pairs, accounts=accounts, market=market, server=server, source=source)


def load_config(path: str | Path) -> ExchangeConfig:
    """Read and validate a TOML config file."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line N, column M)".
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from None
    return config_from_dict(data, str(path))
