"""A VALR client written by others, unmodified but for its base URL, against the fake server.

valr-python (PyPI) is a synchronous REST client built for the real VALR API. It runs here
against the ``valr_server`` fixture (a fake VALR on its own thread and loop), through real
sockets and real VALR signing.
"""

from __future__ import annotations

import decimal
import warnings

import pytest

# valr-python lowers the process-wide decimal precision to 8 when imported; undo that so
# the rest of the test session computes as before (the exchange itself is immune: it uses
# its own decimal context, see test_exchange_ignores_a_lowered_decimal_precision).
_saved = (decimal.getcontext().prec, decimal.DefaultContext.prec)
valr_python = pytest.importorskip("valr_python")
decimal.getcontext().prec, decimal.DefaultContext.prec = _saved


@pytest.fixture
def client(valr_server):
    c = valr_python.Client(api_key=valr_server.api_key, api_secret=valr_server.api_secret,
                           base_url=valr_server.rest_url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # valr-python warns on every 202 ("order processing incomplete")
        yield c


def test_public_endpoints(client):
    assert "epochTime" in client.get_server_time()
    assert client.get_valr_status()["status"] == "online"
    pairs = {p["symbol"]: p for p in client.get_currency_pairs()}
    assert {"BTCZAR", "ETHZAR"} <= set(pairs)
    assert pairs["BTCZAR"]["currencyPairType"] == "SPOT"
    book = client.get_order_book_public("BTCZAR")
    assert book["Asks"] and book["Bids"]
    assert float(book["Asks"][0]["price"]) > float(book["Bids"][0]["price"])
    summary = client.get_market_summary("BTCZAR")
    assert summary["currencyPair"] == "BTCZAR"  # VALR's REST summary (captured responses)


def test_signed_order_lifecycle(client, valr_server):
    balances = {b["currency"]: b for b in client.get_balances()}
    assert balances["ZAR"]["available"] == "10000000"

    best_bid = float(client.get_order_book_public("BTCZAR")["Bids"][0]["price"])
    price = str(int(best_bid * 0.9))
    placed = client.post_limit_order(side="BUY", quantity="0.001", price=price, pair="BTCZAR",
                                     post_only=True, customer_order_id="third-party-1")
    order_id = placed["id"]

    # The 202 came before the engine processed the order: wait until it rests on the book.
    deadline = 100
    status = None
    for _ in range(deadline):
        status = client.get_order_status("BTCZAR", order_id=order_id)
        if status["orderStatusType"] == "Placed":
            break
    assert status is not None and status["orderStatusType"] == "Placed"
    assert status["customerOrderId"] == "third-party-1"
    by_cid = client.get_order_status("BTCZAR", customer_order_id="third-party-1")
    assert by_cid["orderId"] == order_id

    open_orders = client.get_all_open_orders()
    assert [o["orderId"] for o in open_orders] == [order_id]
    reserved = {b["currency"]: b for b in client.get_balances()}["ZAR"]["reserved"]
    assert float(reserved) == pytest.approx(float(price) * 0.001)

    # valr-python signs GETs with parameters over the path without the query string.
    history = client.get_order_history(skip=0, limit=10)
    assert isinstance(history, list)


def test_bad_secret_is_refused(valr_server):
    bad = valr_python.Client(api_key=valr_server.api_key, api_secret="not-the-secret", base_url=valr_server.rest_url)
    with pytest.raises(Exception) as excinfo:
        bad.get_balances()
    assert "401" in str(excinfo.value) or "signature" in str(excinfo.value).lower()


def test_exchange_ignores_a_lowered_decimal_precision(valr_server):
    """What valr-python does on import must not change the exchange's arithmetic."""
    from replay.codec import fmt
    from replay.exchange import Exchange
    from replay.exchange.model import LimitRequest, Side

    pairs = list(valr_server.server.config.pairs)
    with decimal.localcontext() as ctx:
        ctx.prec = 8
        ex = Exchange(pairs, seed=1)
        ex.open_account("a", {"ZAR": decimal.Decimal("10000000.12345678")})
        ex.place_limit(0, "a",
                       LimitRequest("BTCZAR", Side.BUY, decimal.Decimal("0.00123457"), decimal.Decimal("1234567")))
        zar = {b.currency: b for b in ex.balances("a")}["ZAR"]
    # price * quantity = 1524.15938119 exactly; at 8 digits it would have been 1524.1594
    assert zar.reserved == decimal.Decimal("1524.15938119")
    assert zar.available == decimal.Decimal("9998475.96407559")
    with decimal.localcontext() as ctx:
        ctx.prec = 8
        assert fmt(zar.available) == "9998475.96407559"
