"""Tests of the seeded background market."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

import replay.exchange.background as background_module
from replay.config import MarketParams, default_config
from replay.exchange import BackgroundMarket, Exchange
from replay.exchange.events import AccountTrade, PublicTrade
from replay.exchange.model import LimitRequest, OrderStatus, Side


def setup(seed: int = 1, **overrides):
    cfg = default_config()
    ex = Exchange(cfg.pairs, seed=0)
    for a in cfg.accounts:
        ex.open_account(a.name, a.balances)
    params = {p: MarketParams(**{**vars(mp), **overrides}) for p, mp in cfg.market.items()}
    return ex, BackgroundMarket(ex, params, seed=seed)


def test_start_places_a_ladder_outside_a_10bps_quote():
    ex, bg = setup()
    events = bg.start(0)
    assert events
    book = ex.book("BTCZAR")
    mid = bg.mid("BTCZAR")
    assert mid == D("1500000")
    assert len(book.asks) == len(book.bids) == 10
    # The inner levels sit 15 bps out: a bot quoting at 10 bps is the best price.
    assert book.bids[0].price <= mid * D("0.9985") and book.asks[0].price >= mid * D("1.0015")
    assert all(level.price % 1 == 0 for level in book.asks + book.bids)
    assert ex.book("ETHZAR").asks
    assert "__market__" in ex.accounts and "__market__-taker" in ex.accounts


def test_mid_moves_and_is_deterministic_for_a_seed():
    def path(seed):
        ex, bg = setup(seed)
        bg.start(0)
        out = []
        for i in range(1, 40):
            evs = bg.step(i * 1000)
            out.append((bg.mid("BTCZAR"), len(evs), sum(isinstance(e, PublicTrade) for e in evs)))
        return out, ex.book("BTCZAR")

    a, book_a = path(3)
    b, book_b = path(3)
    assert a == b and book_a == book_b
    c, _ = path(4)
    assert [m for m, *_ in a] != [m for m, *_ in c]
    mids = {m for m, *_ in a}
    assert len(mids) > 30  # it moves
    assert sum(t for *_, t in a) > 0  # takers trade


def test_ladder_follows_the_mid():
    ex, bg = setup(5, volatility_bps=D("50"), taker_probability=0.0)
    bg.start(0)
    for i in range(1, 20):
        bg.step(i * 1000)
        book = ex.book("BTCZAR")
        mid = bg.mid("BTCZAR")
        assert book.bids[0].price < mid < book.asks[0].price
        assert len(book.asks) == 10 and len(book.bids) == 10
        # Inner level about 15 bps away (rounded to the 1 ZAR tick).
        assert abs(book.asks[0].price - mid * D("1.0015")) <= 1


def test_fills_a_resting_bot_order_within_n_steps():
    ex, bg = setup(11)
    bg.start(0)
    filled_at = None
    for step in range(1, 61):
        ts = step * 1000
        ex.cancel_all(ts, "demo", "BTCZAR")
        book = ex.book("BTCZAR", 1)
        mid = (book.asks[0].price + book.bids[0].price) / 2
        bid_price, ask_price = (mid * D("0.999")).quantize(D(1)), (mid * D("1.001")).quantize(D(1))
        bid, _ = ex.place_limit(ts, "demo", LimitRequest("BTCZAR", Side.BUY, D("0.001"), bid_price))
        ask, _ = ex.place_limit(ts, "demo", LimitRequest("BTCZAR", Side.SELL, D("0.001"), ask_price))
        events = bg.step(ts + 500)
        fills = [e for e in events if isinstance(e, AccountTrade) and e.account == "demo"]
        if fills:
            filled_at = step
            assert fills[0].is_maker and fills[0].order.order_id in (bid, ask)
            assert ex.find_order("demo", order_id=fills[0].order.order_id).filled_quantity > 0
            break
    assert filled_at is not None and filled_at <= 20


def test_small_takers_leave_a_resting_bot_order_partially_filled():
    # Takers of 0.0002..0.0008 BTC: smaller than the bot's 0.001 quote, so a hit fills it only in part.
    ex, bg = setup(11, taker_min_quantity=D("0.0002"), taker_max_quantity=D("0.0008"), volatility_bps=D("0"))
    bg.start(0)
    mid = bg.mid("BTCZAR")
    bid, _ = ex.place_limit(0, "demo", LimitRequest("BTCZAR", Side.BUY, D("0.001"), (mid * D("0.999")).quantize(D(1))))
    ask, _ = ex.place_limit(0, "demo", LimitRequest("BTCZAR", Side.SELL, D("0.001"), (mid * D("1.001")).quantize(D(1))))
    partial = None
    for step in range(1, 61):
        events = bg.step(step * 1000)
        taker_trades = [e for e in events if isinstance(e, AccountTrade) and e.account == "__market__-taker"]
        assert all(D("0.0002") <= e.order.original_quantity <= D("0.0008") for e in taker_trades
                   if e.order.pair == "BTCZAR")
        assert all(e.order.original_quantity.as_tuple().exponent >= -8 for e in taker_trades)  # base_decimals
        for oid in (bid, ask):
            order = ex.find_order("demo", order_id=oid)
            if order.status is OrderStatus.PARTIALLY_FILLED:
                partial = order
        if partial is not None:
            break
    assert partial is not None, "no taker partly filled the bot's order"
    assert 0 < partial.filled_quantity < D("0.001") and partial.remaining_quantity > 0


def test_taker_amount_range_draws_are_fixed_per_step():
    # With a range, one more draw per pair per step (whether or not a taker comes): the mid path
    # still does not depend on what the bot does.
    def mids(bot_trades: bool):
        ex, bg = setup(8, taker_min_quantity=D("0.0001"), taker_probability=0.5)
        bg.start(0)
        out = []
        for i in range(1, 30):
            if bot_trades and i % 3 == 0:
                ex.place_limit(i * 1000, "demo", LimitRequest("BTCZAR", Side.BUY, D("0.001"),
                                                              (bg.mid("BTCZAR") * D("0.999")).quantize(D(1))))
            bg.step(i * 1000)
            out.append(bg.mid("BTCZAR"))
        return out

    assert mids(False) == mids(True)


def test_default_params_draw_no_taker_amount():
    mp = MarketParams(mid=D("1500000"))
    assert mp.taker_min_quantity is None and mp.taker_max_quantity is None
    assert mp.taker_quantity_range() is None
    assert MarketParams(mid=D(1), taker_min_quantity=D("0.0005")).taker_quantity_range() == (D("0.0005"), D("0.002"))


def test_background_orders_do_not_flush_the_queue():
    ex, bg = setup(2)
    bg.start(0)
    sub = ex.submit_limit(1, "demo", LimitRequest("BTCZAR", Side.BUY, D("0.001"), D("1400000")))
    bg.step(1000)
    assert ex.pending == 1 and ex.find_order("demo", order_id=sub.order_id) is None


def test_partly_filled_ladder_levels_are_restored():
    ex, bg = setup(6, volatility_bps=D("0"), taker_probability=0.0)
    bg.start(0)
    top = ex.book("BTCZAR").asks[0]
    ex.place_limit(1, "demo", LimitRequest("BTCZAR", Side.BUY, D("0.02"), top.price))
    assert ex.book("BTCZAR").asks[0].quantity == D("0.03")
    bg.step(2000)
    assert ex.book("BTCZAR").asks[0] == top.__class__(top.price, D("0.05"), 1)


def test_unknown_pair_and_step_before_start():
    ex, _ = setup()
    with pytest.raises(ValueError, match="XYZ"):
        BackgroundMarket(ex, {"XYZ": MarketParams(mid=D(1))}, seed=0)
    bg = BackgroundMarket(ex, {}, seed=0)
    with pytest.raises(RuntimeError):
        bg.step(0)


def test_quiet_ladder_refresh_gives_the_same_market_as_one_request_at_a_time():
    """The engine refreshes a quiet account's ladder in one call (Exchange._replace_quiet); an account
    whose events are wanted goes one request at a time through _execute. Both give the same book,
    balances, ids and events (but the BookChanged per request), a ladder order that trades included."""

    def world(quiet: bool):
        ex, bg = setup(11, volatility_bps=D("40"), taker_probability=0.0)
        if quiet:
            ex.quiet_accounts = frozenset({bg.account, bg.taker_account})
        seen = []
        seen.append(bg.start(0))
        for i in range(1, 120):
            if i % 3 == 0:  # a bot quote just inside the ladder, which the next mid move may cross
                mid = bg.mid("BTCZAR")
                side = Side.BUY if i % 2 else Side.SELL
                price = (mid * (D("0.9992") if side is Side.BUY else D("1.0008"))).quantize(D(1))
                seen.append(ex.place_limit(i * 1000, "demo", LimitRequest("BTCZAR", side, D("0.001"), price))[1])
            seen.append(bg.step(i * 1000))
        kept = [[e for e in evs if type(e).__name__ != "BookChanged"] for evs in seen]
        if quiet:  # the ladder's own events are not built for a quiet account
            kept = [[e for e in evs if getattr(e, "account", None) not in ex.quiet_accounts] for evs in kept]
        state = (
            [(ex._books[p].orders_by_level(Side.BUY), ex._books[p].orders_by_level(Side.SELL))
             for p in sorted(ex.pairs)],
            {n: (sorted(a.balances.items()), list(a.open), list(a.closed)) for n, a in ex._accounts.items()},
            ex._ticket, ex._seq, ex._rng.getstate(),
        )
        bot_fills = sum(isinstance(e, AccountTrade) and e.account == "demo" for evs in seen for e in evs)
        return kept, state, bot_fills

    fast_events, fast_state, fast_fills = world(quiet=True)
    slow_events, slow_state, slow_fills = world(quiet=False)
    slow_events = [[e for e in evs if getattr(e, "account", None) not in {"__market__", "__market__-taker"}]
                   for evs in slow_events]
    assert fast_fills == slow_fills > 0  # ladder orders traded with the bot's quotes (no takers here)
    assert fast_state == slow_state
    assert fast_events == slow_events


def test_background_accounts_forget_old_closed_orders_a_bots_account_keeps_its_history():
    ex, bg = setup(5, volatility_bps=D("50"), taker_probability=1.0)
    bg.start(0)
    for i in range(1, 40):  # every level moves each step: hundreds of ladder orders closed, and 78 takers (2 pairs)
        bg.step(i * 1000)
    for account in ("__market__", "__market__-taker"):
        assert len(ex.order_history(account, limit=10_000)) == background_module.CLOSED_KEPT
    bot = ex.accounts[0]
    for i in range(60):  # placed and cancelled: a bot's account keeps them all (up to the engine's 2,000)
        ex.place_limit(50_000 + i, bot, LimitRequest("BTCZAR", Side.BUY, D("0.001"), D("1000")))
        ex.cancel_all(50_000 + i, bot)
    assert len(ex.order_history(bot, limit=10_000)) == 60 > background_module.CLOSED_KEPT
