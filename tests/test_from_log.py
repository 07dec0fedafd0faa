"""`valr-replay from-log`: a bot's log lines to a scenario with the matching [[ordering]] constraints.

The seed report (tests/data/seed_report.log, the two lines that started the project) becomes
scenarios/from_log_seed_report.toml, in which the naive handler fails as in open_orders_race and
the fix holds, the placement reply 5 ms after the snapshot that lacked its order.
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from replay.cli import COMMANDS, main
from replay.from_log import (
    EVENTS,
    FromLogError,
    PatternError,
    builtin_patterns,
    fmt_duration,
    from_log,
    infer,
    parse_log,
    parse_patterns,
    parse_time,
    scenario_name,
)
from replay.runner import RunResult, run_scenario
from replay.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
SEED_LOG = ROOT / "tests" / "data" / "seed_report.log"
SEED_SCENARIO = ROOT / "scenarios" / "from_log_seed_report.toml"
CID = "HBOTSDEUT63a993aabaf9e717c13ae60693a"
EXID = "0198379c-5d70-7ddf-b4f7-a490aab443d8"
HINT = "# [expect.policy.naive]\n"


def generate(lines: list[str], **kw: Any) -> tuple[str, Any]:
    return from_log(lines, builtin_patterns(), name=kw.pop("name", "t"), log_name=kw.pop("log_name", "t.log"), **kw)


def invoke(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(main, ["from-log", *args], input=input)


# --- reading lines ------------------------------------------------------------------------------------------------


def test_times_of_each_spelling() -> None:
    assert parse_time("16:07:29,071") == ("clock", ((16 * 60 + 7) * 60 + 29) * 1_000_000 + 71_000)
    assert parse_time("16:07:29.071234") == ("clock", ((16 * 60 + 7) * 60 + 29) * 1_000_000 + 71_234)
    kind, us = parse_time("2025-07-21 16:07:29,071")
    assert kind == "date" and us % 1_000_000 == 71_000
    assert parse_time("2025-07-21T16:07:29.071Z") == (kind, us)
    assert parse_time("2025-07-21T18:07:29.071+02:00") == (kind, us)
    assert parse_time("+1006.412ms") == ("offset", 1_006_412)
    assert parse_time("1.5s") == ("offset", 1_500_000)
    assert parse_time("1006412000", "ns") == ("offset", 1_006_412)
    with pytest.raises(ValueError):
        parse_time("yesterday")
    assert [fmt_duration(u) for u in (5000, 6438, 1_500_000, 0, 15_608)] == ["5ms", "6.438ms", "1.5s", "0ms",
                                                                              "15.608ms"]
    assert scenario_name("from_log_seed_report") == "from-log-seed-report"


def test_the_seed_report_lines_are_a_snapshot_without_the_order_then_its_placement_reply() -> None:
    parsed = parse_log(SEED_LOG.read_text().splitlines(), builtin_patterns())
    assert parsed.unmatched == [] and parsed.lines == 2
    miss, placed = parsed.events
    assert (miss.event, miss.ids, miss.message) == ("snapshot-without", [("client", CID)], "OPEN_ORDERS_UPDATE")
    assert (placed.event, placed.ids, placed.message) == ("placement-confirmed", [("exchange", EXID)],
                                                          "PLACE_LIMIT_WS_RESPONSE")
    inference = infer(parsed)
    # nothing links the two ids but order and closeness: one order, and the link is said to be inferred
    (order,) = inference.orders
    assert order.client_ids == [CID] and order.exchange_ids == [EXID]
    assert order.link_notes and "nothing in the log links them but their order and closeness" in order.link_notes[0]
    (c,) = inference.constraints
    assert (c.name, c.first, c.first_when, c.then, c.gap_us) == (
        "snapshot-before-ack", "OPEN_ORDERS_UPDATE", "omits-order", "PLACE_LIMIT_WS_RESPONSE", 5000)


def test_the_generated_scenario_text() -> None:
    text, _ = generate(SEED_LOG.read_text().splitlines(), name="from-log-seed-report", log_name="seed_report.log")
    doc = tomllib.loads(text)
    assert doc["ordering"] == [{"name": "snapshot-before-ack", "first": "OPEN_ORDERS_UPDATE",
                                "first_when": "omits-order", "then": "PLACE_LIMIT_WS_RESPONSE", "gap": "5ms",
                                "orders": "every"}]
    assert doc["scenario"]["name"] == "from-log-seed-report"
    assert doc["latency"] == {"default": "1ms..4ms", "engine": "1ms..4ms"}
    assert doc["bot"] == {"connector": "reference", "policy": "naive", "pair": "BTCZAR", "order_refresh_time": "1s",
                          "bid_spread": 0.003, "ask_spread": 0.003, "order_amount": "0.001",
                          "filled_order_delay": "1s"}
    race = tomllib.loads((ROOT / "scenarios" / "open_orders_race.toml").read_text())
    assert {k: v for k, v in doc["expect"].items() if k != "policy"} == {
        k: v for k, v in race["expect"].items() if k != "policy"}
    assert "policy" not in doc["expect"]  # declared only once a run has shown it: a commented-out hint
    hint = text[text.index(HINT):]
    assert tomllib.loads(hint.replace("# ", ""))["expect"]["policy"]["naive"]["violated"] == (
        race["expect"]["policy"]["naive"]["violated"])
    # the source lines are quoted above the constraint, and the header says what was inferred
    block = text[text.index("[[ordering]]"):text.index("[bot]")]
    for line in SEED_LOG.read_text().splitlines():
        assert f"# {line}\n" in block
    header = text[:text.index("[scenario]")]
    assert "What was inferred" in header and "How to adjust it" in header and "orders = 3" in header
    assert "taken to be that order" in header


def test_the_committed_scenario_is_what_from_log_writes_but_the_declared_naive_verdict(tmp_path: Path) -> None:
    out = tmp_path / "from_log_seed_report.toml"
    r = invoke(str(SEED_LOG), "--out", str(out))
    assert r.exit_code == 0, r.output
    generated = out.read_text()
    committed = SEED_SCENARIO.read_text()
    cut = generated.index(HINT)
    assert committed[:cut] == generated[:cut]
    assert generated[cut:].count("\n") == 2  # the hint is all that follows
    assert "[expect.policy.naive]" in committed[cut:]


def test_long_form_hummingbot_lines_and_the_trackers_echo_of_the_false_cancel() -> None:
    prefix = "2025-07-21 {} - 4242 - hummingbot.connector.exchange.valr.valr_exchange - INFO - "
    lines = [
        prefix.format("16:07:28,000") + "Created LIMIT BUY order OTHER1 for 0.001 BTC-ZAR at 1495500.",
        prefix.format("16:07:29,071") + f"Order {CID} not found in exchange open orders - marking as cancelled",
        prefix.format("16:07:29,071") + f"Successfully canceled order {CID}.",
        "Traceback (most recent call last):",
        prefix.format("16:07:29,076") + f"Order placed successfully via WebSocket: {EXID}",
    ]
    text, inference = generate(lines)
    assert [e.event for e in inference.parsed.events] == [
        "placement-confirmed", "snapshot-without", "cancel-confirmed", "placement-confirmed"]
    assert inference.parsed.unmatched == [(4, "Traceback (most recent call last):")]
    echo = inference.parsed.events[2]
    assert echo.echo_of is inference.parsed.events[1]  # the tracker's own CANCELED, not a cancel reply
    (c,) = inference.constraints
    assert (c.first, c.then, c.gap_us) == ("OPEN_ORDERS_UPDATE", "PLACE_LIMIT_WS_RESPONSE", 5000)
    assert [o.describe() for o in inference.orders] == ["client id OTHER1", f"client id {CID}; exchange id {EXID}"]
    assert "(echo of line 2)" in text and "an echo" in text


def test_a_placement_is_not_linked_to_a_miss_of_an_order_already_confirmed_or_long_ago() -> None:
    confirmed = [f"16:07:29,000 - Created LIMIT SELL order {CID} for 0.001 BTC-ZAR at 1.",
                 f"16:07:29,071 - Order {CID} not found in exchange open orders - marking as cancelled",
                 f"16:07:29,076 - Order placed successfully via WebSocket: {EXID}"]
    _, inference = generate(confirmed)
    assert len(inference.orders) == 2 and inference.constraints == []
    # a snapshot without an order already seen is a stale snapshot: said, not made a constraint
    assert any("already seen" in s for s in inference.skipped)
    late = [confirmed[1], f"16:07:35,000 - Order placed successfully via WebSocket: {EXID}"]
    _, inference = generate(late)
    assert len(inference.orders) == 2 and inference.constraints == []


def test_two_orders_missing_from_one_snapshot_are_confirmed_first_placed_first() -> None:
    lines = ["16:07:29,071 - Order A1 not found in exchange open orders - marking as cancelled",
             "16:07:29,071 - Order B2 not found in exchange open orders - marking as cancelled",
             "16:07:29,076 - Order placed successfully via WebSocket: ex-a",
             "16:07:29,083 - Order placed successfully via WebSocket: ex-b"]
    _, inference = generate(lines)
    assert [(o.client_ids, o.exchange_ids) for o in inference.orders] == [(["A1"], ["ex-a"]), (["B2"], ["ex-b"])]
    (c,) = inference.constraints  # one per pair of message types, with the median gap (the lower of two)
    assert sorted(c.gaps_us) == [5000, 12000] and c.gap_us == 5000 and len(c.pairs) == 2


def test_the_cancel_is_timing_not_a_delivery_and_far_apart_events_are_not_one_race() -> None:
    lines = ["10:00:00,000 - Created LIMIT BUY order C1 for 0.001 BTC-ZAR at 1.",
             "10:00:00,004 - BUY order C1 completely filled.",
             "10:00:01,000 - (BTC-ZAR) Canceling the limit order C1. [clock=2025-07-21 10:00:01+00:00]",
             "10:00:01,009 - Successfully canceled order C1.",
             "10:00:05,000 - Created LIMIT BUY order C2 for 0.001 BTC-ZAR at 1.",
             "10:00:07,000 - The BUY order C2 amounting to 0.001/0.001 BTC has been filled at 1 ZAR."]
    _, inference = generate(lines)
    # placement -> status 4 ms apart: a constraint; the status -> cancel confirmation answers the cancel sent
    assert [(c.first, c.then, c.gap_us) for c in inference.constraints] == [
        ("PLACE_LIMIT_WS_RESPONSE", "ORDER_STATUS_UPDATE", 4000)]
    # Hummingbot's "Successfully canceled" comes with VALR's "Cancelled" status: the engine's cancel delay
    assert inference.latencies == {"engine.CANCEL_ORDER": (9000, 9000)}
    assert any("more than --max-gap 1s" in s for s in inference.skipped)
    _, wider = generate(lines, max_gap_us=3_000_000)
    assert ("PLACE_LIMIT_WS_RESPONSE", "NEW_ACCOUNT_TRADE", 2_000_000) in [
        (c.first, c.then, c.gap_us) for c in wider.constraints]


REFERENCE_SHOW = """\
   +1000.000ms  client      ·   ORDER_STATE                o2 cid=HB-VR-S2 SELL 0.00100000@1504500 None→PENDING_CREATE (create) [active]
   +1006.412ms  client      ·   ORDER_STATE                o2 cid=HB-VR-S2 SELL 0.00100000@1504500 PENDING_CREATE→CANCELED (open_orders_update:absent) [cached]
   +1012.850ms  client      ·   ORDER_STATE                o1 id=…02de92 cid=HB-VR-B1 BUY 0.00100000@1495500 PENDING_CREATE→OPEN (ws:ORDER_STATUS_UPDATE) [active]
>> +1025.499ms  client      ·   ORDER_STATE                o2 id=…d87208 cid=HB-VR-S2 SELL 0.00100000@1504500 CANCELED→OPEN (place_ack) [cached]
   +2000.000ms  account-1   ->  CANCEL_LIMIT_ORDER         msg=9531985d-5d9d-49f8-9818-e811892f902b o1 cid=HB-VR-B1
   +2001.543ms  client      ·   ORDER_STATE                o1 id=…02de92 cid=HB-VR-B1 BUY 0.00100000@1495500 OPEN→PENDING_CANCEL (cancel_ack) [active]
   +2008.922ms  client      ·   ORDER_STATE                o1 id=…02de92 cid=HB-VR-B1 BUY 0.00100000@1495500 PENDING_CANCEL→CANCELED (open_orders_update:absent) [cached]
"""  # noqa: E501


def test_reference_connector_show_lines() -> None:
    _, inference = generate(REFERENCE_SHOW.splitlines())
    assert [e.event for e in inference.parsed.events] == [
        "snapshot-without", "status", "placement-confirmed", "cancel-sent", "cancel-confirmed", "snapshot-without"]
    assert [u[0] for u in inference.parsed.unmatched] == [1]  # the create: no wire message of its own
    (c,) = inference.constraints
    assert (c.name, c.first_when, c.gap_us) == ("snapshot-before-ack", "omits-order", 19_087)
    assert inference.latencies == {"CANCEL_ORDER_WS_RESPONSE": (1543, 1543)}
    assert any("ordinary end" in s for s in inference.skipped)  # the snapshot after o1's cancel


# --- the command --------------------------------------------------------------------------------------------------


def test_command_is_registered_and_its_help_explains_events_and_format() -> None:
    assert COMMANDS["from-log"] == "replay.from_log_command:from_log"
    r = CliRunner().invoke(main, ["--help"])
    assert "from-log" in r.output
    r = invoke("--help")
    assert r.exit_code == 0
    for word in (*EVENTS, "[[pattern]]", "(?P<order>", "order_id", "[[ordering]]", "--patterns"):
        assert word in r.output, word
    # the example pattern file in --help is one
    example = r.output[r.output.index("prefix = "):r.output.index("Named groups")]
    patterns = parse_patterns("\n".join(line.strip() for line in example.splitlines()), "--help")
    assert [p.event for p in patterns] == ["snapshot-without", "cancel-confirmed"]
    (event,) = parse_log(["12:00:00,001 - Order c1 not found in open orders"], patterns).events
    assert event.ids == [("client", "c1")]


def test_command_counts_and_shows_unrecognised_lines_and_writes_stdout() -> None:
    log = SEED_LOG.read_text() + "".join(f"noise {i}\n" for i in range(8)) + "\n\n"
    r = CliRunner().invoke(main, ["from-log", "-", "--out", "-"], input=log)
    assert r.exit_code == 0, r.output
    assert "8 of 10 lines not recognised" in r.stderr
    assert "line 3: noise 0" in r.stderr and "line 7: noise 4" in r.stderr and "noise 5" not in r.stderr
    assert tomllib.loads(r.stdout)["ordering"][0]["gap"] == "5ms"
    assert "linked by inference" in r.stderr


def test_no_recognisable_line_is_bad_input(tmp_path: Path) -> None:
    log = tmp_path / "bot.log"
    log.write_text("hello\nworld\n")
    out = tmp_path / "s.toml"
    r = invoke(str(log), "--out", str(out))
    assert r.exit_code == 2 and "no recognisable line (2 non-blank lines" in r.output and str(log) in r.output
    assert not out.exists()
    r = invoke(str(tmp_path / "missing.log"), "--out", str(out))
    assert r.exit_code == 2 and "missing.log: cannot read" in r.output
    with pytest.raises(FromLogError):
        generate(["hello"])


def test_times_of_different_kinds_are_bad_input(tmp_path: Path) -> None:
    log = tmp_path / "mixed.log"
    log.write_text("16:07:29,071 - Order A not found in exchange open orders\n"
                   "2025-07-21 16:07:29,076 - Order placed successfully via WebSocket: ex-a\n")
    r = invoke(str(log), "--out", str(tmp_path / "s.toml"))
    assert r.exit_code == 2 and "different kinds" in r.output and "line 2" in r.output


@pytest.mark.parametrize(("text", "where"), [
    ("[[pattern]]\nevent = 'snapshot-gone'\nregex = '(?P<time>x)(?P<order>y)'\n", "pattern[0].event: unknown event"),
    ("[[pattern]]\nregex = '(?P<time>x)(?P<order>y)'\n", "pattern[0].event: missing"),
    ("[[pattern]]\nevent = 'fill'\nregex = '(?P<time>x)(?P<ordr>y)'\n", "pattern[0].regex: no named group `order`"),
    ("[[pattern]]\nevent = 'fill'\nregex = '(?P<time>x)(?P<order>y'\n", "pattern[0].regex: bad regular expression"),
    ("[[pattern]]\nevent = 'fill'\nregex = '(?P<time>x)(?P<order>y)'\ncolour = 1\n", "pattern[0].colour: unknown key"),
    ("[[pattern]]\nevent = 'fill'\nregex = '(?P<time>x)(?P<order>y)'\norder_id = 'mine'\n", "pattern[0].order_id"),
    ("[[pattern]]\nevent = 'fill'\nregex = '(?P<time>x)(?P<order>y)'\nmessage = 'FILL'\n", "pattern[0].message"),
    ("[[pattern]]\nevent = 'snapshot-without'\nregex = '(?P<time>x)(?P<order>y)'\nmessage = 'ORDER_STATUS_UPDATE'\n",
     "pattern[0].message: event 'snapshot-without' has a fixed meaning"),
    ("[[pattern]]\nevent = 'fill'\nregex = '(?P<time>x)(?P<order>y)'\ntime_unit = 'days'\n", "pattern[0].time_unit"),
    ("[[pattern]\n", "invalid TOML"),
    ("prefix = 3\n", "prefix: expected a string"),
    ("[pattern]\nevent = 'fill'\n", "pattern: expected [[pattern]] entries"),
])
def test_a_bad_pattern_file_names_the_file_and_the_key(tmp_path: Path, text: str, where: str) -> None:
    bad = tmp_path / "mine.toml"
    bad.write_text(text)
    r = invoke(str(SEED_LOG), "--patterns", str(bad), "--out", str(tmp_path / "s.toml"))
    assert r.exit_code == 2, r.output
    assert r.output.startswith(f"error: {bad}: {where}"), r.output
    with pytest.raises(PatternError, match=f"^{bad.name}: "):
        parse_patterns(text, bad.name)


def test_a_users_patterns_come_first_and_can_stand_alone(tmp_path: Path) -> None:
    mine = tmp_path / "mine.toml"
    mine.write_text("prefix = '''^\\[(?P<time>[\\d.]+)\\] '''\ntime_unit = 'ms'\n"
                    "[[pattern]]\nevent = 'snapshot-without'\nregex = '''snapshot lacks (?P<order>\\w+)'''\n"
                    "[[pattern]]\nevent = 'placement-confirmed'\n"
                    "regex = '''ack (?P<order>\\w+) id=(?P<exchange_id>\\w+)'''\n")
    log = tmp_path / "bot.log"
    log.write_text("[100.0] snapshot lacks c7\n[107.5] ack c7 id=e7\n16:07:29,071 - Order c7 not found in "
                   "exchange open orders\n")
    out = tmp_path / "s.toml"
    r = invoke(str(log), "--patterns", str(mine), "--no-builtin-patterns", "--out", str(out), "--name", "mine")
    assert r.exit_code == 0, r.output
    assert "1 of 3 lines not recognised" in r.output  # the Hummingbot line: the shipped sets are off
    doc = tomllib.loads(out.read_text())
    assert doc["scenario"]["name"] == "mine" and doc["ordering"][0]["gap"] == "7.5ms"
    r = invoke(str(log), "--no-builtin-patterns", "--out", str(out))
    assert r.exit_code == 2 and "needs at least one --patterns FILE" in r.output


def test_the_shipped_patterns_are_package_data() -> None:
    names = {p.source for p in builtin_patterns()}
    assert names == {"log_patterns/hummingbot.toml", "log_patterns/reference.toml"}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "log_patterns/*.toml" in pyproject["tool"]["setuptools"]["package-data"]["replay"]


# --- end to end: the generated scenario runs ----------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def seed_run(policy: str) -> RunResult:
    return run_scenario(load_scenario(SEED_SCENARIO), policy, keep_records=True)


def fig(r: RunResult, check: str, figure: str) -> Any:
    return next(c for c in r.checks if c.name == check).figures[figure]


def test_seed_scenario_naive_fails_as_the_open_orders_race_does() -> None:
    r = seed_run("naive")
    assert r.as_expected, r.unexpected
    race = load_scenario(ROOT / "scenarios" / "open_orders_race.toml")
    assert set(r.violated) == set(race.expected_violations["naive"])
    assert fig(r, "false_cancels", "false_cancels") > 5 and fig(r, "orphans", "orphans") > 5
    assert fig(r, "max_open_orders", "peak") > 4
    states = [(x["t"], x["data"]) for x in r.records if x["kind"] == "client" and x["type"] == "ORDER_STATE"]
    falsely = [(t, d) for t, d in states if d["from"] == "PENDING_CREATE" and d["to"] == "CANCELED"
               and d["reason"] == "open_orders_update:absent"]
    assert falsely
    for t, d in falsely:  # each false cancel: the late placement reply reopens the order exactly 5 ms later
        (reopen,) = [t2 for t2, d2 in states if d2["client_order_id"] == d["client_order_id"]
                     and d2["reason"] == "place_ack"]
        assert reopen - t == 5_000_000
    first = next(c for c in r.checks if c.name == "false_cancels")
    shown = "\n".join(first.timeline)
    assert "OPEN_ORDERS_UPDATE" in shown and "PLACE_LIMIT_WS_RESPONSE" in shown and "CANCELED→OPEN" in shown


@pytest.mark.parametrize("policy", ["reconcile", "ignore", "age-guard:5"])
def test_seed_scenario_holds_under_the_fixes(policy: str) -> None:
    r = seed_run(policy)
    assert r.as_expected and r.violated == [], r.violated
    assert fig(r, "max_open_orders", "peak") <= 2


def test_generated_scenario_run_exit_codes_naive_1_reconcile_0(tmp_path: Path) -> None:
    out = tmp_path / "gen.toml"
    assert invoke(str(SEED_LOG), "--out", str(out)).exit_code == 0
    runner = CliRunner()
    naive = runner.invoke(main, ["run", str(out), "--policy", "naive"])
    assert naive.exit_code == 1, naive.output
    assert "false_cancels" in naive.output
    fixed = runner.invoke(main, ["run", str(out), "--policy", "reconcile"])
    assert fixed.exit_code == 0, fixed.output


def test_a_run_of_the_seed_scenario_read_back_gives_the_same_constraint(tmp_path: Path) -> None:
    """The reference patterns read what `run --trace` and `show` write today: a round trip."""
    trace = tmp_path / "t.jsonl"
    run_scenario(load_scenario(SEED_SCENARIO), "naive", trace_path=trace)
    shown = CliRunner().invoke(main, ["show", str(trace)])
    assert shown.exit_code == 0
    for lines in (trace.read_text().splitlines(), shown.output.splitlines()):
        _, inference = generate(lines)
        snap = next(c for c in inference.constraints if c.name == "snapshot-before-ack")
        assert snap.first_when == "omits-order" and set(snap.gaps_us) == {5000} and len(snap.pairs) > 5


def test_two_snapshots_without_a_pending_order_keep_the_later_as_the_first_message() -> None:
    lines = ["16:07:29,060 - Order A1 not found in exchange open orders - marking as cancelled",
             "16:07:29,071 - Order A1 not found in exchange open orders - marking as cancelled",
             "16:07:29,076 - Order placed successfully via WebSocket: ex-a"]
    _, inference = generate(lines)
    (c,) = inference.constraints
    assert c.gap_us == 5000 and c.pairs[0][0].line_no == 2
    assert any("still pending" in s for s in inference.skipped)
