"""A seeded background market: other participants, so a market maker sees a moving mid
and now and then gets filled (pure; the server calls ``step`` every ``step_interval_s``).

Per pair, a maker account keeps a ladder of resting orders from ``spread_bps / 2`` away
from the mid outwards (by default 15 bps, outside a typical 10 bps market-making quote),
one level every ``level_step_bps``. Each step the mid takes a seeded random-walk step,
the ladder is refreshed around it (levels whose price moved or that were partly filled
are cancelled and placed again), and with ``taker_probability`` a taker sends an IOC
limit order that crosses to a depth drawn from ``[taker_min_depth_bps,
taker_max_depth_bps]`` away from the mid: a sweep reaching past ~10 bps fills a bot's
resting quote first, because it is the best price. A taker's amount is ``taker_quantity``
(by default more than a typical 0.001 BTC quote, so a hit fills the quote completely), or,
when ``taker_min_quantity``/``taker_max_quantity`` give a range, drawn from it: a taker
smaller than the quote leaves the bot's order Partially Filled.

The takers trade from a second account (``<account>-taker``): one account for both
would have its takers cancel its own ladder through self-trade prevention.

The background market's orders go through ``Exchange.execute``: they reach the engine
between the queued commands of the connector under test without flushing the queue.
The number of random draws per step is fixed, so the mid path for a seed does not depend
on what the bot does: four per pair, plus one (the taker's amount, drawn whether or not a
taker comes) for a pair whose params give a taker amount range. Without a range no amount
is drawn, so the seeds of configurations written before the range existed give the same
market as they did.
"""

from __future__ import annotations

import random
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING

from replay.decimals import exact_methods

from .events import Event
from .model import LimitRequest, PairSpec, Side, TimeInForce

if TYPE_CHECKING:
    from replay.config import MarketParams

    from .engine import Exchange

_BPS = Decimal("0.0001")
_LARGE = Decimal("1000000000000")  # balances of the background accounts, per currency
#: closed orders a background account remembers: nobody asks for their history, and the ladder closes
#: dozens a second (a bot's account keeps the engine's default)
CLOSED_KEPT = 50


def _to_tick(price: Decimal, tick: Decimal, rounding: str) -> Decimal:
    return (price / tick).to_integral_value(rounding=rounding) * tick


@exact_methods
class BackgroundMarket:
    def __init__(
        self,
        exchange: "Exchange",
        params: "dict[str, MarketParams]",
        *,
        seed: int,
        account: str = "__market__",
    ):
        for pair in params:
            if pair not in exchange.pairs:
                raise ValueError(f"background market: unknown pair {pair!r}")
        self.exchange = exchange
        self.params = dict(params)
        self.account = account
        self.taker_account = f"{account}-taker"
        self._rng = random.Random(seed)
        self._mids: dict[str, Decimal] = {p: Decimal(mp.mid) for p, mp in self.params.items()}
        self.started = False

    def mid(self, pair: str) -> Decimal:
        return self._mids[pair]

    # --- lifecycle ----------------------------------------------------------------------
    def start(self, ts_ms: int) -> list[Event]:
        """Open the background accounts and place the initial ladders."""
        pairs = [self.exchange.pairs[p] for p in self.params]
        currencies = sorted({c for spec in pairs for c in (spec.base, spec.quote)})
        for acct in (self.account, self.taker_account):
            if acct not in self.exchange.accounts:
                self.exchange.open_account(acct, {c: _LARGE for c in currencies}, closed_kept=CLOSED_KEPT)
        self.started = True
        events: list[Event] = []
        for pair in sorted(self.params):
            events.extend(self._refresh(pair, ts_ms))
        return events

    def step(self, ts_ms: int) -> list[Event]:
        """Move each mid, refresh the ladders, maybe send a taker order."""
        if not self.started:
            raise RuntimeError("BackgroundMarket.step() before start()")
        events: list[Event] = []
        for pair in sorted(self.params):
            mp = self.params[pair]
            spec = self.exchange.pairs[pair]
            # Fixed draws per pair per step (see module docstring).
            move = self._rng.gauss(0.0, float(mp.volatility_bps) * 1e-4)
            take = self._rng.random() < mp.taker_probability
            side = Side.BUY if self._rng.random() < 0.5 else Side.SELL
            depth = self._rng.uniform(float(mp.taker_min_depth_bps), float(mp.taker_max_depth_bps))
            quantity = self._taker_quantity(mp, spec)

            new_mid = Decimal(repr(float(self._mids[pair]) * (1.0 + move)))
            floor = spec.tick_size * 10
            self._mids[pair] = max(new_mid.quantize(spec.tick_size / 100), floor)
            events.extend(self._refresh(pair, ts_ms))
            if take:
                events.extend(self._taker(pair, spec, side, Decimal(repr(round(depth, 4))), quantity, ts_ms))
        return events

    # --- internals ----------------------------------------------------------------------
    def _ladder(self, pair: str) -> dict[tuple[Side, Decimal], Decimal]:
        mp = self.params[pair]
        tick = self.exchange.pairs[pair].tick_size
        mid = self._mids[pair]
        half = mp.spread_bps / 2
        want: dict[tuple[Side, Decimal], Decimal] = {}
        for i in range(mp.levels):
            off = (half + i * mp.level_step_bps) * _BPS
            bid = _to_tick(mid * (1 - off), tick, ROUND_FLOOR)
            ask = _to_tick(mid * (1 + off), tick, ROUND_CEILING)
            if bid > 0:
                want.setdefault((Side.BUY, bid), mp.level_quantity)
            want.setdefault((Side.SELL, ask), mp.level_quantity)
        return want

    def _refresh(self, pair: str, ts_ms: int) -> list[Event]:
        want = self._ladder(pair)
        keep: set[tuple[Side, Decimal]] = set()
        cancel = []
        for order in self.exchange._resting(self.account, pair):
            key = (order.side, order.price)
            if key in want and key not in keep and order.remaining_quantity == want[key]:
                keep.add(key)
                continue
            cancel.append(order)
        # Place asks and bids nearest the mid first, so the top of the book forms first.
        mid = self._mids[pair]
        missing = sorted((k for k in want if k not in keep), key=lambda k: abs(k[1] - mid))
        place = [LimitRequest(pair, side, want[(side, price)], price) for side, price in missing]
        # one call for the whole refresh: as a cancel, then a limit order, each in turn
        return self.exchange._replace_quiet(ts_ms, self.account, cancel, place)

    def _taker_quantity(self, mp: "MarketParams", spec: PairSpec) -> Decimal:
        """This step's taker amount: ``taker_quantity``, or (a range given) one draw from the range,
        floored to the pair's ``base_decimals`` and kept within the range."""
        bounds = mp.taker_quantity_range()
        if bounds is None:
            return mp.taker_quantity  # no draw: the default consumes what it always did
        low, high = bounds
        drawn = Decimal(repr(self._rng.uniform(float(low), float(high))))
        step = Decimal(1).scaleb(-spec.base_decimals)
        return min(max(drawn.quantize(step, rounding=ROUND_FLOOR), low), high)

    def _taker(
        self, pair: str, spec: PairSpec, side: Side, depth_bps: Decimal, quantity: Decimal, ts_ms: int
    ) -> list[Event]:
        mid = self._mids[pair]
        if side is Side.BUY:
            price = _to_tick(mid * (1 + depth_bps * _BPS), spec.tick_size, ROUND_FLOOR)
        else:
            price = _to_tick(mid * (1 - depth_bps * _BPS), spec.tick_size, ROUND_CEILING)
        if price <= 0:
            return []
        req = LimitRequest(pair, side, quantity, price, time_in_force=TimeInForce.IOC)
        _, events = self.exchange._execute(ts_ms, self.taker_account, req)
        return events
