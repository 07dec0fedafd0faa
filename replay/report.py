"""A self-contained HTML report of runs: verdicts, open orders over time, and the race of each violation.

``build_report(runs)`` is the pure core: :class:`ReportRun` values (a run's checks and its records) in,
one HTML document out; no click and no files (``run --report`` and ``valr-replay report`` are the shells).

The pictures are inline SVG written from Python, not a charting library or a JavaScript bundle:

* small and offline: one file with no external script, font or image opens from disk anywhere, also
  attached to a CI job or an issue, and stays well under 2 MB for the shipped scenarios;
* dependable: no new dependency, nothing to download, nothing that changes between versions of a library;
* testable as text: a test parses the HTML with the standard library and finds the charts (``svg.open-orders``,
  their ``polyline.truth`` / ``polyline.belief``), the sequence diagrams (``svg.sequence``) and their messages
  (``.msg`` with ``data-json``) without a browser.

A few lines of inline JavaScript show a clicked message's JSON in ``pre#json-view``.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from .checks import CheckResult
from .show import OrderLabels, mentioned_ids, plain_record, record_mentions, summarize

#: which violated check's first violation gets a sequence diagram first (the most telling)
DIAGRAM_PREFERENCE = ("false_cancels", "duplicate_orders", "orphans", "final_state_exit", "max_open_orders")
#: messages shown around a violation
WINDOW_BEFORE_NS = 100_000_000
WINDOW_AFTER_NS = 100_000_000
MENTION_WINDOW_NS = 1_000_000_000
MAX_MESSAGES = 40

LANES = ("strategy", "client", "account stream", "trade stream", "REST", "exchange")
LANE_TITLES = ("strategy", "connector tracker (client)", "account stream", "trade stream", "REST",
               "matching engine (exchange)")


@dataclass
class ReportRun:
    """One run for the report: what ran, its checks, its records (trace order; the checks' indexes point here)."""

    scenario: str
    seed: int | None
    label: str
    checks: list[CheckResult]
    #: empty: a run known only by its checks (a ``run --json`` row without its trace): no chart, no diagram
    records: Sequence[dict[str, Any]] = field(default=(), repr=False)
    account: str = "demo"
    bot: str | None = None  # with several bots: only this bot's client/strategy records
    #: a line for the run's section, e.g. why it has no chart
    note: str = ""


@dataclass
class FailingExample:
    """One failing run of a sweep (a seed) or an exploration (a found scenario), and how to run it again."""

    what: str  # "seed 3", "explore-out/01-false_cancels.toml"
    violated: list[str]
    reproduce: str


@dataclass
class FailureRate:
    """How often one connector/policy (``label``) failed on one scenario: a sweep's column, an exploration."""

    scenario: str
    label: str
    runs: int  # runs carried out: the denominator
    failures: int  # runs in which a check was violated
    by_check: dict[str, int]  # check: runs that violated it
    failing: list[FailingExample]
    unit: str = "seeds"  # what ``runs`` counts: seeds (a sweep), schedules (an exploration)
    rate_text: str = ""  # the rate in words, e.g. "below 5.9 %" (default: the plain percentage)
    at_least: bool = False  # ``failures`` is a lower bound (an exploration counts violations per check)
    errors: int = 0  # runs that could not be carried out
    note: str = ""
    #: failing runs not listed in ``failing`` (a sweep lists them all; an exploration writes a few)
    more: int = 0

    @property
    def rate(self) -> float | None:
        return self.failures / self.runs if self.runs else None


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _json(record: dict[str, Any]) -> str:
    return json.dumps(plain_record(record), default=str, sort_keys=False)


def _mine(run: ReportRun, rec: dict[str, Any]) -> bool:
    data = rec.get("data")
    return run.bot is None or not isinstance(data, dict) or data.get("bot") in (None, run.bot)


# --------------------------------------------------------------------------- series


@dataclass
class Series:
    """What the open-orders chart of a run shows (times in seconds since the trace's start)."""

    truth: list[tuple[float, int]]
    belief: list[tuple[float, int]]
    cycles: list[float]
    cancels: list[float]
    perturbations: list[tuple[float, str]]
    violation: tuple[float, str] | None
    end_s: float

    @property
    def peak(self) -> int:
        return max([n for _, n in self.truth] + [n for _, n in self.belief] + [0])

    @property
    def truth_peak(self) -> int:
        return max([n for _, n in self.truth] + [0])


def first_violation(run: ReportRun) -> CheckResult | None:
    violated = [c for c in run.checks if c.held is False and c.first_violation]
    violated.sort(key=lambda c: DIAGRAM_PREFERENCE.index(c.name) if c.name in DIAGRAM_PREFERENCE
                  else len(DIAGRAM_PREFERENCE))
    return violated[0] if violated else None


def series(run: ReportRun) -> Series:
    """The exchange's open orders of the run's account (OpenOrdersChanged) and the connector's active orders
    (client ORDER_STATE ``where``), the strategy's cycles and cancels, the perturbations, the first violation."""
    t0 = run.records[0].get("t", 0) if run.records else 0
    truth: list[tuple[float, int]] = [(0.0, 0)]
    belief: list[tuple[float, int]] = [(0.0, 0)]
    active: dict[str, bool] = {}
    cycles: list[float] = []
    seen_cycles: set[Any] = set()
    cancels: list[float] = []
    perturbations: list[tuple[float, str]] = []
    end = 0.0
    for rec in run.records:
        t = (rec.get("t", 0) - t0) / 1e9
        end = max(end, t)
        kind, typ, data = rec.get("kind"), rec.get("type"), rec.get("data")
        if not isinstance(data, dict):
            data = plain_record(rec).get("data")
            if not isinstance(data, dict):
                continue
        if kind == "event" and typ == "OpenOrdersChanged" and data.get("account") in (None, run.account):
            orders = data.get("orders")
            truth.append((t, len(orders) if isinstance(orders, list) else 0))
        elif kind == "client" and typ == "ORDER_STATE" and _mine(run, rec):
            cid = str(data.get("client_order_id"))
            active[cid] = data.get("where") == "active"
            n = sum(active.values())
            if n != belief[-1][1]:
                belief.append((t, n))
        elif kind == "strategy" and _mine(run, rec):
            if typ == "CREATE":
                cycle = data.get("cycle")
                if cycle not in seen_cycles:
                    seen_cycles.add(cycle)
                    cycles.append(t)
            elif typ == "CANCEL":
                cancels.append(t)
        elif kind == "meta" and typ == "PERTURBATION":
            what = data.get("name") or data.get("kind") or data.get("perturbation") or "perturbation"
            perturbations.append((t, str(what)))
    c = first_violation(run)
    violation = None
    if c is not None and c.first_violation is not None:
        violation = (float(c.first_violation.get("t_s", 0.0)) - t0 / 1e9, c.name)
    return Series(truth, belief, cycles, cancels, perturbations, violation, end)


# --------------------------------------------------------------------------- open-orders chart

CHART_W, CHART_H = 560, 220
PAD_L, PAD_R, PAD_T, PAD_B = 40, 10, 16, 30


def _steps(points: list[tuple[float, int]], end_s: float, x: Any, y: Any) -> str:
    out: list[str] = []
    prev: int | None = None
    for t, n in points:
        if prev is not None:
            out.append(f"{x(t):.1f},{y(prev):.1f}")
        out.append(f"{x(t):.1f},{y(n):.1f}")
        prev = n
    if prev is not None:
        out.append(f"{x(end_s):.1f},{y(prev):.1f}")
    return " ".join(out)


def open_orders_chart(run: ReportRun, s: Series, span_s: float, y_max: int, anchor: str) -> str:
    """An SVG step chart of truth against belief on a time axis of ``span_s`` seconds and 0..``y_max`` orders."""
    span_s = max(span_s, 1e-9)
    y_max = max(y_max, 1)
    plot_w, plot_h = CHART_W - PAD_L - PAD_R, CHART_H - PAD_T - PAD_B

    def x(t: float) -> float:
        return PAD_L + plot_w * min(max(t, 0.0), span_s) / span_s

    def y(n: float) -> float:
        return PAD_T + plot_h * (1 - n / y_max)

    parts = [f'<svg class="open-orders" data-run="{_e(anchor)}" data-truth-peak="{s.truth_peak}" '
             f'data-belief-peak="{max([n for _, n in s.belief] + [0])}" viewBox="0 0 {CHART_W} {CHART_H}" '
             f'width="{CHART_W}" height="{CHART_H}" role="img">',
             f'<title>{_e(run.label)}: open orders over time</title>',
             f'<rect x="{PAD_L}" y="{PAD_T}" width="{plot_w}" height="{plot_h}" class="plot"/>']
    for i in range(5):  # axes ticks
        n = y_max * i / 4
        parts.append(f'<text x="{PAD_L - 4}" y="{y(n) + 3:.1f}" class="tick" text-anchor="end">{n:.0f}</text>')
        t = span_s * i / 4
        parts.append(f'<text x="{x(t):.1f}" y="{CHART_H - PAD_B + 14}" class="tick" text-anchor="middle">'
                     f'{t:.0f}s</text>')
    for t in s.cycles:
        parts.append(f'<line class="cycle" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{PAD_T + plot_h}" '
                     f'y2="{PAD_T + plot_h - 6}"><title>refresh cycle (CREATE) at {t:.3f}s</title></line>')
    for t in s.cancels:
        parts.append(f'<line class="cancel" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{PAD_T + plot_h - 6}" '
                     f'y2="{PAD_T + plot_h - 10}"><title>CANCEL at {t:.3f}s</title></line>')
    for t, what in s.perturbations:
        parts.append(f'<path class="perturbation" d="M{x(t) - 4:.1f},{PAD_T - 8} h8 l-4,7 z">'
                     f'<title>perturbation {_e(what)} at {t:.3f}s</title></path>')
    parts.append(f'<polyline class="truth" points="{_steps(s.truth, s.end_s, x, y)}"/>')
    parts.append(f'<polyline class="belief" points="{_steps(s.belief, s.end_s, x, y)}"/>')
    if s.violation is not None:
        t, name = s.violation
        parts.append(f'<a href="#{_e(anchor)}-seq"><line class="violation" x1="{x(t):.1f}" x2="{x(t):.1f}" '
                     f'y1="{PAD_T}" y2="{PAD_T + plot_h}"><title>first violation of {_e(name)} at {t:.3f}s'
                     f'</title></line></a>')
    parts.append(f'<text x="{PAD_L + 4}" y="{PAD_T + 12}" class="legend"><tspan class="truth-key">'
                 f'&#9632; exchange (truth)</tspan> <tspan class="belief-key">&#9632; connector (belief)</tspan>'
                 f'</text></svg>')
    return "".join(parts)


# --------------------------------------------------------------------------- sequence diagram


def _lane(rec: dict[str, Any]) -> int:
    kind, conn = rec.get("kind"), str(rec.get("conn", ""))
    if kind == "strategy":
        return 0
    if kind == "client":
        return 1
    if kind == "ws":
        return 3 if conn.startswith("trade") else 2
    if kind == "rest":
        return 4
    if kind == "event":
        return 5
    return 1


def _arrow(rec: dict[str, Any]) -> tuple[int, int]:
    """(from lane, to lane) of a message; equal lanes: a note on that lane."""
    kind, direction = rec.get("kind"), rec.get("dir")
    lane = _lane(rec)
    if kind == "strategy":
        return 0, 1
    if kind in ("ws", "rest"):
        if direction == "out":
            return 1, lane
        if direction == "in":
            return lane, 1
        return lane, lane
    if kind == "event" and rec.get("type") == "CommandSubmitted":
        data = rec.get("data")
        via = str(data.get("via", "")) if isinstance(data, dict) else ""
        return (4 if via.startswith("rest") else 2), 5
    if kind == "event" and rec.get("type") in ("OpenOrdersChanged", "OrderStatusChanged", "OrderProcessed"):
        return 5, 2
    return lane, lane


def _labels_for(records: Sequence[dict[str, Any]]) -> OrderLabels:
    labels = OrderLabels()
    for rec in records:
        labels.observe(rec)
    labels.compact()
    return labels


def violation_index(run: ReportRun, check: CheckResult) -> int | None:
    fv = check.first_violation or {}
    index = fv.get("index")
    if isinstance(index, int) and 0 <= index < len(run.records):
        return index
    return None


def race_window(run: ReportRun, index: int, labels: OrderLabels) -> list[int]:
    """Indexes of the messages of a violation's race: those about the violating order within a second of it,
    the open-orders snapshots and strategy steps within 100 ms, the violating record itself."""
    records = run.records
    center = records[index]
    t_v = center.get("t", 0)
    wanted = {labels.get(i) or i for i in mentioned_ids(plain_record(center).get("data"))}
    chosen: list[int] = []
    lo = index
    while lo > 0 and t_v - records[lo - 1].get("t", 0) <= MENTION_WINDOW_NS:
        lo -= 1
    hi = index
    while hi + 1 < len(records) and records[hi + 1].get("t", 0) - t_v <= MENTION_WINDOW_NS:
        hi += 1
    for i in range(lo, hi + 1):
        rec = records[i]
        dt = rec.get("t", 0) - t_v
        if i == index:
            chosen.append(i)
            continue
        if not _mine(run, rec):
            continue
        near = -WINDOW_BEFORE_NS <= dt <= WINDOW_AFTER_NS
        typ = rec.get("type")
        if near and (typ in ("OPEN_ORDERS_UPDATE", "OpenOrdersChanged") or rec.get("kind") == "strategy"):
            chosen.append(i)
        elif wanted and any(record_mentions(rec, w, labels) for w in wanted):
            chosen.append(i)
    if len(chosen) > MAX_MESSAGES:  # the closest to the violation
        chosen = sorted(sorted(chosen, key=lambda i: abs(i - index))[:MAX_MESSAGES])
    return chosen


SEQ_LANE_W = 150
SEQ_ROW_H = 26
SEQ_TOP = 40
LABEL_CHARS = 110


def sequence_diagram(run: ReportRun, check: CheckResult, labels: OrderLabels, anchor: str) -> str:
    index = violation_index(run, check)
    if index is None:
        return ""
    chosen = race_window(run, index, labels)
    t0 = run.records[0].get("t", 0)
    t_v = run.records[index].get("t", 0)
    width = 120 + SEQ_LANE_W * len(LANES) + 560  # room for the labels of the right-hand lanes
    height = SEQ_TOP + SEQ_ROW_H * (len(chosen) + 1)

    def lx(lane: int) -> float:
        return 120 + SEQ_LANE_W * lane + SEQ_LANE_W / 2

    parts = [f'<svg class="sequence" id="{_e(anchor)}" data-check="{_e(check.name)}" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">',
             f'<title>{_e(run.label)}: first violation of {_e(check.name)}</title>']
    for lane, title in enumerate(LANE_TITLES):
        parts.append(f'<text class="lane-title" x="{lx(lane):.0f}" y="16" text-anchor="middle">{_e(title)}</text>')
        parts.append(f'<line class="lane" x1="{lx(lane):.0f}" x2="{lx(lane):.0f}" y1="24" y2="{height}"/>')
    prev_t: int | None = None
    for row, i in enumerate(chosen):
        rec = run.records[i]
        t = rec.get("t", 0)
        y = SEQ_TOP + SEQ_ROW_H * row + 10
        src, dst = _arrow(rec)
        violating = i == index
        text = f"{rec.get('type')} {summarize(rec, labels)}"
        if len(text) > LABEL_CHARS:
            text = text[:LABEL_CHARS - 1] + "…"
        gap = "" if prev_t is None else f" (+{(t - prev_t) / 1e6:.3f} ms)"
        prev_t = t
        cls = "msg violating" if violating else "msg"
        parts.append(f'<g class="{cls}" data-index="{i}" data-json="{_e(_json(rec))}" tabindex="0">')
        # the whole row takes the click, not only the strokes and the text (transparent, not none: an
        # unpainted fill does not receive pointer events)
        parts.append(f'<rect class="hit" x="0" y="{y - 14}" width="{width}" height="{SEQ_ROW_H - 2}" '
                     'fill="transparent"/>')
        parts.append(f'<text class="time" x="4" y="{y}">{(t - t0) / 1e6:.3f} ms</text>')
        parts.append(f'<text class="time" x="4" y="{y + 10}">{(t - t_v) / 1e6:+.3f}</text>')
        parts.append(f'<title>{_e(rec.get("conn"))} {_e(rec.get("dir"))}: {(t - t_v) / 1e6:+.3f} ms from the '
                     f'violation{gap}</title>')
        if violating:
            parts.append(f'<rect class="highlight" x="0" y="{y - 14}" width="{width}" height="{SEQ_ROW_H - 2}"/>')
        if src == dst:
            parts.append(f'<circle cx="{lx(src):.1f}" cy="{y}" r="4"/>')
            parts.append(f'<text class="label" x="{lx(src) + 8:.1f}" y="{y - 4}">{_e(text)}</text>')
        else:
            x1, x2 = lx(src), lx(dst)
            head = -6 if x2 > x1 else 6
            parts.append(f'<line class="arrow" x1="{x1:.1f}" x2="{x2:.1f}" y1="{y}" y2="{y}"/>')
            parts.append(f'<path class="head" d="M{x2:.1f},{y} l{head},-4 v8 z"/>')
            mid = min(x1, x2) + 6
            parts.append(f'<text class="label" x="{mid:.1f}" y="{y - 4}">{_e(text)}</text>')
        parts.append('</g>')
    parts.append('</svg>')
    return "".join(parts)


# --------------------------------------------------------------------------- the document

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table#verdicts{border-collapse:collapse}
table#verdicts td,table#verdicts th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
td.held a{color:#1a7f37} td.violated a{color:#b42318}
.side-by-side{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0}
svg .plot{fill:#fafafa;stroke:#ccc}
svg .tick,svg .legend,svg .time{font-size:10px;fill:#555}
polyline.truth{fill:none;stroke:#d9480f;stroke-width:2}
polyline.belief{fill:none;stroke:#1c7ed6;stroke-width:1.5;stroke-dasharray:4 2}
.truth-key{fill:#d9480f} .belief-key{fill:#1c7ed6}
line.cycle{stroke:#2b8a3e} line.cancel{stroke:#868e96}
path.perturbation{fill:#c92a2a}
line.violation{stroke:#c92a2a;stroke-width:2;stroke-dasharray:3 3}
svg.sequence{font-size:11px;overflow:visible}
line.lane{stroke:#bbb;stroke-dasharray:2 3} .lane-title{font-weight:bold}
line.arrow{stroke:#333} path.head{fill:#333}
.msg{cursor:pointer} .msg:hover .label{fill:#1c7ed6}
rect.highlight{fill:#ffe3e3}
.msg.violating .label{fill:#c92a2a;font-weight:bold}
.msg.selected .label{text-decoration:underline}
table#failure-rates{border-collapse:collapse}
table#failure-rates td,table#failure-rates th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
table#failure-rates ul{margin:0;padding-left:1.2em} code.reproduce{font-size:12px}
svg.rate-bar{vertical-align:middle} rect.bar-bg{fill:#f1f3f5;stroke:#ccc}
rect.bar-fill.failing{fill:#c92a2a} rect.bar-fill.passing{fill:#2b8a3e}
p.note{color:#555;font-style:italic}
pre#json-view{position:sticky;bottom:0;background:#f1f3f5;max-height:30vh;overflow:auto;padding:.5em;
  border:1px solid #ccc;white-space:pre-wrap}
"""

SCRIPT = """
(function () {
  var view = document.getElementById('json-view');
  document.addEventListener('click', function (ev) {
    var el = ev.target;
    while (el && el !== document && !(el.classList && el.classList.contains('msg'))) { el = el.parentNode; }
    if (!el || el === document || !view) { return; }
    var text = el.getAttribute('data-json') || '';
    try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* shown as it is */ }
    view.textContent = text;
    var old = document.querySelectorAll('.msg.selected');
    for (var i = 0; i < old.length; i++) { old[i].classList.remove('selected'); }
    el.classList.add('selected');
  });
})();
"""


def report_runs(results: Sequence[Any]) -> list[ReportRun]:
    """ReportRuns of ``runner.RunResult``s kept with their records (``keep_records=True``): every bot's."""
    out = []
    for result in results:
        records = [plain_record(r) for r in result.records]
        for r in result.bots:
            out.append(ReportRun(scenario=r.scenario.name, seed=r.seed, label=r.label, checks=r.checks,
                                 records=records, account=r.account, bot=r.bot if r.multi_bot else None))
    return out


#: failing runs listed per row of the failure-rate table (then "and N more")
SHOWN_FAILING = 5
BAR_W, BAR_H = 120, 12


def rate_from_tally(tally: Any, shown: int = SHOWN_FAILING) -> FailureRate:
    """The :class:`FailureRate` of a sweep's column (a ``replay.sweep.Tally``)."""
    failing = [FailingExample(f"seed {r.seed}", list(r.violated), r.reproduce) for r in tally.failing]
    unexpected = [str(r.seed) for r in tally.runs if not r.as_expected and r.error is None]
    note = ""
    if unexpected:
        listed = ", ".join(unexpected[:shown]) + (f" and {len(unexpected) - shown} more" if len(unexpected) > shown
                                                  else "")
        note = f"Not as the scenario expects (what sets the exit status): seed{'s' if len(unexpected) > 1 else ''} "\
               f"{listed}."
    return FailureRate(scenario=tally.scenario, label=tally.label, runs=tally.n, failures=tally.failures,
                       by_check=dict(tally.by_check), failing=failing, unit="seeds",
                       rate_text=tally.described if tally.n else "", errors=len(tally.errors), note=note)


def _percent(rate: float) -> str:
    value = rate * 100
    return f"{value:.0f} %" if value == 0 or value >= 10 or value == round(value) else f"{value:.2g} %"


def rate_bar(rate: FailureRate) -> str:
    """A small horizontal bar: the share of failing runs."""
    share = rate.rate or 0.0
    fill = "failing" if rate.failures else "passing"
    return (f'<svg class="rate-bar" viewBox="0 0 {BAR_W} {BAR_H}" width="{BAR_W}" height="{BAR_H}" role="img">'
            f'<title>{_e(rate.failures)} of {_e(rate.runs)} {_e(rate.unit)} failed</title>'
            f'<rect class="bar-bg" x="0" y="0" width="{BAR_W}" height="{BAR_H}"/>'
            f'<rect class="bar-fill {fill}" x="0" y="0" width="{BAR_W * min(max(share, 0.0), 1.0):.1f}" '
            f'height="{BAR_H}"/></svg>')


def failure_rate_table(rates: Sequence[FailureRate], shown: int = SHOWN_FAILING) -> str:
    """Per scenario and connector/policy: the runs, how many violated a check, the rate, which checks, and the
    first failing runs with the command that runs each again."""
    rows = ['<table id="failure-rates"><thead><tr><th>scenario</th><th>connector / policy</th><th>runs</th>'
            '<th>violated</th><th>failure rate</th><th>checks violated (runs)</th>'
            '<th>failing runs: how to reproduce</th></tr></thead><tbody>']
    for r in rates:
        share = r.rate
        text = r.rate_text or ("-" if share is None else _percent(share))
        if r.at_least and share is not None and not r.rate_text:
            text = f"at least {text}"
        failed = f"{'at least ' if r.at_least else ''}{r.failures}"
        runs = f"{r.runs} {r.unit}" + (f" ({r.errors} could not run)" if r.errors else "")
        checks = ", ".join(f"{name} {n}" for name, n in r.by_check.items()) or "-"
        items = [f'<li class="failing"><b>{_e(x.what)}</b>: {_e(", ".join(x.violated) or "no check violated")}'
                 f'<br><code class="reproduce">{_e(x.reproduce)}</code></li>' for x in r.failing[:shown]]
        more = len(r.failing) - len(items) + r.more
        if more > 0:
            items.append(f'<li class="more">and {more} more</li>')
        listed = f'<ul class="failing">{"".join(items)}</ul>' if items else "-"
        note = f'<p class="note">{_e(r.note)}</p>' if r.note else ""
        cls = "violated" if r.failures else "held"
        rows.append(f'<tr class="{cls}" data-scenario="{_e(r.scenario)}" data-label="{_e(r.label)}" '
                    f'data-runs="{r.runs}" data-failures="{r.failures}" '
                    f'data-rate="{"" if share is None else f"{share:.6g}"}">'
                    f'<td>{_e(r.scenario)}</td><td><b>{_e(r.label)}</b></td><td>{_e(runs)}</td><td>{_e(failed)}</td>'
                    f'<td class="rate">{rate_bar(r)}<br>{_e(text)}</td><td>{_e(checks)}</td>'
                    f'<td>{listed}{note}</td></tr>')
    rows.append("</tbody></table>")
    return "".join(rows)


def _group_key(run: ReportRun) -> tuple[str, int | None]:
    return run.scenario, run.seed


def verdict_table(runs: list[ReportRun], anchors: list[str]) -> str:
    """Scenarios (and seed) as rows, one column per run; each cell links to its run's section."""
    groups: dict[tuple[str, int | None], list[int]] = {}
    for i, r in enumerate(runs):
        groups.setdefault(_group_key(r), []).append(i)
    width = max(len(v) for v in groups.values()) if groups else 0
    rows = ['<table id="verdicts"><thead><tr><th>scenario (seed)</th>'
            + "".join(f"<th>run {k + 1}</th>" for k in range(width)) + "</tr></thead><tbody>"]
    for (name, seed), members in groups.items():
        cells = []
        for i in members:
            r = runs[i]
            violated = [c.name for c in r.checks if c.held is False]
            judged = sum(1 for c in r.checks if c.held is not None)
            what = (f"violated: {', '.join(violated)}" if violated else f"all {judged} checks held")
            cls = "violated" if violated else "held"
            if not r.checks:  # a run that could not be carried out
                what, cls = r.note or "no checks", "violated"
            cells.append(f'<td class="{cls}"><a href="#{_e(anchors[i])}"><b>{_e(r.label)}</b></a><br>'
                         f'{_e(what)}</td>')
        cells += ["<td></td>"] * (width - len(members))
        rows.append(f"<tr><th>{_e(name)} ({_e('?' if seed is None else seed)})</th>{''.join(cells)}</tr>")
    rows.append("</tbody></table>")
    return "".join(rows)


def _checks_list(run: ReportRun) -> str:
    items = []
    for c in run.checks:
        state = {True: "held", False: "violated", None: "-"}[c.held]
        items.append(f'<tr class="{state}"><td>{_e(c.name)}</td><td>{state}</td><td>{_e(c.message)}</td></tr>')
    return f'<table class="checks">{"".join(items)}</table>'


def build_report(runs: list[ReportRun], title: str = "valr-replay report",
                 rates: Sequence[FailureRate] = ()) -> str:
    """The whole report as one HTML document (no external resource): the failure rates of sweeps and
    explorations (``rates``) first, then the verdicts and pictures of single runs (``runs``)."""
    anchors = [f"run-{i + 1}" for i in range(len(runs))]
    all_series = [series(r) if r.records else None for r in runs]
    body = [f"<h1>{_e(title)}</h1>"]
    if rates:
        body.append("<h2>Failure rate</h2>")
        body.append("<p>Per scenario and connector/policy: the runs, how many violated a check, and the rate "
                    "(for a sweep with its one-sided 95 % upper bound); then the first failing runs, each with "
                    "the command that runs it again (add <code>--report FILE</code> to it to see its race).</p>")
        body.append(failure_rate_table(rates))
    if runs:
        body += ["<h2>Verdicts</h2>", verdict_table(runs, anchors)]
    groups: dict[tuple[str, int | None], list[int]] = {}
    for i, r in enumerate(runs):
        groups.setdefault(_group_key(r), []).append(i)
    for (name, seed), members in groups.items():
        drawn = [(i, s) for i in members if (s := all_series[i]) is not None]
        seed_text = _e('?' if seed is None else seed)
        if drawn:
            span = max(s.end_s for _, s in drawn)
            y_max = max(s.peak for _, s in drawn)
            body.append(f"<h2>{_e(name)} (seed {seed_text}): open orders over time</h2>")
            body.append('<p>Solid: open orders of the account at the exchange (truth); dashed: the connector\'s '
                        'active orders (belief). Green ticks: refresh cycles; grey: cancels; red triangles: '
                        'perturbations; red dashed line: the first violation (click it for its race).</p>')
            body.append('<div class="side-by-side">')
            for i, s in drawn:
                body.append(f'<figure><figcaption><a href="#{anchors[i]}">{_e(runs[i].label)}</a></figcaption>'
                            f'{open_orders_chart(runs[i], s, span, y_max, anchors[i])}</figure>')
            body.append("</div>")
        else:
            body.append(f"<h2>{_e(name)} (seed {seed_text})</h2>")
        for i in members:
            run = runs[i]
            body.append(f'<section id="{anchors[i]}"><h3>{_e(name)}: {_e(run.label)}</h3>')
            body.append(_checks_list(run))
            if run.note:
                body.append(f'<p class="note">{_e(run.note)}</p>')
            violated = [c for c in run.checks if c.held is False and violation_index(run, c) is not None]
            violated.sort(key=lambda c: DIAGRAM_PREFERENCE.index(c.name) if c.name in DIAGRAM_PREFERENCE
                          else len(DIAGRAM_PREFERENCE))
            labels = _labels_for(run.records) if violated else None
            for k, c in enumerate(violated):
                assert labels is not None
                seq_anchor = f"{anchors[i]}-seq" if k == 0 else f"{anchors[i]}-seq-{c.name}"
                body.append(f"<h4>First violation of {_e(c.name)}</h4><p>{_e(c.message)}</p>")
                body.append(sequence_diagram(run, c, labels, seq_anchor))
            if not any(c.held is False for c in run.checks):
                body.append("<p>No violation.</p>")
            body.append("</section>")
    if any(r.records for r in runs):
        body.append('<h2>Message</h2><pre id="json-view">Click a message of a sequence diagram to see its JSON.'
                    '</pre>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(body) + f"<script>{SCRIPT}</script></body></html>\n")
