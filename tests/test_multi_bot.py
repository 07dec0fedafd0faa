"""Several bots on one exchange (``[[bot]]``): parsing, a run per bot on one server and one trace, checks per
account on each bot's own records, the table and the JSON per bot, the pytest item per scenario."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from replay.cli import main
from replay.config import DEMO_API_KEY, config_from_dict
from replay.runner import RunResult, bot_record_filter, check_spec, records_for_bot, run_scenario
from replay.scenario import SINGLE_BOT_NAME, ScenarioError, load_scenario, loads_scenario

from conftest import ROOT

TWO_BOTS = ROOT / "scenarios" / "two_bots_one_book.toml"
NAIVE_VERDICT = ["max_open_orders", "false_cancels", "orphans", "nothing_open_after_shutdown", "orders_closed",
                 "final_state_exit"]


def _load(text: str) -> Any:
    return loads_scenario(textwrap.dedent(text), "multi.toml")


def _refused(text: str, key: str, *words: str) -> None:
    with pytest.raises(ScenarioError) as info:
        _load(text)
    message = str(info.value)
    assert message.startswith(f"multi.toml: {key}: "), message
    for word in words:
        assert word in message, message


# --- parsing -------------------------------------------------------------------------------------


def test_a_single_bot_table_is_as_before() -> None:
    sc = _load('[bot]\npolicy = "reconcile"\n')
    assert sc.bots == [sc.bot] and not sc.multi_bot and sc.more_bots == []
    assert sc.bot.name == SINGLE_BOT_NAME and sc.bot.account == "demo" and sc.exchange is None


def test_an_array_of_bots_names_accounts_and_defaults() -> None:
    sc = _load('''
        [[bot]]
        policy = "naive"
        [[bot]]
        name = "fixed"
        policy = "reconcile"
        pair = "ETHZAR"
        bid_spread = 0.002
    ''')
    assert sc.multi_bot and [b.name for b in sc.bots] == ["bot1", "fixed"] and sc.bot is sc.bots[0]
    assert [b.account for b in sc.bots] == ["bot1", "fixed"]  # an account per bot, named after it
    assert sc.bots[1].pair == "ETHZAR" and str(sc.bots[1].bid_spread) == "0.002"
    assert sc.market == {"pairs": ["BTCZAR", "ETHZAR"]}
    # the file declares no accounts: each bot gets one, with the demo account's balances and keys of its own
    config = config_from_dict(sc.exchange, "multi.toml")
    assert [a.name for a in config.accounts] == ["bot1", "fixed"]
    keys = {a.api_key for a in config.accounts}
    assert len(keys) == 2 and DEMO_API_KEY not in keys
    assert all(a.balances["BTC"] > 0 and a.balances["ZAR"] > 0 for a in config.accounts)
    # a bot named in [[bot]] may also use the demo account
    sc = _load('[[bot]]\naccount = "demo"\n[[bot]]\n')
    assert [a["api_key"] for a in sc.exchange["accounts"]][0] == DEMO_API_KEY


def test_declared_accounts_must_hold_every_bot() -> None:
    accounts = '''
        [[exchange.accounts]]
        name = "alice"
        api_key = "aa"
        api_secret = "bb"
        [exchange.accounts.balances]
        BTC = "1"
        ZAR = "1000000"
        [[exchange.accounts]]
        name = "bob"
        api_key = "cc"
        api_secret = "dd"
    '''
    sc = _load(accounts + '[[bot]]\naccount = "alice"\n[[bot]]\nname = "b"\naccount = "bob"\n')
    assert [b.account for b in sc.bots] == ["alice", "bob"] and len(sc.exchange["accounts"]) == 2
    _refused(accounts + '[[bot]]\naccount = "alice"\n[[bot]]\naccount = "carol"\n', "bot[1].account",
             "'carol'", "alice, bob")
    _refused('[bot]\naccount = "ghost"\n', "bot.account", "'ghost'", "demo")


def test_duplicates_are_refused_naming_the_field() -> None:
    _refused('[[bot]]\naccount = "x"\n[[bot]]\naccount = "x"\n', "bot[1].account", "'x'", "bot[0]",
             "its own account")
    _refused('[[bot]]\nname = "a"\naccount = "p"\n[[bot]]\nname = "a"\naccount = "q"\n', "bot[1].name",
             "duplicate bot name 'a'")
    _refused('[[bot]]\nname = "a b"\n', "bot[0].name", "bad bot name")
    _refused('[[bot]]\npolicy = "yolo"\n', "bot[0].policy", "unknown policy")
    _refused('[[bot]]\n[[bot]]\npair = "BTCZR"\n', "bot[1].pair", "did you mean 'BTCZAR'")
    _refused("bot = []\n", "bot", "at least one")
    _refused("bot = [1]\n", "bot[0]", "expected a table")


def test_expectations_per_bot() -> None:
    sc = _load('''
        [[bot]]
        name = "maker"
        [[bot]]
        name = "fixed"
        policy = "reconcile"

        [expect]
        false_cancels = 0
        [expect.policy.naive]
        violated = ["orphans"]
        [expect.bot.maker]
        violated = ["false_cancels", "orphans"]
        open_orders_slack = 3
        [expect.bot.fixed.policy.naive]
        violated = ["max_open_orders"]
    ''')
    maker, fixed = sc.bots
    assert sc.expected_for("reference", "naive", takes_policy=True, bot=maker) == ["false_cancels", "orphans"]
    assert sc.expected_for("reference", "reconcile", takes_policy=True, bot="fixed") == []
    # what a bot is expected to do as the file configures it does not follow it to another policy ...
    assert sc.expected_for("reference", "reconcile", takes_policy=True, bot=maker) == []
    # ... while a policy entry of the bot does, before the scenario's own
    assert sc.expected_for("reference", "naive", takes_policy=True, bot=fixed) == ["max_open_orders"]
    assert sc.expected_for("reference", "naive", takes_policy=True, bot=maker, expect_hold=True) == []
    # [expect] keys of the bot over the scenario's, in its check spec only
    assert check_spec(sc, maker).slack == 3 and check_spec(sc, fixed).slack == 0
    assert check_spec(sc, fixed).account == "fixed" and check_spec(sc).account == "maker"
    # a single [bot] file may use the spelling too, with its bot's name
    assert _load('[bot]\n[expect.bot.bot]\nviolated = ["orphans"]\n').expected_for(
        "reference", "naive", takes_policy=True) == ["orphans"]


def test_bad_expectations_per_bot_are_refused() -> None:
    two = '[[bot]]\nname = "naive"\n[[bot]]\nname = "fixed"\npolicy = "reconcile"\n'
    _refused(two + '[expect.bot.niave]\nviolated = ["orphans"]\n', "expect.bot.niave",
             "no bot named 'niave'", "did you mean 'naive'", "naive, fixed")
    _refused(two + '[expect.bot.naive]\nviolated = ["orphanz"]\n', "expect.bot.naive.violated[0]", "unknown check")
    _refused(two + '[expect.bot.naive]\nviolate = ["orphans"]\n', "expect.bot.naive.violate", "unknown key")
    _refused(two + '[expect.bot.naive.policy.yolo]\nviolated = []\n', "expect.bot.naive.policy.yolo",
             "unknown policy")
    _refused(two + '[expect]\norphans = false\n[expect.bot.naive]\nviolated = ["orphans"]\n',
             "expect.bot.naive.violated", "switches it off")
    _refused(two + '[expect.bot.naive]\norphans = false\nviolated = ["orphans"]\n',
             "expect.bot.naive.violated", "switches it off")
    _refused(two + "[expect.bot]\nnaive = 1\n", "expect.bot.naive", "expected a table")
    _refused('[bot]\n[expect.bot.other]\nviolated = []\n', "expect.bot.other", "no bot named 'other'")


# --- running -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_bots() -> RunResult:
    return run_scenario(load_scenario(TWO_BOTS).with_duration("12s"), keep_records=True)


def test_two_bots_one_book_naive_piles_up_and_reconcile_holds(two_bots: RunResult) -> None:
    naive, reconcile = two_bots.bots
    assert two_bots is naive and two_bots.others == [reconcile]
    assert (naive.bot, naive.account, naive.policy) == ("naive", "naive", "naive")
    assert (reconcile.bot, reconcile.account, reconcile.policy) == ("reconcile", "reconcile", "reconcile")
    assert naive.expected_violations == NAIVE_VERDICT and reconcile.expected_violations == []
    assert naive.as_expected, naive.unexpected
    assert reconcile.as_expected and reconcile.violated == [], reconcile.violated
    peak = {r.bot: next(c.figures["peak"] for c in r.checks if c.name == "max_open_orders") for r in two_bots.bots}
    assert peak["naive"] > 4 and peak["reconcile"] <= 2
    assert naive.sim_seconds == reconcile.sim_seconds and naive.seed == reconcile.seed == 7
    assert naive.reproduce == reconcile.reproduce == (f"valr-replay run {TWO_BOTS} --seed 7 --duration 12s")


def test_each_bot_is_judged_on_its_own_records(two_bots: RunResult) -> None:
    naive, reconcile = two_bots.bots
    trace = two_bots.records
    assert reconcile.records is trace or reconcile.records == records_for_bot(trace, "reconcile", "reconcile")
    mine = {r.bot: records_for_bot(trace, r.bot, r.account) for r in two_bots.bots}
    for me, other in ((naive, reconcile), (reconcile, naive)):
        records = mine[me.bot]
        own = [r for r in records if r["kind"] in ("client", "strategy")]
        assert own and all(r["data"]["bot"] == me.bot for r in own)
        cids = {r["data"]["client_order_id"] for r in own if r["data"].get("client_order_id")}
        assert cids and all(cid.startswith(f"HB-VR-{me.bot}-") for cid in cids)
        events = [r for r in records if r["kind"] == "event" and "account" in r["data"]]
        assert events and {r["data"]["account"] for r in events} == {me.account}
        # the account stream of the other bot's connection is not in this bot's records
        connects = {r["conn"]: r["data"]["account"] for r in records if r["kind"] == "ws" and r["type"] == "CONNECT"}
        assert set(connects.values()) == {me.account}
        other_cids = {r["data"]["client_order_id"] for r in mine[other.bot] if r["kind"] == "strategy"
                      and r["data"].get("client_order_id")}
        assert not other_cids & {r["data"].get("client_order_id") for r in records if r["kind"] == "client"}
        # a violation names a record of this bot's
        for c in me.checks:
            if c.first_violation is not None and me.records is trace:
                assert any(r is trace[c.first_violation["index"]] for r in records), c.name
    # what both bots' records hold is shared: meta, the public book, public REST; no account's order events
    ids = {id(r) for r in mine["reconcile"]}
    shared = [r for r in mine["naive"] if id(r) in ids]
    assert {r["kind"] for r in shared} <= {"meta", "event", "rest", "ws"}
    assert not [r for r in shared if r["kind"] == "event" and "account" in r["data"]]


def test_the_bots_share_the_book_and_never_trade_with_each_other(two_bots: RunResult) -> None:
    naive, reconcile = two_bots.bots
    trades = [r["data"]["trade"] for res in two_bots.bots for r in res.records
              if r["kind"] == "event" and r["type"] == "AccountTrade" and r["data"]["account"] == res.account]
    by_account = {acct: [t for t in trades if acct in (t["maker_account"], t["taker_account"])]
                  for acct in ("naive", "reconcile")}
    assert by_account["naive"] and by_account["reconcile"]  # the background market's takers hit both
    # post-only quotes never cross: no trade has both bots on it
    assert not [t for t in trades if {t["maker_account"], t["taker_account"]} == {"naive", "reconcile"}]


def test_bot_record_filter_is_a_streaming_predicate() -> None:
    def rec(kind: str, type_: str, data: dict[str, Any], conn: str = "x", dir_: str = "local") -> dict[str, Any]:
        return {"t": 0, "conn": conn, "dir": dir_, "kind": kind, "type": type_, "data": data}

    trace = [
        rec("meta", "RUN_START", {}),
        rec("ws", "CONNECT", {"account": "a"}, "account-1"),
        rec("ws", "CONNECT", {"account": "b"}, "account-2"),
        rec("strategy", "CREATE", {"client_order_id": "A1", "bot": "alpha"}, "strategy"),
        rec("strategy", "CREATE", {"client_order_id": "B1", "bot": "beta"}, "strategy"),
        rec("ws", "PLACE_LIMIT_ORDER", {"payload": {"customerOrderId": "A1"}}, "account-1", "out"),
        rec("ws", "PLACE_LIMIT_ORDER", {"payload": {"customerOrderId": "B1"}}, "account-2", "out"),
        rec("event", "OrderStatusChanged", {"account": "a", "order": {"order_id": "oa", "customer_order_id": "A1"}}),
        rec("event", "OrderStatusChanged", {"account": "b", "order": {"order_id": "ob", "customer_order_id": "B1"}}),
        rec("event", "BookChanged", {"pair": "BTCZAR"}),
        rec("rest", "DELETE /v1/orders/order", {"body": {"orderId": "ob", "pair": "BTCZAR"}}, "rest-1", "out"),
        rec("rest", "DELETE /v1/orders/order", {"status": 200}, "rest-1", "in"),
        rec("rest", "GET /v1/orders/BTCZAR/orderid/oa", {}, "rest-2", "out"),
        rec("rest", "GET /v1/public/pairs", {}, "rest-3", "out"),
        rec("client", "ORDER_STATE", {"client_order_id": "Z"}, "client"),  # untagged (one bot): everybody's
    ]
    alpha = bot_record_filter("alpha", "a")
    mine = [i for i, r in enumerate(trace) if alpha(r)]
    assert mine == [0, 1, 3, 5, 7, 9, 12, 13, 14]
    assert [i for i, r in enumerate(trace) if i not in mine] == [2, 4, 6, 8, 10, 11]
    assert [r["type"] for r in records_for_bot(trace, "beta", "b")] == [
        "RUN_START", "CONNECT", "CREATE", "PLACE_LIMIT_ORDER", "OrderStatusChanged", "BookChanged",
        "DELETE /v1/orders/order", "DELETE /v1/orders/order", "GET /v1/public/pairs", "ORDER_STATE"]


# --- the command line and the pytest item -------------------------------------------------------------


def _run_json(tmp_path: Path, *args: str) -> tuple[int, str, dict]:
    out = tmp_path / "out.json"
    res = CliRunner().invoke(main, ["run", str(TWO_BOTS), "--duration", "6s", "--json", str(out), "--no-timeline",
                                    *args])
    return res.exit_code, res.output, json.loads(out.read_text()) if out.exists() else {}


def test_run_prints_and_writes_a_column_per_bot(tmp_path: Path) -> None:
    code, output, doc = _run_json(tmp_path)
    runs = doc["runs"]
    assert [(r["bot"], r["account"], r["connector"], r["policy"]) for r in runs] == [
        ("naive", "naive", "reference", "naive"), ("reconcile", "reconcile", "reference", "reconcile")]
    assert runs[1]["violated"] == [] and runs[1]["as_expected"] is True
    assert runs[0]["expected_violations"] == NAIVE_VERDICT
    assert code == (0 if all(r["as_expected"] for r in runs) else 1), output
    header = next(line for line in output.splitlines() if "check" in line and "naive: reference naive" in line)
    assert "reconcile: reference reconcile" in header  # one table, a column per bot
    assert f"reproduce: valr-replay run {TWO_BOTS} --seed 7 --duration 6s" in output


def test_policy_and_connector_on_the_command_line_are_every_bots(tmp_path: Path) -> None:
    code, output, doc = _run_json(tmp_path, "--policy", "reconcile", "--expect-hold")
    assert code == 0, output
    assert [(r["bot"], r["policy"], r["violated"]) for r in doc["runs"]] == [
        ("naive", "reconcile", []), ("reconcile", "reconcile", [])]
    assert doc["runs"][0]["reproduce"] == (f"valr-replay run {TWO_BOTS} --policy reconcile --seed 7 --duration 6s "
                                           "--expect-hold")
    res = CliRunner().invoke(main, ["run", str(TWO_BOTS), "--seeds", "2"])
    assert res.exit_code == 2 and "--seeds" in res.output and "several bots" in res.output


def test_pytest_item_fails_naming_the_bot(pytester: pytest.Pytester) -> None:
    text = TWO_BOTS.read_text().replace('duration = "30s"', 'duration = "6s"')
    (pytester.path / "two.toml").write_text(text.replace("[expect.bot.naive]", "[expect.bot.reconcile]"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "two.toml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*two-bots-one-book: bot naive (reference naive): checks not as expected: *",
                                 "*two-bots-one-book: bot reconcile (reference reconcile): checks not as expected:*"])
