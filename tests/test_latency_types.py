"""A ``[latency]`` key in capitals must be a VALR message type the codec knows
(replay.codec.MESSAGE_TYPES): a typo is refused with a did-you-mean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from replay.cli import main
from replay.codec import MESSAGE_TYPES
from replay.latency import LatencyModel, SpecError
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
    known = MESSAGE_TYPES
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
