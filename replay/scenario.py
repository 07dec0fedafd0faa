"""Scenario files: TOML describing one race experiment (see scenarios/README.md).

``load_scenario(path)`` reads and validates a file; a bad file raises :class:`ScenarioError`
whose message names the file, the key (a dotted path such as ``perturb[2].match.type``)
and what is wrong.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Mapping

from .latency import SpecError
from .latency import parse_duration as _parse_duration
from .schedule import DeliverySchedule

__all__ = [
    "BotSpec", "BotVerdicts", "ConnectorVerdicts", "Scenario", "ScenarioError", "PolicyVerdicts", "load_scenario",
    "loads_scenario",
    "parse_duration", "parse_duration_option",
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


def parse_duration_option(value: Any, key: str | None = "--duration") -> float:
    """A run's length as the scenario's ``duration`` spells it (``"60s"``, ``"10m"``, ``"6h"``, a number of
    seconds, also as a string from a command line): more than 0, else :class:`SpecError` naming ``key``."""
    seconds = parse_duration(value, key)
    if seconds <= 0:
        raise SpecError(key, f"bad duration {value!r}: must be more than 0")
    return seconds


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


#: a bot's name: what [expect.bot.NAME], table columns and the JSON call it
BOT_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
#: the name of the bot of a file with one ``[bot]`` table (and no ``name``)
SINGLE_BOT_NAME = "bot"


@dataclass
class BotSpec:
    #: ``[bot] name`` / ``[[bot]] name``: ``bot`` for a single ``[bot]`` table, ``bot1``, ``bot2``, ... in ``[[bot]]``
    name: str = SINGLE_BOT_NAME
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
class BotVerdicts:
    """``[expect.bot.NAME]``: what one bot of the scenario is expected to violate (``violated``, and per
    policy or connector as under ``[expect]``), and ``[expect]`` keys that apply to that bot only."""

    violated: list[str] | None = None
    policy: PolicyVerdicts = field(default_factory=PolicyVerdicts)
    connector: dict[str, ConnectorVerdicts] = field(default_factory=dict)
    #: thresholds and check parameters for this bot, over the scenario's ``[expect]`` (stored as ``Scenario.expect``)
    expect: dict[str, Any] = field(default_factory=dict)


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
    #: ``[[ordering]]`` entries as written (validated at load; the schedule parses them)
    ordering: list[dict[str, Any]] = field(default_factory=list)
    bot: BotSpec = field(default_factory=BotSpec)
    expect: dict[str, Any] = field(default_factory=dict)
    expected_violations: PolicyVerdicts = field(default_factory=PolicyVerdicts)
    expected_by_connector: dict[str, ConnectorVerdicts] = field(default_factory=dict)
    #: ``run --duration X`` as given, when it overrode the file's ``duration`` (the reproduce command repeats it)
    duration_override: str | None = None
    #: the bots after the first (``[[bot]]``); :attr:`bots` is every bot, :attr:`bot` the first
    more_bots: list[BotSpec] = field(default_factory=list)
    #: ``run --connector C`` / ``--policy P`` for a scenario with several bots: every bot runs it (:meth:`running`)
    connector_override: str | None = None
    policy_override: str | None = None
    #: ``[expect.bot.NAME]`` by bot name
    expected_by_bot: dict[str, BotVerdicts] = field(default_factory=dict)

    @property
    def bots(self) -> list[BotSpec]:
        """Every bot of the scenario, in file order: ``bot`` (the first) and ``more_bots``."""
        return [self.bot, *self.more_bots]

    @property
    def multi_bot(self) -> bool:
        """Whether several bots share the exchange (``[[bot]]`` with more than one entry)."""
        return bool(self.more_bots)

    def running(self, connector: str | None = None, policy: str | None = None) -> Scenario:
        """This scenario with every bot running ``connector`` and/or ``policy`` instead of its own (what ``run
        --connector`` / ``--policy`` mean for a scenario with several bots); the bots keep the file's settings,
        so a bot's plain ``[expect.bot.NAME] violated`` applies only when it runs them."""
        return replace(self, connector_override=connector or self.connector_override,
                       policy_override=policy or self.policy_override)

    def bot_named(self, name: str) -> BotSpec:
        """The bot called ``name`` (KeyError when there is none)."""
        for bot in self.bots:
            if bot.name == name:
                return bot
        raise KeyError(name)

    def expect_for(self, bot: BotSpec | None = None) -> dict[str, Any]:
        """``[expect]`` as it applies to ``bot`` (default: the first): the scenario's, overridden by the keys of
        ``[expect.bot.NAME]``."""
        entry = self.expected_by_bot.get((bot or self.bot).name)
        return {**self.expect, **entry.expect} if entry is not None else dict(self.expect)

    def with_duration(self, value: Any, key: str = "--duration") -> Scenario:
        """This scenario with ``duration_s`` replaced by ``value`` (``"90s"``, ``"10m"``, ``"6h"``, or seconds),
        remembered in ``duration_override`` so a reproduce command repeats it. :class:`SpecError` naming ``key``
        for a bad value."""
        seconds = parse_duration_option(value, key)
        return replace(self, duration_s=seconds, duration_override=str(value).strip())

    def expected_for(self, connector: str, policy: str | None, *, takes_policy: bool,
                     expect_hold: bool = False, bot: BotSpec | str | None = None) -> list[str]:
        """The checks a run of ``bot`` (default: the first bot) is expected to violate, by what ran. Most
        specific first: that bot's own ``[expect.bot.NAME]`` (``.connector."C".policy.P``, ``.connector."C"``,
        ``.policy.P`` for a connector that takes our policies, then its ``violated`` when the bot runs the
        connector and policy the file gives it); then the scenario's
        ``[expect.connector."C".policy.P]``, ``[expect.connector."C"]``, then ``[expect.policy.P]`` for a
        connector that takes our policies (the reference connector, our Hummingbot one); else none: the base
        ``[expect]``, every check holds. ``expect_hold`` always asks for that."""
        if expect_hold:
            return []
        spec = self.bot_named(bot) if isinstance(bot, str) else (bot or self.bot)
        own = self.expected_by_bot.get(spec.name)
        if own is not None:
            found = _verdict(own.connector, own.policy, connector, policy, takes_policy)
            if found is not None:
                return found
            as_in_file = connector == spec.connector and (not takes_policy or policy in (None, spec.policy))
            if own.violated is not None and as_in_file:
                return list(own.violated)
        return _verdict(self.expected_by_connector, self.expected_violations, connector, policy, takes_policy) or []

    def schedule(self, seed: int | None = None, start: float | None = None) -> DeliverySchedule:
        """A fresh delivery schedule for one run (the scenario's seed unless ``seed`` is given)."""
        return DeliverySchedule.from_spec(self.latency, self.perturb, self.seed if seed is None else seed, start,
                                          ordering=self.ordering)

    def resolve(self, relative: str | Path) -> Path:
        """A path named in the file: absolute as is, else relative to the scenario file's
        directory, always (``../captures/x.jsonl``), whatever the current directory."""
        return resolve_beside(self.path, relative)


def _verdict(by_connector: Mapping[str, ConnectorVerdicts], by_policy: PolicyVerdicts, connector: str,
             policy: str | None, takes_policy: bool) -> list[str] | None:
    """The most specific of ``connector."C".policy.P``, ``connector."C"``, ``policy.P`` (the last two with our
    policies only); None when none of them is given."""
    entry = by_connector.get(connector)
    if entry is not None:
        if takes_policy and policy is not None and entry.policy.get(policy) is not None:
            return list(entry.policy.get(policy))
        if entry.violated is not None:
            return list(entry.violated)
    if takes_policy and policy is not None and by_policy.get(policy) is not None:
        return list(by_policy.get(policy))
    return None


def resolve_beside(scenario_path: Path, relative: str | Path) -> Path:
    """``relative`` as a scenario file at ``scenario_path`` means it (:meth:`Scenario.resolve`)."""
    p = Path(relative)
    return p if p.is_absolute() else scenario_path.parent / p


# --- loading -------------------------------------------------------------------------------

TOP_KEYS = ("scenario", "exchange", "market", "latency", "perturb", "ordering", "bot", "expect")
SCENARIO_KEYS = ("name", "description", "duration", "seed")
MARKET_KEYS = ("pairs", "capture")
BOT_KEYS = (
    "name", "connector", "policy", "pair", "account", "order_refresh_time", "bid_spread", "ask_spread",
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

    bots, exchange = _build_bots(doc.get("bot", {}), exchange)
    bot = bots[0]

    market = dict(_table(doc, "market"))
    _unknown(market, MARKET_KEYS, "market")
    if "pairs" in market:
        pairs = market["pairs"]
        if not isinstance(pairs, list) or not pairs:
            raise SpecError("market.pairs", f"expected a non-empty list of pair symbols, got {pairs!r}")
        for j, pair in enumerate(pairs):
            _str(pair, f"market.pairs[{j}]")
    elif "capture" not in market:
        market["pairs"] = list(dict.fromkeys(b.pair for b in bots))
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
    ordering = doc.get("ordering", [])
    if not isinstance(ordering, list):
        raise SpecError("ordering", "expected an array of tables: write [[ordering]] for each entry")
    # Validate [latency], [[perturb]] and [[ordering]] now, so a bad file fails at load, naming the key.
    DeliverySchedule.from_spec(latency, perturb, seed, ordering=ordering)

    expect, verdicts, by_connector, by_bot = _build_expect(_table(doc, "expect"), bots)

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
        ordering=ordering,
        bot=bot,
        expect=expect,
        expected_violations=verdicts,
        expected_by_connector=by_connector,
        more_bots=bots[1:],
        expected_by_bot=by_bot,
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


def _exchange_config(exchange: dict[str, Any] | None) -> Any:
    """The exchange config the scenario runs on, or None when ``[exchange]`` itself is bad (judged, and named,
    by _check_exchange)."""
    from .config import config_from_dict, default_config

    try:
        return config_from_dict(exchange, "<scenario>") if exchange is not None else default_config()
    except Exception:
        return None


def _check_pair(pair: str, config: Any, key: str = "bot.pair") -> None:
    """The bot's pair must be one the exchange lists (``[exchange]``, else the built-in default)."""
    if config is None:
        return
    symbols = [p.symbol for p in config.pairs]
    if pair not in symbols:
        close = difflib.get_close_matches(pair, symbols, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SpecError(key, f"unknown pair {pair!r}{hint}: the exchange has {', '.join(symbols)}")


def bot_account_credentials(account: str) -> tuple[str, str]:
    """The API key and secret of an account a ``[[bot]]`` file gets without declaring it: fixed, 64 hex digits
    each, derived from the account's name (``demo`` keeps replay.config's DEMO_API_KEY / DEMO_API_SECRET)."""
    from .config import DEMO_API_KEY, DEMO_API_SECRET

    if account == "demo":
        return DEMO_API_KEY, DEMO_API_SECRET
    key = hashlib.sha256(f"valr-replay account {account} api key".encode()).hexdigest()
    secret = hashlib.sha256(f"valr-replay account {account} api secret".encode()).hexdigest()
    return key, secret


def _bot_accounts(bots: list[BotSpec]) -> list[dict[str, Any]]:
    """``[[exchange.accounts]]`` for a ``[[bot]]`` file that declares none: one account per bot, with the
    default demo account's balances."""
    from .config import default_config

    balances = {asset: str(amount) for asset, amount in default_config().accounts[0].balances.items()}
    out = []
    for bot in bots:
        key, secret = bot_account_credentials(bot.account)
        out.append({"name": bot.account, "api_key": key, "api_secret": secret, "balances": dict(balances)})
    return out


def _build_bots(value: Any, exchange: dict[str, Any] | None) -> tuple[list[BotSpec], dict[str, Any] | None]:
    """``[bot]`` (one bot, as ever) or ``[[bot]]`` (several on one exchange). Returns the bots and the exchange
    table: a ``[[bot]]`` file whose ``[exchange]`` declares no ``accounts`` gets one account per bot."""
    if isinstance(value, dict):
        bots = [_build_bot(value)]
        array = False
    elif isinstance(value, list):
        if not value:
            raise SpecError("bot", "an empty [[bot]] array: give at least one [[bot]] table")
        bots = []
        for i, entry in enumerate(value):
            if not isinstance(entry, dict):
                raise SpecError(f"bot[{i}]", f"expected a table ([[bot]]), got {type(entry).__name__}")
            bots.append(_build_bot(entry, f"bot[{i}]", f"bot{i + 1}", array=True))
        array = True
    else:
        raise SpecError("bot", f"expected a table ([bot]) or an array of tables ([[bot]]), got {type(value).__name__}")
    keys = ["bot"] if not array else [f"bot[{i}]" for i in range(len(bots))]
    names: dict[str, int] = {}
    accounts: dict[str, int] = {}
    for i, bot in enumerate(bots):
        if bot.name in names:
            raise SpecError(f"{keys[i]}.name", f"duplicate bot name {bot.name!r} (also {keys[names[bot.name]]}): "
                            "each bot needs its own name")
        names[bot.name] = i
        if bot.account in accounts:
            j = accounts[bot.account]
            raise SpecError(f"{keys[i]}.account", f"account {bot.account!r} is also {keys[j]}'s (bot "
                            f"{bots[j].name!r}): each bot needs its own account, since the checks judge an "
                            "account's orders")
        accounts[bot.account] = i
    if array and (exchange is None or "accounts" not in exchange):
        exchange = {**(exchange or {}), "accounts": _bot_accounts(bots)}
    config = _exchange_config(exchange)
    for key, bot in zip(keys, bots, strict=True):
        _check_pair(bot.pair, config, f"{key}.pair")
        if config is not None and bot.account not in [a.name for a in config.accounts]:
            where = "[[exchange.accounts]]" if exchange is not None and "accounts" in exchange else \
                "the default exchange config"
            raise SpecError(f"{key}.account", f"no account named {bot.account!r} in {where} (accounts: "
                            f"{', '.join(a.name for a in config.accounts) or 'none'})")
    return bots, exchange


def _build_bot(table: dict[str, Any], prefix: str = "bot", default_name: str = SINGLE_BOT_NAME, *,
               array: bool = False) -> BotSpec:
    """One ``[bot]`` table (``prefix`` ``bot``) or one ``[[bot]]`` entry (``bot[i]``: its ``account`` defaults to
    its ``name``)."""
    bot = BotSpec()
    name = _str(table.get("name", default_name), f"{prefix}.name")
    if not BOT_NAME_RE.match(name):
        raise SpecError(f"{prefix}.name", f"bad bot name {name!r}: letters, digits, '_' and '-' only (it names "
                        "the bot in [expect.bot.NAME])")
    bot.name = name
    if array:
        bot.account = name
    connector = _str(table.get("connector", bot.connector), f"{prefix}.connector")
    if connector != "reference" and (not _CONNECTOR_RE.match(connector)
                                     or (connector.startswith("hummingbot:") and connector.count(":") != 2)):
        raise SpecError(f"{prefix}.connector", "expected 'reference', 'module:attr', 'hummingbot' or "
                        f"'hummingbot:package.module:ClassName', got {connector!r}")
    bot.connector = connector
    harness = table.get("hummingbot", {})
    if not isinstance(harness, dict):
        raise SpecError(f"{prefix}.hummingbot", f"expected a table, got {type(harness).__name__}")
    _unknown(harness, HUMMINGBOT_KEYS, f"{prefix}.hummingbot")
    urls = harness.get("urls", {})
    if not isinstance(urls, dict):
        raise SpecError(f"{prefix}.hummingbot.urls", f"expected a table of 'module:ATTR' = target, got {urls!r}")
    for target, value in urls.items():
        _str(value, f"{prefix}.hummingbot.urls.{target}")
    if harness and not connector.startswith("hummingbot"):
        raise SpecError(f"{prefix}.hummingbot", "only a Hummingbot connector (connector = 'hummingbot...') takes it")
    bot.hummingbot = dict(harness)
    options = table.get("options", {})
    if not isinstance(options, dict):
        raise SpecError(f"{prefix}.options", f"expected a table of connector options, got {type(options).__name__}")
    bot.options = dict(options)
    for key, value in table.items():
        if key in BOT_KEYS:
            continue
        if connector == "reference":
            raise SpecError(f"{prefix}.{key}", f"unknown key: expected one of {', '.join(BOT_KEYS)} "
                            "(connector-specific settings go in [bot.options])")
        bot.options.setdefault(key, value)
    bot.policy = parse_policy_name(table.get("policy", bot.policy), f"{prefix}.policy")
    bot.pair = _str(table.get("pair", bot.pair), f"{prefix}.pair")
    bot.account = _str(table.get("account", bot.account), f"{prefix}.account")
    refresh = parse_duration(table.get("order_refresh_time", bot.order_refresh_time_s), f"{prefix}.order_refresh_time")
    if refresh <= 0:
        raise SpecError(f"{prefix}.order_refresh_time", "must be more than 0")
    bot.order_refresh_time_s = refresh
    bot.bid_spread = _decimal(table.get("bid_spread", bot.bid_spread), f"{prefix}.bid_spread")
    bot.ask_spread = _decimal(table.get("ask_spread", bot.ask_spread), f"{prefix}.ask_spread")
    bot.order_amount = _decimal(table.get("order_amount", bot.order_amount), f"{prefix}.order_amount", positive=True)
    bot.order_levels = _int(table.get("order_levels", bot.order_levels), f"{prefix}.order_levels", minimum=1)
    bot.filled_order_delay_s = parse_duration(table.get("filled_order_delay", bot.filled_order_delay_s),
                                              f"{prefix}.filled_order_delay")
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


def _build_expect(table: dict[str, Any], bots: list[BotSpec] | None = None) -> tuple[
        dict[str, Any], PolicyVerdicts, dict[str, ConnectorVerdicts], dict[str, BotVerdicts]]:
    thresholds, check_names = _known_thresholds()
    expect: dict[str, Any] = {}
    verdicts = PolicyVerdicts()
    by_connector: dict[str, ConnectorVerdicts] = {}
    by_bot: dict[str, BotVerdicts] = {}
    for name, value in table.items():
        key = f"expect.{name}"
        if name == "policy":
            verdicts = _policy_verdicts(value, key, check_names)
            continue
        if name == "connector":
            by_connector = _connector_verdicts(value, key, check_names)
            continue
        if name == "bot":
            by_bot = _bot_verdicts(value, key, bots or [BotSpec()], check_names)
            continue
        stored, parsed = _expect_value(name, value, key, thresholds)
        expect[stored] = parsed
    for bot_name, entry in by_bot.items():
        _check_not_switched_off({**expect, **entry.expect}, entry, f"expect.bot.{bot_name}")
    return expect, verdicts, by_connector, by_bot


def _check_not_switched_off(expect: dict[str, Any], entry: BotVerdicts, key: str) -> None:
    """A check a bot is expected to violate must be judged for it: ``false`` in its [expect] contradicts that."""
    try:
        from .checks import THRESHOLD_KEYS
    except ImportError:  # pragma: no cover - checks is part of the package
        return
    lists: list[tuple[str, list[str]]] = []
    if entry.violated is not None:
        lists.append((f"{key}.violated", entry.violated))
    lists += [(f"{key}.policy.{p}.violated", v) for p, v in entry.policy.items()]
    for c, cv in entry.connector.items():
        if cv.violated is not None:
            lists.append((f"{key}.connector.{c}.violated", cv.violated))
        lists += [(f"{key}.connector.{c}.policy.{p}.violated", v) for p, v in cv.policy.items()]
    for where, names in lists:
        for check in names:
            off = [k for k in THRESHOLD_KEYS.get(check, ()) if expect.get(k) is False]
            if off:
                raise SpecError(where, f"{check} is expected to be violated, but [expect] switches it off for this "
                                f"bot ({off[0]} = false): it is never judged")


def _bot_verdicts(value: Any, key: str, bots: list[BotSpec],
                  check_names: tuple[str, ...] | None) -> dict[str, BotVerdicts]:
    """``[expect.bot.NAME]``: ``violated``, ``[... .policy.P]``, ``[... .connector."C"]`` and ``[expect]`` keys,
    for the bot called NAME only (a NAME that is no bot's is refused)."""
    if not isinstance(value, dict):
        raise SpecError(key, f"expected tables like [{key}.{bots[0].name}]")
    thresholds, _ = _known_thresholds()
    by_name = {b.name: b for b in bots}
    out: dict[str, BotVerdicts] = {}
    for name, entry in value.items():
        bkey = f"{key}.{name}"
        if name not in by_name:
            close = difflib.get_close_matches(name, list(by_name), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpecError(bkey, f"no bot named {name!r}{hint}: the scenario's bots are {', '.join(by_name)}")
        if not isinstance(entry, dict):
            raise SpecError(bkey, f"expected a table with violated = [...], got {type(entry).__name__}")
        verdicts = BotVerdicts()
        for sub, sub_value in entry.items():
            skey = f"{bkey}.{sub}"
            if sub == "violated":
                verdicts.violated = _violated_list(entry, bkey, check_names)
            elif sub == "policy":
                verdicts.policy = _policy_verdicts(sub_value, skey, check_names)
            elif sub == "connector":
                verdicts.connector = _connector_verdicts(sub_value, skey, check_names)
            elif sub == "bot":
                raise SpecError(skey, "[expect.bot.NAME] does not nest")
            else:
                stored, parsed = _expect_value(sub, sub_value, skey, thresholds, extra=("violated",))
                verdicts.expect[stored] = parsed
        out[name] = verdicts
    return out


def _expect_value(name: str, value: Any, key: str, thresholds: frozenset[str],
                  extra: tuple[str, ...] = ()) -> tuple[str, Any]:
    """One ``[expect]`` key other than ``policy``/``connector``/``bot``: (the name it is stored under, its value)."""
    if name in EXPECT_KEYS:
        kind, stored = EXPECT_KEYS[name]
    elif name in thresholds:
        kind, stored = "threshold", name
    else:
        allowed = sorted({*EXPECT_KEYS, *thresholds, "policy", "connector", *(extra or ("bot",))})
        raise SpecError(key, f"unknown key: expected one of {', '.join(allowed)}")
    if kind == "count":
        return stored, _int(value, key)
    if kind == "duration":
        return stored, parse_duration(value, key)
    # a check threshold: true (none allowed), false (not judged) or a number >= 0
    if not isinstance(value, bool) and (not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0):
        raise SpecError(key, f"expected true, false or a number >= 0, got {value!r}")
    return stored, value
