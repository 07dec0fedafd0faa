"""A ``[latency]`` key in capitals must be a VALR message type the codec knows
(replay/message_types.py reads them from replay/codec.py): a typo is refused with a did-you-mean."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from replay import message_types
from replay.cli import main
from replay.latency import LatencyModel, SpecError
from replay.message_types import known_message_types, message_types_of
from replay.scenario import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parent.parent


def test_a_misspelt_message_type_is_refused_naming_file_key_and_the_type_meant(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('[latency]\nORDER_STATUS_UPDTE = "5ms..15ms"\n', encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    message = str(err.value)
    assert message.startswith(f"{path}: latency.ORDER_STATUS_UPDTE: unknown message type 'ORDER_STATUS_UPDTE'")
    assert "did you mean 'ORDER_STATUS_UPDATE'" in message
    res = CliRunner().invoke(main, ["run", str(path)])
    assert res.exit_code == 2 and "latency.ORDER_STATUS_UPDTE" in res.output and "ORDER_STATUS_UPDATE" in res.output


def test_a_type_nothing_like_a_known_one_lists_them():
    with pytest.raises(SpecError) as err:
        LatencyModel.from_spec({"ZZZ": "1ms"})
    assert err.value.key == "latency.ZZZ" and "OPEN_ORDERS_UPDATE" in err.value.problem


def test_every_type_the_server_sends_is_known():
    known = known_message_types()
    assert known is not None
    sent = set()
    for capture in sorted((ROOT / "captures").glob("*.jsonl")):
        for line in capture.read_text(encoding="utf-8").splitlines()[1:]:
            rec = json.loads(line)
            if rec["kind"] == "ws" and rec["dir"] == "in" and rec["type"]:
                sent.add(rec["type"])
    assert {"OPEN_ORDERS_UPDATE", "PLACE_LIMIT_WS_RESPONSE", "AGGREGATED_ORDERBOOK_UPDATE"} <= sent
    assert sent <= known, sent - known
    for code in known:
        LatencyModel.from_spec({code: "1ms"})


FAKE_CODEC = '''\
from typing import Literal

REQUEST_TYPES = ("DO_THING",)
RESPONSE_TYPES = {"DO_THING": "DO_THING_WS_RESPONSE"}
MARK = "MARK_PRICE_UPDATE"
NOT_A_TYPE = "SOMETHING_ELSE"


def pong():
    return {"type": "PONG"}


def mark():
    return {"type": MARK, "data": {}}


def status():
    msg = {"data": {}}
    msg["type"] = "ORDER_STATUS_UPDATE"
    return msg


def book(kind, pair):
    return {"type": kind, "currencyPairSymbol": pair}


def l1(pair, *, kind: Literal["OB_L1_SNAPSHOT", "OB_L1_DIFF"]):
    return dict(type=kind, ps=pair)
'''

FAKE_SERVER = '''\
import fake_codec as codec


def send(first, pair):
    codec.book("FULL_ORDERBOOK_SNAPSHOT" if first else "FULL_ORDERBOOK_UPDATE", pair)
    codec.l1(pair, kind="OB_L1_DIFF")
    other("NOT_SENT_AS_A_TYPE")
'''


def _fake_codec(tmp_path: Path):
    (tmp_path / "fake_codec.py").write_text(FAKE_CODEC, encoding="utf-8")
    (tmp_path / "fake_server.py").write_text(FAKE_SERVER, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("fake_codec", tmp_path / "fake_codec.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fake_codec"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["fake_codec"]
    return module


def test_the_types_are_read_from_the_codec_and_its_callers(tmp_path):
    codec = _fake_codec(tmp_path)
    types = message_types_of(codec, [tmp_path / "fake_codec.py", tmp_path / "fake_server.py"])
    assert types == {"DO_THING", "DO_THING_WS_RESPONSE", "PONG", "MARK_PRICE_UPDATE", "ORDER_STATUS_UPDATE",
                     "FULL_ORDERBOOK_SNAPSHOT", "FULL_ORDERBOOK_UPDATE", "OB_L1_SNAPSHOT", "OB_L1_DIFF"}


def test_a_type_the_codec_learns_is_accepted_as_a_latency_key(tmp_path, monkeypatch):
    spec = {"FULL_ORDERBOOK_UPDATE": "5ms", "OB_L1_DIFF": "1ms..3ms"}
    codec = _fake_codec(tmp_path)
    learnt = message_types_of(codec, [tmp_path / "fake_server.py"])
    monkeypatch.setattr(message_types, "known_message_types", lambda: learnt)
    model = LatencyModel.from_spec(spec)
    assert set(model.by_type) == set(spec)
    monkeypatch.setattr(message_types, "known_message_types", lambda: frozenset({"PONG"}))
    with pytest.raises(SpecError, match="unknown message type 'FULL_ORDERBOOK_UPDATE'"):
        LatencyModel.from_spec(spec)
