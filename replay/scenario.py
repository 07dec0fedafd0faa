"""Scenario files: TOML describing one race experiment (see scenarios/README.md).

``load_scenario(path)`` reads and validates a file; a bad file raises :class:`ScenarioError`
whose message names the file, the key (a dotted path such as ``perturb[2].match.type``)
and what is wrong.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Mapping

from .latency import SpecError
from .latency import parse_duration as _parse_duration
from .schedule import DeliverySchedule

__all__ = [
    "BotSpec", "ConnectorVerdicts", "Scenario", "ScenarioError", "PolicyVerdicts", "load_scenario", "loads_scenario",
    "parse_duration",
]


class ScenarioError(SpecError):
    """A bad scenario file: ``str(err)`` is ``"<file>: <key>: <problem>"``."""

    def __init__(self, path: str | Path | None, key: str | None, problem: str):
        self.path = str(path) if path is not None else None
        SpecError.__init__(self, key, problem)
        parts = [p for p in (self.path, key, problem) if p]
        self.args = (": ".join(parts),)

    def __str__(self) -> str:
        return self.args[0]


def parse_duration(value: Any, key: str | None = None) -> float:
    """Seconds from ``"250ms"``, ``"5s"``, ``"1m"`` or a number of seconds; :class:`SpecError`
    (naming ``key``) otherwise. The same spelling is used everywhere in a scenario."""
    return _parse_duration(value, key)


POLICY_KINDS = ("naive", "age-guard", "ignore", "reconcile")
_CONNECTOR_RE = CONNECTOR_SPEC = re.compile(r"^(hummingbot|(hummingbot:)?[A-Za-z_][\w.]*:[A-Za-z_][\w.]*)$")
HUMMINGBOT_KEYS = ("urls",)


def parse_policy_name(value: Any, key: str = "bot.policy") -> str:
    """Validate ``naive | age-guard:S | ignore | reconcile`` (S a duration); returns it unchanged."""
    if not isinstance(value, str):
        raise SpecError(key, f"expected a policy name, got {type(value).__name__}")
    kind, colon, arg = value.partition(":")
    if kind not in POLICY_KINDS:
        raise SpecError(key, f"unknown policy {value!r}: expected naive, age-guard:S, ignore or reconcile")
    if kind == "age-guard":
        if not colon or not arg:
            raise SpecError(key, f"policy {value!r} needs an age: age-guard:S, e.g. age-guard:2s")
        parse_duration(arg, key)
    elif colon:
        raise SpecError(key, f"policy {kind!r} takes no argument (got {value!r})")
    return value


class PolicyVerdicts(dict):
    """policy -> check names expected to be violated. ``get`` of an ``age-guard:S`` policy
    falls back to an ``age-guard`` entry when there is none for that exact age."""

    def get(self, policy: str, default: Any = None) -> Any:
        if policy in self:
            return self[policy]
        kind = policy.partition(":")[0]
        if kind in self:
            return self[kind]
        return default


@dataclass
class BotSpec:
    connector: str = "reference"
    policy: str = "naive"
    pair: str = "BTCZAR"
    account: str = "demo"
    order_refresh_time_s: float = 1.0
    bid_spread: Decimal = Decimal("0.001")
    ask_spread: Decimal = Decimal("0.001")
    order_amount: Decimal = Decimal("0.001")
    order_levels: int = 1
    #: seconds PMM waits before quoting again after one of its orders filled (Hummingbot's default: 60)
    filled_order_delay_s: float = 60.0
    #: connector extras: ``[bot.options]``, plus unknown ``[bot]`` keys for a non-reference connector
    options: dict[str, Any] = field(default_factory=dict)
    #: ``[bot.hummingbot]``: settings of the Hummingbot harness (``urls``: URL constants to redirect)
    hummingbot: dict[str, Any] = field(default_factory=dict)


@dataclass
class ConnectorVerdicts:
    """``[expect.connector."C"]``: what a named connector is expected to violate (``violated``), and
    per policy for a connector that takes our policies (``[expect.connector."C".policy.P]``)."""

    violated: list[str] | None = None
    policy: PolicyVerdicts = field(default_factory=PolicyVerdicts)


@dataclass
class Scenario:
    path: Path
    name: str
    description: str = ""
    duration_s: float = 60.0
    seed: int = 0
    exchange: dict[str, Any] | None = None
    market: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    perturb: list[dict[str, Any]] = field(default_factory=list)
    bot: BotSpec = field(default_factory=BotSpec)
    expect: dict[str, Any] = field(default_factory=dict)
    expected_violations: PolicyVerdicts = field(default_factory=PolicyVerdicts)
    expected_by_connector: dict[str, ConnectorVerdicts] = field(default_factory=dict)

    def expected_for(self, connector: str, policy: str | None, *, takes_policy: bool,
                     expect_hold: bool = False) -> list[str]:
        """The checks a run is expected to violate, by what ran. Most specific first:
        ``[expect.connector."C".policy.P]``, ``[expect.connector."C"]``, then ``[expect.policy.P]``
        for a connector that takes our policies (the reference connector, our Hummingbot one);
        else none: the base ``[expect]``, every check holds. ``expect_hold`` always asks for that."""
        if expect_hold:
            return []
        entry = self.expected_by_connector.get(connector)
        if entry is not None:
            if takes_policy and policy is not None and entry.policy.get(policy) is not None:
                return list(entry.policy.get(policy))
            if entry.violated is not None:
                return list(entry.violated)
        if takes_policy and policy is not None:
            return list(self.expected_violations.get(policy, []))
        return []

    def schedule(self, seed: int | None = None, start: float | None = None) -> DeliverySchedule:
        """A fresh delivery schedule for one run (the scenario's seed unless ``seed`` is given)."""
        return DeliverySchedule.from_spec(self.latency, self.perturb, self.seed if seed is None else seed, start)

    def resolve(self, relative: str | Path) -> Path:
        """A path named in the file: absolute as is, else relative to the scenario file's
        directory, always (``../captures/x.jsonl``), whatever the current directory."""
        return resolve_beside(self.path, relative)


def resolve_beside(scenario_path: Path, relative: str | Path) -> Path:
    """``relative`` as a scenario file at ``scenario_path`` means it (:meth:`Scenario.resolve`)."""
    p = Path(relative)
    return p if p.is_absolute() else scenario_path.parent / p


# --- loading -------------------------------------------------------------------------------

TOP_KEYS = ("scenario", "exchange", "market", "latency", "perturb", "bot", "expect")
SCENARIO_KEYS = ("name", "description", "duration", "seed")
MARKET_KEYS = ("pairs", "capture")
BOT_KEYS = (
    "connector", "policy", "pair", "account", "order_refresh_time", "bid_spread", "ask_spread",
    "order_amount", "order_levels", "filled_order_delay", "options", "hummingbot",
)
# [expect] keys the scenario itself interprets -> (kind, name stored in Scenario.expect).
# Every other key is a check threshold (replay.checks.KNOWN_THRESHOLDS), kept as written.
EXPECT_KEYS: dict[str, tuple[str, str]] = {
    "open_orders_slack": ("count", "open_orders_slack"),
    "grace": ("duration", "grace_s"),
    "place_resolve_within": ("duration", "place_resolve_s"),
    "cancel_resolve_within": ("duration", "cancel_resolve_s"),
    "requote_within": ("duration", "requote_bound_s"),
    # spelling of the brief; the check is called final_state_exit (true = none allowed)
    "no_final_state_exit": ("threshold", "final_state_exit"),
}
# Used when replay.checks cannot be imported.
_FALLBACK_THRESHOLDS = frozenset({
    "max_open_orders", "duplicate_orders", "nothing_open_after_shutdown", "false_cancels", "orphans_at_end",
    "orphans", "final_state_exit",
})


def _known_thresholds() -> tuple[frozenset[str], tuple[str, ...] | None]:
    """(threshold keys, check names) from replay.checks, the module that judges them."""
    try:
        from . import checks
    except ImportError:  # pragma: no cover - checks is part of the package
        return _FALLBACK_THRESHOLDS, None
    return frozenset(getattr(checks, "KNOWN_THRESHOLDS", _FALLBACK_THRESHOLDS)), getattr(checks, "CHECK_NAMES", None)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file. Raises :class:`ScenarioError` for a bad file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(p, None, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(p, None, f"cannot read: {exc}") from None
    return loads_scenario(text, p)


def loads_scenario(text: str, path: str | Path = "<string>") -> Scenario:
    """Parse scenario TOML text; ``path`` names it in errors and anchors relative paths."""
    p = Path(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(p, None, f"invalid TOML: {exc}") from None
    return scenario_from_doc(doc, p)


def scenario_from_doc(doc: dict[str, Any], path: str | Path = "<string>") -> Scenario:
    """Validate an already parsed scenario document (what ``tomllib`` gives for a file); ``path``
    names it in errors and anchors relative paths. The explorer builds its variants this way."""
    p = Path(path)
    try:
        return _build(doc, p)
    except ScenarioError:
        raise
    except SpecError as exc:
        raise ScenarioError(p, exc.key, exc.problem) from None


def _table(doc: Mapping[str, Any], key: str, path: str | None = None) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise SpecError(path or key, f"expected a table ([{path or key}]), got {type(value).__name__}")
    return value


def _unknown(table: Mapping[str, Any], allowed: tuple[str, ...] | Mapping[str, Any], prefix: str) -> None:
    for name in table:
        if name not in allowed:
            raise SpecError(f"{prefix}.{name}" if prefix else name,
                            f"unknown key: expected one of {', '.join(allowed)}")


def _str(value: Any, key: str, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str) or (not empty_ok and not value):
        raise SpecError(key, f"expected a {'' if empty_ok else 'non-empty '}string, got {value!r}")
    return value


def _int(value: Any, key: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(key, f"expected a whole number, got {value!r}")
    if value < minimum:
        raise SpecError(key, f"must be at least {minimum}, got {value}")
    return value


def _decimal(value: Any, key: str, *, positive: bool = False) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise SpecError(key, f"expected a number or a decimal string, got {value!r}")
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise SpecError(key, f"expected a number or a decimal string, got {value!r}") from None
    if not d.is_finite() or d < 0 or (positive and d == 0):
        raise SpecError(key, f"must be {'more than' if positive else 'at least'} 0, got {value!r}")
    return d


def _build(doc: dict[str, Any], path: Path) -> Scenario:
    _unknown(doc, TOP_KEYS, "")

    head = _table(doc, "scenario")
    _unknown(head, SCENARIO_KEYS, "scenario")
    name = _str(head.get("name", path.stem), "scenario.name")
    description = _str(head.get("description", ""), "scenario.description", empty_ok=True)
    duration_s = parse_duration(head.get("duration", "60s"), "scenario.duration")
    if duration_s <= 0:
        raise SpecError("scenario.duration", "must be more than 0")
    seed = _int(head.get("seed", 0), "scenario.seed")

    exchange = None
    if "exchange" in doc:
        exchange = _table(doc, "exchange")
        _check_exchange(exchange, path)

    bot = _build_bot(_table(doc, "bot"))
    _check_pair(bot.pair, exchange)

    market = dict(_table(doc, "market"))
    _unknown(market, MARKET_KEYS, "market")
    if "pairs" in market:
        pairs = market["pairs"]
        if not isinstance(pairs, list) or not pairs:
            raise SpecError("market.pairs", f"expected a non-empty list of pair symbols, got {pairs!r}")
        for j, pair in enumerate(pairs):
            _str(pair, f"market.pairs[{j}]")
    elif "capture" not in market:
        market["pairs"] = [bot.pair]
    if "capture" in market:
        capture = resolve_beside(path, _str(market["capture"], "market.capture"))
        if not capture.is_file():
            problem = "is not a file" if capture.exists() else "no such file"
            raise SpecError("market.capture", f"{capture}: {problem} (a relative path is relative to the "
                            "scenario file's directory)")

    latency = _table(doc, "latency")
    perturb = doc.get("perturb", [])
    if not isinstance(perturb, list):
        raise SpecError("perturb", "expected an array of tables: write [[perturb]] for each entry")
    # Validate [latency] and [[perturb]] now, so a bad file fails at load, naming the key.
    DeliverySchedule.from_spec(latency, perturb, seed)

    expect, verdicts, by_connector = _build_expect(_table(doc, "expect"))

    return Scenario(
        path=path,
        name=name,
        description=description,
        duration_s=duration_s,
        seed=seed,
        exchange=exchange,
        market=market,
        latency=latency,
        perturb=perturb,
        bot=bot,
        expect=expect,
        expected_violations=verdicts,
        expected_by_connector=by_connector,
    )


def _check_exchange(exchange: dict[str, Any], path: Path) -> None:
    """Validate [exchange] with replay.config when that module is present."""
    try:
        from .config import config_from_dict
    except ImportError:
        return
    try:
        config_from_dict(exchange, str(path))
    except SpecError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        message = str(exc)
        # config_from_dict says "<source>: <key>: <problem>"; re-anchor its key under [exchange].
        prefix = f"{path}: "
        if message.startswith(prefix):
            inner, sep, problem = message[len(prefix):].partition(": ")
            if sep and inner and " " not in inner:
                raise SpecError(f"exchange.{inner}", problem) from None
            message = message[len(prefix):]
        raise SpecError("exchange", message) from None


def _check_pair(pair: str, exchange: dict[str, Any] | None) -> None:
    """The bot's pair must be one the exchange lists (``[exchange]``, else the built-in default)."""
    from .config import config_from_dict, default_config

    try:
        config = config_from_dict(exchange, "<scenario>") if exchange is not None else default_config()
    except Exception:  # [exchange] itself is judged (and named) by _check_exchange
        return
    symbols = [p.symbol for p in config.pairs]
    if pair not in symbols:
        close = difflib.get_close_matches(pair, symbols, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SpecError("bot.pair", f"unknown pair {pair!r}{hint}: the exchange has {', '.join(symbols)}")


def _build_bot(table: dict[str, Any]) -> BotSpec:
    bot = BotSpec()
    connector = _str(table.get("connector", bot.connector), "bot.connector")
    if connector != "reference" and (not _CONNECTOR_RE.match(connector)
                                     or (connector.startswith("hummingbot:") and connector.count(":") != 2)):
        raise SpecError("bot.connector", "expected 'reference', 'module:attr', 'hummingbot' or "
                        f"'hummingbot:package.module:ClassName', got {connector!r}")
    bot.connector = connector
    harness = table.get("hummingbot", {})
    if not isinstance(harness, dict):
        raise SpecError("bot.hummingbot", f"expected a table, got {type(harness).__name__}")
    _unknown(harness, HUMMINGBOT_KEYS, "bot.hummingbot")
    urls = harness.get("urls", {})
    if not isinstance(urls, dict):
        raise SpecError("bot.hummingbot.urls", f"expected a table of 'module:ATTR' = target, got {urls!r}")
    for target, value in urls.items():
        _str(value, f"bot.hummingbot.urls.{target}")
    if harness and not connector.startswith("hummingbot"):
        raise SpecError("bot.hummingbot", "only a Hummingbot connector (connector = 'hummingbot...') takes it")
    bot.hummingbot = dict(harness)
    options = table.get("options", {})
    if not isinstance(options, dict):
        raise SpecError("bot.options", f"expected a table of connector options, got {type(options).__name__}")
    bot.options = dict(options)
    for name, value in table.items():
        if name in BOT_KEYS:
            continue
        if connector == "reference":
            raise SpecError(f"bot.{name}", f"unknown key: expected one of {', '.join(BOT_KEYS)} "
                            "(connector-specific settings go in [bot.options])")
        bot.options.setdefault(name, value)
    bot.policy = parse_policy_name(table.get("policy", bot.policy), "bot.policy")
    bot.pair = _str(table.get("pair", bot.pair), "bot.pair")
    bot.account = _str(table.get("account", bot.account), "bot.account")
    refresh = parse_duration(table.get("order_refresh_time", bot.order_refresh_time_s), "bot.order_refresh_time")
    if refresh <= 0:
        raise SpecError("bot.order_refresh_time", "must be more than 0")
    bot.order_refresh_time_s = refresh
    bot.bid_spread = _decimal(table.get("bid_spread", bot.bid_spread), "bot.bid_spread")
    bot.ask_spread = _decimal(table.get("ask_spread", bot.ask_spread), "bot.ask_spread")
    bot.order_amount = _decimal(table.get("order_amount", bot.order_amount), "bot.order_amount", positive=True)
    bot.order_levels = _int(table.get("order_levels", bot.order_levels), "bot.order_levels", minimum=1)
    bot.filled_order_delay_s = parse_duration(table.get("filled_order_delay", bot.filled_order_delay_s),
                                              "bot.filled_order_delay")
    return bot


def _violated_list(entry: dict[str, Any], key: str, check_names: tuple[str, ...] | None) -> list[str]:
    violated = entry.get("violated", [])
    if not isinstance(violated, list):
        raise SpecError(f"{key}.violated", f"expected a list of check names, got {violated!r}")
    names = [_str(v, f"{key}.violated[{j}]") for j, v in enumerate(violated)]
    for j, check in enumerate(names):
        if check_names is not None and check not in check_names:
            raise SpecError(f"{key}.violated[{j}]",
                            f"unknown check {check!r}: expected one of {', '.join(check_names)}")
    return names


def _policy_verdicts(value: Any, key: str, check_names: tuple[str, ...] | None) -> PolicyVerdicts:
    """``[expect.policy.P] violated = [...]`` tables (also under ``[expect.connector."C"]``)."""
    if not isinstance(value, dict):
        raise SpecError(key, f"expected tables like [{key}.naive]")
    verdicts = PolicyVerdicts()
    for policy, entry in value.items():
        pkey = f"{key}.{policy}"
        if policy != "age-guard":
            parse_policy_name(policy, pkey)
        if not isinstance(entry, dict):
            raise SpecError(pkey, f"expected a table with violated = [...], got {type(entry).__name__}")
        _unknown(entry, ("violated",), pkey)
        verdicts[policy] = _violated_list(entry, pkey, check_names)
    return verdicts


def _connector_verdicts(value: Any, key: str, check_names: tuple[str, ...] | None) -> dict[str, ConnectorVerdicts]:
    """``[expect.connector."C"]``: ``violated = [...]`` for that connector, and/or ``[... .policy.P]``."""
    if not isinstance(value, dict):
        raise SpecError(key, f'expected tables like [{key}."mymod:buggy"]')
    out: dict[str, ConnectorVerdicts] = {}
    for connector, entry in value.items():
        ckey = f"{key}.{connector}"
        if connector != "reference" and not _CONNECTOR_RE.match(connector):
            raise SpecError(ckey, "expected a connector as --connector names it: 'reference', 'module:attr', "
                            "'hummingbot' or 'hummingbot:package.module:ClassName'")
        if not isinstance(entry, dict):
            raise SpecError(ckey, f"expected a table with violated = [...], got {type(entry).__name__}")
        _unknown(entry, ("violated", "policy"), ckey)
        out[connector] = ConnectorVerdicts(
            violated=_violated_list(entry, ckey, check_names) if "violated" in entry else None,
            policy=_policy_verdicts(entry["policy"], f"{ckey}.policy", check_names) if "policy" in entry
            else PolicyVerdicts(),
        )
    return out


def _build_expect(table: dict[str, Any]) -> tuple[dict[str, Any], PolicyVerdicts, dict[str, ConnectorVerdicts]]:
    thresholds, check_names = _known_thresholds()
    expect: dict[str, Any] = {}
    verdicts = PolicyVerdicts()
    by_connector: dict[str, ConnectorVerdicts] = {}
    for name, value in table.items():
        key = f"expect.{name}"
        if name == "policy":
            verdicts = _policy_verdicts(value, key, check_names)
            continue
        if name == "connector":
            by_connector = _connector_verdicts(value, key, check_names)
            continue
        if name in EXPECT_KEYS:
            kind, stored = EXPECT_KEYS[name]
        elif name in thresholds:
            kind, stored = "threshold", name
        else:
            allowed = sorted({*EXPECT_KEYS, *thresholds, "policy", "connector"})
            raise SpecError(key, f"unknown key: expected one of {', '.join(allowed)}")
        if kind == "count":
            expect[stored] = _int(value, key)
        elif kind == "duration":
            expect[stored] = parse_duration(value, key)
        else:  # a check threshold: true (none allowed), false (not judged) or a number >= 0
            if not isinstance(value, bool) and (
                not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0
            ):
                raise SpecError(key, f"expected true, false or a number >= 0, got {value!r}")
            expect[stored] = value
    return expect, verdicts, by_connector
