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
                                    "--report", str(report), "--trace", str(d / "t.jsonl"), "--no-timeline",
                                    "--json", str(d / "runs.json")])
    assert res.exit_code == 0, res.output
    return {"dir": d, "text": report.read_text(encoding="utf-8"), "size": report.stat().st_size,
            "traces": [d / "t-open-orders-race-naive.jsonl", d / "t-open-orders-race-reconcile.jsonl"],
            "json": d / "runs.json"}


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


def test_run_trace_still_refused_with_seeds(tmp_path) -> None:
    (tmp_path / "race.toml").write_text(RACE)
    res = CliRunner().invoke(main, ["run", str(tmp_path / "race.toml"), "--seeds", "2", "--trace",
                                    str(tmp_path / "t.jsonl"), "--report", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "--trace" in res.output
    assert not (tmp_path / "r.html").exists()


def report_of(tmp_path, *files: Any, expect: int = 0, name: str = "r.html") -> str:
    out = tmp_path / name
    res = CliRunner().invoke(main, ["report", *map(str, files), "--out", str(out)])
    assert res.exit_code == expect, res.output
    return out.read_text(encoding="utf-8") if expect == 0 else res.output


def sections(root: Element) -> dict[str, Element]:
    return {e.attrs["id"]: e for e in root.find_all("section")}


def test_report_of_a_run_json_is_the_report_of_its_traces(made, tmp_path) -> None:
    text = report_of(tmp_path, made["json"])
    assert verdict_table(text) == verdict_table(made["text"])
    root = parse(text)
    assert [c.attrs["data-run"] for c in root.find_all("svg", "open-orders")] == ["run-1", "run-2"]
    assert root.find_all("svg", "sequence") and not root.find_all(cls="note")
    # a trace named relative to the JSON file's directory is found from anywhere
    doc = json.loads(made["json"].read_text())
    for row in doc["runs"]:
        row["trace"] = row["trace"].rsplit("/", 1)[-1]
    (made["dir"] / "relative.json").write_text(json.dumps(doc))
    assert verdict_table(report_of(tmp_path, made["dir"] / "relative.json", name="rel.html")) == verdict_table(text)


def test_a_run_json_row_without_its_trace_is_a_verdict_with_a_note(made, tmp_path) -> None:
    doc = json.loads(made["json"].read_text())
    doc["runs"][0]["trace"] = None  # naive, run without --trace
    doc["runs"][1]["trace"] = str(tmp_path / "gone.jsonl")  # reconcile, its trace since deleted
    (tmp_path / "runs.json").write_text(json.dumps(doc))
    text = report_of(tmp_path, tmp_path / "runs.json")
    assert verdict_table(text) == verdict_table(made["text"])  # the JSON's own checks: the same verdicts
    root = parse(text)
    assert not root.find_all("svg", "open-orders") and not root.find_all("svg", "sequence")
    naive, reconcile = sections(root)["run-1"], sections(root)["run-2"]
    (note,) = naive.find_all("p", "note")
    assert note.all_text().startswith("no trace: re-run with `")
    assert f"{doc['runs'][0]['reproduce']} --trace FILE" in note.all_text()
    assert "false_cancels" in naive.all_text() and "violated" in naive.all_text()
    (note,) = reconcile.find_all("p", "note")
    assert "gone.jsonl not found" in note.all_text() and doc["runs"][1]["reproduce"] in note.all_text()
    # mixed with the traces: one verdict row, charts only for the runs that have their records
    text = report_of(tmp_path, tmp_path / "runs.json", *made["traces"], name="mixed.html")
    root = parse(text)
    assert [c.attrs["data-run"] for c in root.find_all("svg", "open-orders")] == ["run-3", "run-4"]
    assert verdict_table(text).count("<tr>") == 2  # head and one scenario (seed) row of four runs


def test_a_run_known_only_by_its_checks_draws_nothing() -> None:
    checks = [CheckResult(name="false_cancels", held=False, figures={}, first_violation=None, message="1 false")]
    text = build_report([ReportRun(scenario="s", seed=3, label="naive", checks=checks, note="no trace: why")])
    root = parse(text)
    assert not root.find_all("svg") and not root.find_all("pre")
    assert "violated: false_cancels" in verdict_table(text)
    assert [p.all_text() for p in root.find_all("p", "note")] == ["no trace: why"]


# A sweep of the race, shorter still: naive fails every seed, reconcile none (checked: seeds 0..5 at 5 s)
SWEEP_RACE = RACE.replace('duration = "8s"', 'duration = "5s"')


def rate_rows(root: Element) -> dict[str, Element]:
    (table,) = [t for t in root.find_all("table") if t.attrs.get("id") == "failure-rates"]
    return {tr.attrs["data-label"]: tr for tr in table.find_all("tr") if "data-label" in tr.attrs}


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("sweep")
    (d / "race.toml").write_text(SWEEP_RACE)
    res = CliRunner().invoke(main, ["run", str(d / "race.toml"), "--seeds", "4", "--workers", "1",
                                    "--policy", "naive", "--policy", "reconcile", "--report", str(d / "r.html"),
                                    "--json", str(d / "sweep.json")])
    assert res.exit_code == 0, res.output
    return {"dir": d, "text": (d / "r.html").read_text(encoding="utf-8"), "json": d / "sweep.json"}


def test_sweep_report_gives_the_failure_rate_per_connector(swept) -> None:
    root = parse(swept["text"])
    rows = rate_rows(root)
    assert list(rows) == ["naive", "reconcile"]
    naive, reconcile = rows["naive"], rows["reconcile"]
    assert naive.attrs["data-runs"] == reconcile.attrs["data-runs"] == "4"
    assert float(naive.attrs["data-rate"]) > 0 and float(reconcile.attrs["data-rate"]) == 0
    assert "false_cancels" in naive.all_text() and "below" in reconcile.all_text()  # "below 53 %": the bound
    assert naive.find_all("svg", "rate-bar") and reconcile.find_all("svg", "rate-bar")
    doc = json.loads(swept["json"].read_text())
    failing = [r for r in doc["runs"] if r["label"] == "naive" and r["violated"]]
    assert len(failing) == int(naive.attrs["data-failures"])
    shown = [c.all_text() for c in naive.find_all("code", "reproduce")]
    assert shown == [r["reproduce"] for r in failing][:len(shown)] and shown
    assert not reconcile.find_all("code", "reproduce")
    # a sweep's runs are rates, not hundreds of verdicts
    assert not [t for t in root.find_all("table") if t.attrs.get("id") == "verdicts"]
    assert not root.find_all("svg", "open-orders")


def test_report_of_a_sweep_json_is_the_sweeps_report(swept, tmp_path) -> None:
    text = report_of(tmp_path, swept["json"])
    table = re.search(r'<table id="failure-rates">.*?</table>', text, re.S)
    assert table and table.group(0) in swept["text"]


def test_many_failing_seeds_show_the_first_few_and_how_many_more(swept, tmp_path) -> None:
    doc = json.loads(swept["json"].read_text())
    naive = [r for r in doc["runs"] if r["label"] == "naive"]
    doc["runs"] = [{**naive[0], "seed": s, "reproduce": f"valr-replay run x.toml --seed {s}", "as_expected": s != 7}
                   for s in range(20)]
    (tmp_path / "many.json").write_text(json.dumps(doc))
    row = rate_rows(parse(report_of(tmp_path, tmp_path / "many.json")))["naive"]
    assert len(row.find_all("code", "reproduce")) == 5
    (more,) = row.find_all("li", "more")
    assert more.all_text() == "and 15 more"
    (note,) = row.find_all("p", "note")  # the seed that sets the exit status, though not among the first five
    assert "Not as the scenario expects" in note.all_text() and "seed 7." in note.all_text()


def test_report_of_an_exploration(tmp_path) -> None:
    out = tmp_path / "found"
    res = CliRunner().invoke(main, ["explore", str(ROOT / "scenarios" / "explore_base.toml"), "--policy", "naive",
                                    "--budget", "4", "--workers", "1", "--duration", "4s", "--shrink", "1",
                                    "--check", "false_cancels", "--out", str(out), "--json",
                                    str(tmp_path / "explore.json")])
    assert res.exit_code == 1, res.output  # found the race
    doc = json.loads((tmp_path / "explore.json").read_text())
    text = report_of(tmp_path, tmp_path / "explore.json")
    root = parse(text)
    (row,) = rate_rows(root).values()
    assert row.attrs["data-label"] == "naive" and row.attrs["data-runs"] == str(doc["schedules"])
    assert int(row.attrs["data-failures"]) == doc["by_check"]["false_cancels"] > 0
    assert "schedules" in row.all_text()
    found = doc["counterexamples"][0]["minimal"]["scenario"]
    assert [c.all_text() for c in row.find_all("code", "reproduce")] == [f"valr-replay run {found}"]
    # the found scenario's trace is there: its race, as a run of the report
    assert root.find_all("svg", "open-orders") and root.find_all("svg", "sequence")
    assert "false_cancels" in verdict_table(text)


@pytest.mark.parametrize("content, words", [
    ('{"foo": 1}', ["keys foo", "not a run JSON"]),
    ('{\n  "schema_version": 2,\n  "runs": [\n', ["malformed JSON", "line 4"]),
    ('[1, 2]', ["a JSON list"]),
    ('{"schema_version": 99, "runs": []}', ["schema_version 99 is newer", "(2)"]),
    ('{"schema_version": "2", "runs": []}', ['"schema_version": expected int']),
    ('{"schema_version": 2, "runs": {}}', ['"runs": expected list']),
    ('{"schema_version": 2, "runs": [{"checks": []}]}', ['runs[0]."scenario"', "missing"]),
    ('{"schema_version": 2, "runs": [{"seed": 1}], "sweep": {}}', ['runs[0]."scenario"']),
    ('{"schedules": 4, "counterexamples": {}, "by_check": {}}', ['"counterexamples": expected list']),
])
def test_bad_json_exits_2_naming_the_file_and_field(tmp_path, content: str, words: list[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    output = " ".join(report_of(tmp_path, bad, expect=2).split())
    assert str(bad) in output
    for word in words:
        assert word in output
    assert not (tmp_path / "r.html").exists()


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
