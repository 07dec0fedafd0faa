"""A Hummingbot exchange connector, driven by Hummingbot's own pure market making on its own Clock.

``--connector hummingbot:package.module:ClassName`` (or ``[bot] connector = "hummingbot:..."``)
names any ``ExchangePyBase`` subclass for VALR, e.g. one in a Hummingbot fork, importable from
the current directory or ``PYTHONPATH``; plain ``hummingbot`` names ours
(``replay/hummingbot/valr``). A run then:

1. makes Hummingbot headless (replay/hummingbot/headless.py) and, on virtual time, presents the
   run's clock as ``time.time()`` (replay/hummingbot/wallclock.py), so the connector, Hummingbot's
   ``Clock``, the strategy and the exchange read one clock;
2. rewrites the connector package's VALR URL constants to the run's server (replay/hummingbot/urls.py);
3. builds the connector from its constructor's signature: API key and secret, ``trading_pairs``,
   ``trading_required``, ``client_config_map`` (mid-2025 releases), ``open_orders_policy`` when the
   class takes it, and the scenario's ``[bot.options]``;
4. traces its ``ClientOrderTracker`` and the strategy's calls (replay/hummingbot/observe.py);
5. runs Hummingbot's ``Clock`` (real-time mode, 1 s ticks) with the connector, waits until the
   connector is ready, then adds a ``PureMarketMakingStrategy`` built from the scenario's ``[bot]``
   (refresh time, spreads, amount, levels, filled-order delay) for the scenario's duration;
6. at shutdown, ``cancel_all`` as Hummingbot's stop command does, then stops the network and closes
   Hummingbot's process-wide HTTP session, and undoes every patch.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import os
import sys
from decimal import Decimal
from typing import Any, Mapping

from replay.capture import TraceRecorder
from replay.clock import Clock
from replay.connector.adapter import BelievedOrder, ServerUrls
from replay.importing import NotFound, import_attribute

from . import urls as url_rewrite
from .headless import headless
from .observe import TrackerObserver, observe_strategy_calls, valr_symbol
from .wallclock import loop_timer, presented_as_wall_clock

PREFIX = "hummingbot"
BUILTIN = "replay.hummingbot.valr.valr_exchange:ValrExchange"
TICK_SIZE_S = 1.0
LOG_KEPT = 40


class HummingbotError(RuntimeError):
    """A Hummingbot connector could not be loaded, built or started: the message says why."""


def is_hummingbot_spec(spec: str) -> bool:
    return spec == PREFIX or spec.startswith(PREFIX + ":")


def class_path(spec: str) -> str:
    """``package.module:ClassName`` from ``hummingbot`` or ``hummingbot:package.module:ClassName``."""
    if spec == PREFIX:
        return BUILTIN
    rest = spec[len(PREFIX) + 1:]
    module, sep, attr = rest.partition(":")
    if not sep or not module or not attr:
        raise HummingbotError(f"connector {spec!r}: expected 'hummingbot' or 'hummingbot:package.module:ClassName'")
    return rest


def hummingbot_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hummingbot")
    except PackageNotFoundError:
        return "unknown (not installed as a distribution: a source checkout?)"


def require_hummingbot() -> None:
    """Raise a clear :class:`HummingbotError` when Hummingbot cannot be imported here."""
    try:
        import hummingbot.connector.exchange_py_base  # noqa: F401
        import hummingbot.strategy.pure_market_making  # noqa: F401
    except ImportError as exc:
        raise HummingbotError(
            f"Hummingbot cannot be imported in this Python ({sys.executable}): {exc}. Build the Hummingbot "
            "environment with `tools/hummingbot-env` (Python 3.12; about 5 minutes the first time), or install "
            "valr-replay into your own Hummingbot environment (README: 'Your Hummingbot connector')."
        ) from None


def hummingbot_importable() -> bool:
    """Whether Hummingbot's compiled core can be found here (not just any folder named hummingbot)."""
    import importlib.util

    try:
        return importlib.util.find_spec("hummingbot.core.clock") is not None
    except ImportError:  # no package "hummingbot" at all
        return False


def hummingbot_python() -> str | None:
    """The Python of the Hummingbot environment to hand a run to, when this one has no Hummingbot:
    ``$VALR_REPLAY_HUMMINGBOT_PYTHON``, else the checkout's ``.hbvenv`` (built by tools/hummingbot-env)."""
    from pathlib import Path

    named = os.environ.get("VALR_REPLAY_HUMMINGBOT_PYTHON")
    if named:
        return named
    candidate = Path(__file__).resolve().parents[2] / ".hbvenv" / "bin" / "python"
    if candidate.exists() and candidate.resolve() != Path(sys.executable).resolve():
        return str(candidate)
    return None


def load_class(spec: str) -> type:
    """Import the connector class named by ``spec`` (the current directory is importable)."""
    require_hummingbot()
    from hummingbot.connector.exchange_py_base import ExchangePyBase

    module_name, _, attr = class_path(spec).partition(":")
    try:
        target = import_attribute(module_name, attr)
    except NotFound as exc:
        raise HummingbotError(f"connector {spec!r}: {exc}") from None
    if not isinstance(target, type) or not issubclass(target, ExchangePyBase):
        raise HummingbotError(f"connector {spec!r}: {attr} is not a Hummingbot ExchangePyBase subclass")
    return target


def _client_config_map() -> Any:
    """What a mid-2025 connector's ``client_config_map`` parameter wants: the default client config."""
    try:
        from hummingbot.client.config.client_config_map import ClientConfigMap
        from hummingbot.client.config.config_helpers import ClientConfigAdapter
    except ImportError as exc:
        raise HummingbotError(f"the connector takes client_config_map, but Hummingbot's client config cannot be "
                              f"imported here: {exc}") from None
    return ClientConfigAdapter(ClientConfigMap())


def constructor_kwargs(cls: type, api_key: str, api_secret: str, trading_pair: str, policy: str | None,
                       options: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``cls`` from the names of its constructor's parameters."""
    params = inspect.signature(cls).parameters
    kwargs: dict[str, Any] = {}
    for name, param in params.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if name.endswith("api_key"):
            kwargs[name] = api_key
        elif name.endswith("api_secret") or name.endswith("secret_key"):
            kwargs[name] = api_secret
        elif name == "trading_pairs":
            kwargs[name] = [trading_pair]
        elif name == "trading_required":
            kwargs[name] = True
        elif name == "client_config_map":
            kwargs[name] = _client_config_map()
        elif name == "open_orders_policy" and policy is not None:
            kwargs[name] = policy
    unknown = [k for k in options if k not in params and not any(
        p.kind is p.VAR_KEYWORD for p in params.values())]
    if unknown:
        raise HummingbotError(f"bot.options: {cls.__name__} takes no {', '.join(map(repr, unknown))} "
                              f"(its parameters: {', '.join(p for p in params if p != 'self')})")
    kwargs.update(options)
    missing = [name for name, p in params.items() if name != "self" and name not in kwargs
               and p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if missing:
        raise HummingbotError(f"cannot build {cls.__name__}: no value for its parameter(s) {', '.join(missing)}; "
                              "give them in [bot.options]")
    return kwargs


def strategy_kwargs(init_params: Any, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` less what this release's ``init_params`` does not take (compiled methods have signatures)."""
    try:
        params = inspect.signature(init_params).parameters
    except (TypeError, ValueError):  # pragma: no cover - no signature: pass everything
        return given
    return {k: v for k, v in given.items() if k in params}


class _Recent(logging.Handler):
    """The last warnings and errors the connector logged, for a startup failure's message."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: collections.deque[str] = collections.deque(maxlen=LOG_KEPT)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a malformed log call must not break the run
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        self.lines.append(f"{record.levelname} {record.name.rsplit('.', 1)[-1]}: {text}")


class HummingbotBot:
    """One Hummingbot connector plus Hummingbot's PMM, for one run on ``clock``."""

    def __init__(self, spec: str, *, clock: Clock, trace: TraceRecorder | None, pair: str,
                 base: str, quote: str, policy: str | None = None, options: Mapping[str, Any] | None = None,
                 url_overrides: Mapping[str, str] | None = None):
        self.spec = spec
        self.cls = load_class(spec)
        self.clock = clock
        self.trace = trace
        self.pair = pair
        self.hb_pair = f"{base}-{quote}"
        self.base, self.quote = base, quote
        self.policy = policy
        self.options = dict(options or {})
        self.url_overrides = dict(url_overrides or {})
        self.connector: Any = None
        self.strategy: Any = None
        self.observer: TrackerObserver | None = None
        self._stack = contextlib.ExitStack()
        self._hb_clock: Any = None
        self._clock_task: asyncio.Task[Any] | None = None
        self._recent = _Recent()
        self._loggers: list[tuple[logging.Logger, bool]] = []

    @property
    def takes_policy(self) -> bool:
        """Whether the connector has our ``open_orders_policy`` setting (a fork's connector has its own
        handler, whatever ``--policy`` says: it is judged by the scenario's base expectations)."""
        return "open_orders_policy" in inspect.signature(self.cls).parameters

    # --- start ---------------------------------------------------------------------------------
    async def start(self, urls: ServerUrls, api_key: str, api_secret: str) -> None:
        from hummingbot.core.clock import Clock as HbClock
        from hummingbot.core.clock import ClockMode

        self._stack.enter_context(headless())
        self._quiet_logs()
        if self.clock.is_virtual:
            self._stack.enter_context(presented_as_wall_clock(self.clock))
        package = self.cls.__module__.rpartition(".")[0] or self.cls.__module__
        try:
            rewrites = url_rewrite.plan(package, urls, self.url_overrides)
        except url_rewrite.RedirectError as exc:
            raise HummingbotError(str(exc)) from None
        if not any(urls.rest_url in r.new for r in rewrites):
            raise HummingbotError(
                f"no URL constant of {package} starts with {' or '.join(url_rewrite.REST_PREFIXES)}, so the "
                f"connector cannot be pointed at the fake server; name its URL constants in "
                f"[bot.hummingbot.urls] (docs: replay/hummingbot/urls.py)")
        self._stack.enter_context(url_rewrite.redirected(rewrites))
        if self.trace is not None:
            self.trace.record("run", "local", "meta", "HUMMINGBOT", {
                "connector": f"{self.cls.__module__}:{self.cls.__qualname__}", "version": hummingbot_version(),
                "trading_pair": self.hb_pair, "virtual_time": self.clock.is_virtual,
                "policy": self.policy if self.takes_policy else None,
                "redirected": url_rewrite.describe(rewrites)})
        kwargs = constructor_kwargs(self.cls, api_key, api_secret, self.hb_pair, self.policy, self.options)
        try:
            self.connector = self.cls(**kwargs)
        except Exception as exc:
            raise HummingbotError(f"building {self.cls.__name__} failed: {type(exc).__name__}: {exc}") from exc
        tracker = self.connector._order_tracker
        if self.clock.is_virtual:
            from cachetools import TTLCache

            cached = tracker._cached_orders
            tracker._cached_orders = TTLCache(maxsize=cached.maxsize, ttl=cached.ttl, timer=loop_timer(self.clock))
        self.observer = TrackerObserver(tracker, self.trace)
        self.observer.attach()
        observe_strategy_calls(self.connector, self.trace)
        self._hb_clock = HbClock(ClockMode.REALTIME, tick_size=TICK_SIZE_S)
        self._hb_clock.add_iterator(self.connector)
        self._hb_clock.__enter__()
        self._clock_task = asyncio.ensure_future(self._hb_clock.run())

    def _quiet_logs(self) -> None:
        """Hummingbot logs every tick while it waits; keep its warnings for error messages, off the console."""
        names = {"hummingbot", self.cls.__module__.split(".")[0]}
        for name in sorted(names):
            logger = logging.getLogger(name)
            self._loggers.append((logger, logger.propagate))
            logger.addHandler(self._recent)
            logger.propagate = False

    @property
    def ready(self) -> bool:
        if self._clock_task is not None and self._clock_task.done():
            raise HummingbotError(f"Hummingbot's clock stopped: {self._clock_task.exception()!r}")
        return self.connector is not None and bool(self.connector.ready)

    def not_ready_report(self) -> str:
        """Why the connector is not ready: its status parts and what it last warned about."""
        status = {}
        with contextlib.suppress(Exception):
            status = dict(self.connector.status_dict) if self.connector is not None else {}
        waiting = ", ".join(k for k, ok in status.items() if not ok) or "unknown"
        lines = list(self._recent.lines)[-8:]
        hint = ("Likely causes: a URL the connector builds that was not redirected (see the HUMMINGBOT record "
                "in the trace for what was), a request the fake server refuses (run with --trace and "
                "`valr-replay show TRACE`), or a signature stamped with another clock.")
        return (f"waiting for: {waiting}. " + (f"It last logged: {' | '.join(lines)}. " if lines else "") + hint)

    # --- quoting -------------------------------------------------------------------------------
    async def run_strategy(self, until: float, *, bid_spread: Decimal, ask_spread: Decimal, order_amount: Decimal,
                           order_levels: int, order_refresh_time: float, filled_order_delay: float) -> None:
        """Hummingbot's own ``PureMarketMakingStrategy`` on Hummingbot's ``Clock`` until loop time ``until``."""
        from hummingbot.strategy.market_trading_pair_tuple import MarketTradingPairTuple
        from hummingbot.strategy.pure_market_making import PureMarketMakingStrategy

        strategy = PureMarketMakingStrategy()
        market_info = MarketTradingPairTuple(self.connector, self.hb_pair, self.base, self.quote)
        strategy.init_params(**strategy_kwargs(strategy.init_params, {
            "market_info": market_info,
            "bid_spread": Decimal(bid_spread),
            "ask_spread": Decimal(ask_spread),
            "order_amount": Decimal(order_amount),
            "order_levels": order_levels,
            "order_refresh_time": float(order_refresh_time),
            "filled_order_delay": float(filled_order_delay),
            "hb_app_notification": False,
        }))
        self.strategy = strategy
        self._hb_clock.add_iterator(strategy)
        loop = asyncio.get_running_loop()
        try:
            # Stop within a microsecond of ``until``: a virtual clock keeps time at a fixed resolution, so a
            # sleep of the last femtoseconds (7.025 s after a start of 1.05 s is 8.075000000000001) would
            # come back at the same time, again and again, with virtual time standing still.
            while until - loop.time() > 1e-6:
                if self._clock_task is not None and self._clock_task.done():
                    raise HummingbotError(f"Hummingbot's clock stopped: {self._clock_task.exception()!r}")
                await asyncio.sleep(min(1.0, until - loop.time()))
        finally:
            self._hb_clock.remove_iterator(strategy)

    # --- the adapter's read side ------------------------------------------------------------------
    def believed_orders(self) -> list[BelievedOrder]:
        if self.connector is None or self.observer is None:
            return []
        tracker = self.connector._order_tracker
        out = []
        for pool in (tracker.active_orders, tracker.cached_orders, tracker.lost_orders):
            for o in list(pool.values()):
                out.append(BelievedOrder(o.client_order_id, o.exchange_order_id, valr_symbol(o.trading_pair),
                                         o.trade_type.name.lower(), o.price, o.amount, o.current_state.name,
                                         self.observer.where(o.client_order_id) or "cached"))
        return out

    def mid_price(self, pair: str) -> Decimal | None:
        from hummingbot.core.data_type.common import PriceType

        if self.connector is None:
            return None
        try:
            price = self.connector.get_price_by_type(self.hb_pair, PriceType.MidPrice)
        except Exception:
            return None
        return None if price is None or price.is_nan() else Decimal(price)

    # --- shutdown ------------------------------------------------------------------------------
    async def cancel_all(self, timeout: float) -> None:
        """What Hummingbot's stop command does: ``cancel_all`` over the connector's active orders."""
        if self.connector is not None:
            await self.connector.cancel_all(timeout)

    async def stop(self) -> None:
        try:
            if self._clock_task is not None:
                self._clock_task.cancel()
                with contextlib.suppress(BaseException):
                    await self._clock_task
            if self._hb_clock is not None:
                with contextlib.suppress(Exception):
                    self._hb_clock.__exit__(None, None, None)
            if self.connector is not None:
                with contextlib.suppress(Exception):
                    await self.connector.stop_network()
            with contextlib.suppress(Exception):
                from hummingbot.core.web_assistant.connections.connections_factory import ConnectionsFactory

                await ConnectionsFactory().close()
        finally:
            for logger, propagate in self._loggers:
                logger.removeHandler(self._recent)
                logger.propagate = propagate
            self._loggers.clear()
            self._stack.close()
