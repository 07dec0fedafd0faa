"""The HTML report (``run --report``, ``valr-replay report``): one self-contained file with the verdicts, each
run's open orders over time and a sequence diagram of the first violation, checked as parsed HTML."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from click.testing import CliRunner

from replay.checks import CheckResult
from replay.cli import main
from replay.report import ReportRun, build_report

from conftest import ROOT

# The race, short: naive leaks an order in every refresh cycle (every 2 s), reconcile holds.
RACE = (ROOT / "scenarios" / "open_orders_race.toml").read_text().replace('duration = "60s"', 'duration = "8s"')


class Element:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Element | None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Element] = []
        self.text = ""

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list[Element]:
        return [e for e in self.walk() if (tag is None or e.tag == tag) and (cls is None or cls in e.classes)]

    def all_text(self) -> str:
        return self.text + "".join(c.all_text() for c in self.children)


VOID = {"meta", "br", "link", "img", "input", "hr"}


class Tree(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.root = Element("#root", {}, None)
        self.cur = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        el = Element(tag, {k: v or "" for k, v in attrs}, self.cur)
        self.cur.children.append(el)
        if tag not in VOID:
            self.cur = el

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.cur.children.append(Element(tag, {k: v or "" for k, v in attrs}, self.cur))

    def handle_endtag(self, tag: str) -> None:
        el: Element | None = self.cur
        while el is not None and el.tag != tag:
            el = el.parent
        assert el is not None and el.parent is not None, f"</{tag}> closes nothing open"
        self.cur = el.parent

    def handle_data(self, data: str) -> None:
        self.cur.text += data


def parse(text: str) -> Element:
    tree = Tree()
    tree.feed(text)
    tree.close()
    assert tree.cur is tree.root, f"<{tree.cur.tag}> left open"
    return tree.root


def verdict_table(text: str) -> str:
    found = re.search(r'<table id="verdicts">.*?</table>', text, re.S)
    assert found
    return found.group(0)


def peak_y(svg: Element, cls: str) -> float:
    """The highest point (smallest y) of the chart's polyline ``cls``: a higher count of orders."""
    (line,) = svg.find_all("polyline", cls)
    ys = [float(p.split(",")[1]) for p in line.attrs["points"].split()]
    return min(ys)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("report")
    (d / "race.toml").write_text(RACE)
    report = d / "r.html"
    res = CliRunner().invoke(main, ["run", str(d / "race.toml"), "--policy", "naive", "--policy", "reconcile",
                                    "--report", str(report), "--trace", str(d / "t.jsonl"), "--no-timeline"])
    assert res.exit_code == 0, res.output
    return {"dir": d, "text": report.read_text(encoding="utf-8"), "size": report.stat().st_size,
            "traces": [d / "t-open-orders-race-naive.jsonl", d / "t-open-orders-race-reconcile.jsonl"]}


def test_report_is_one_self_contained_file(made) -> None:
    root = parse(made["text"])
    assert made["size"] < 2 * 1024 * 1024
    for el in root.walk():
        for attr in ("src", "href", "xlink:href"):
            value = el.attrs.get(attr)
            assert value is None or "://" not in value, (el.tag, value)
    assert not root.find_all("link") and not root.find_all("img")
    assert all("src" not in s.attrs for s in root.find_all("script"))


def test_verdict_table_links_each_run_to_its_section(made) -> None:
    root = parse(made["text"])
    tables = [t for t in root.find_all("table") if t.attrs.get("id") == "verdicts"]
    assert len(tables) == 1
    cells = [td for td in tables[0].find_all("td") if td.find_all("a")]
    assert len(cells) == 2
    ids = {e.attrs["id"] for e in root.walk() if "id" in e.attrs}
    texts = []
    for td in cells:
        (link,) = td.find_all("a")
        assert link.attrs["href"].startswith("#") and link.attrs["href"][1:] in ids
        texts.append(td.all_text())
    assert "naive" in texts[0] and "false_cancels" in texts[0]
    assert "reconcile" in texts[1] and "all 12 checks held" in texts[1]


def test_open_orders_charts_show_naive_piling_up_against_reconcile(made) -> None:
    root = parse(made["text"])
    charts = root.find_all("svg", "open-orders")
    assert [c.attrs["data-run"] for c in charts] == ["run-1", "run-2"]
    for chart in charts:
        for cls in ("truth", "belief"):
            (line,) = chart.find_all("polyline", cls)
            assert len(line.attrs["points"].split()) >= 2
    naive, reconcile = charts
    # side by side: one figure row, one time axis and one order axis for both
    assert naive.parent is not None and reconcile.parent is not None
    assert naive.parent.parent is reconcile.parent.parent
    assert "side-by-side" in naive.parent.parent.classes
    assert peak_y(naive, "truth") < peak_y(reconcile, "truth")  # higher: more open orders at the exchange
    assert int(naive.attrs["data-truth-peak"]) > int(reconcile.attrs["data-truth-peak"])
    assert naive.find_all("line", "violation") and not reconcile.find_all("line", "violation")
    assert naive.find_all("line", "cycle")


def test_sequence_diagram_of_the_false_cancel(made) -> None:
    root = parse(made["text"])
    diagrams = root.find_all("svg", "sequence")
    assert diagrams and all(d.attrs["id"].startswith("run-1-seq") for d in diagrams)  # reconcile: none
    first = next(d for d in diagrams if d.attrs["id"] == "run-1-seq")
    assert first.attrs["data-check"] == "false_cancels"
    msgs = first.find_all(cls="msg")
    assert len(msgs) >= 5
    records = [json.loads(m.attrs["data-json"]) for m in msgs]
    times = [r["t"] for r in records]
    assert times == sorted(times)
    (violating,) = [m for m in msgs if "violating" in m.classes]
    rec = json.loads(violating.attrs["data-json"])
    assert rec["type"] == "ORDER_STATE" and rec["data"]["to"] == "CANCELED"
    assert rec["data"]["reason"].startswith("open_orders_update")
    cid = rec["data"]["client_order_id"]
    # the placement reply of that very order comes after the false cancel, in the same diagram
    later = [r for r in records if r["t"] > rec["t"]]
    assert any(r["type"] == "PLACE_LIMIT_WS_RESPONSE" and cid in json.dumps(r) for r in later)
    assert re.search(r"\bo\d+\b", violating.all_text())  # orders labelled as in show
    assert any(p.attrs.get("id") == "json-view" for p in root.find_all("pre"))


def test_report_command_from_traces_gives_the_same_verdicts(made, tmp_path) -> None:
    out = tmp_path / "again.html"
    res = CliRunner().invoke(main, ["report", *map(str, made["traces"]), "--scenario", str(made["dir"] / "race.toml"),
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text(encoding="utf-8")
    assert verdict_table(text) == verdict_table(made["text"])
    assert len(parse(text).find_all("svg", "open-orders")) == 2


def test_a_run_without_violation_still_gives_verdicts_and_a_chart(made, tmp_path) -> None:
    out = tmp_path / "held.html"
    res = CliRunner().invoke(main, ["report", str(made["traces"][1]), "--out", str(out)])
    assert res.exit_code == 0, res.output
    root = parse(out.read_text(encoding="utf-8"))
    assert len(root.find_all("svg", "open-orders")) == 1
    assert not root.find_all("svg", "sequence")
    assert "all 12 checks held" in verdict_table(out.read_text(encoding="utf-8"))


def test_bad_input_exits_2_naming_the_file(tmp_path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("this is not a trace\n")
    res = CliRunner().invoke(main, ["report", str(bad), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 2
    assert str(bad) in res.output
    assert not (tmp_path / "r.html").exists()
    res = CliRunner().invoke(main, ["report", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "missing.jsonl" in res.output


def test_run_report_refused_with_seeds(tmp_path) -> None:
    (tmp_path / "race.toml").write_text(RACE)
    res = CliRunner().invoke(main, ["run", str(tmp_path / "race.toml"), "--seeds", "2",
                                    "--report", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "--report" in res.output


def test_everything_from_messages_is_escaped() -> None:
    evil = "<script>alert(1)</script>"
    rec = {"t": 0, "wall": "", "conn": "client", "dir": "local", "kind": "client", "type": "ORDER_STATE",
           "data": {"client_order_id": evil, "to": "CANCELED", "where": "active", "reason": evil}}
    check = CheckResult(name="false_cancels", held=False, figures={}, message=evil,
                        first_violation={"index": 0, "t_s": 0.0, "record": rec, "what": evil})
    text = build_report([ReportRun(scenario=evil, seed=1, label=evil, checks=[check], records=[rec])])
    assert "<script>alert" not in text
    assert text.count("<script>") == 1  # the report's own
    root = parse(text)
    (msg,) = root.find_all(cls="msg")
    assert json.loads(msg.attrs["data-json"])["data"]["client_order_id"] == evil
