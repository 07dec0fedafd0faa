"""The schedule explorer's pure core (replay/explore.py): generation, coverage, shapes, shrinking."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from replay.explore import (
    LIBRARY,
    Context,
    Explorer,
    Outcome,
    Schedule,
    coverage_features,
    entry_simplifications,
    latency_simplifications,
    make_entry,
    mutate,
    scenario_doc,
    shrink_candidates,
    size,
    swarm_schedule,
    violation_shape,
)
from replay.scenario import scenario_from_doc
from replay.schedule import perturbation_from_spec

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "scenarios" / "explore_base.toml"
CTX = Context(duration_s=10.0, refresh_s=6.0)


def test_every_library_kind_makes_entries_the_schedule_accepts():
    rng = random.Random(5)
    for kind in LIBRARY:
        for i in range(60):
            entry = make_entry(kind, rng, CTX)
            perturbation_from_spec(entry, f"{kind.name}[{i}]")  # raises SpecError on a bad spelling
            assert entry["name"] == kind.name


def test_generated_schedules_load_as_scenarios():
    import tomllib

    base_doc = tomllib.loads(BASE.read_text())
    rng = random.Random(1)
    parent = swarm_schedule(rng, CTX)
    for _ in range(150):
        s = mutate(rng, CTX, parent) if rng.random() < 0.5 else swarm_schedule(rng, CTX)
        scenario = scenario_from_doc(scenario_doc(base_doc, s, policy="naive", connector=None), BASE)
        assert scenario.seed == s.seed and abs(scenario.duration_s - s.duration_s) < 1e-9
        assert len(scenario.perturb) == len(s.perturb)
        parent = s


def test_same_seed_same_schedules_different_seed_different():
    def batches(seed: int) -> list[Schedule]:
        ex = Explorer(CTX, seed)
        out = ex.next_batch(16)
        # feed identical outcomes so that the corpus (and the mutations) grow the same way
        for n, s in enumerate(out, 1):
            ex.record(n, s, Outcome([], features=frozenset({f"T x>{n % 5}"})), 0.0)
        return out + ex.next_batch(16)

    assert batches(3) == batches(3)
    assert batches(3) != batches(4)
    first = batches(3)
    assert first[0].origin == "base" and first[0].perturb == ()
    assert len(set(first)) == len(first)  # no schedule tried twice


def test_feedback_corpus_grows_on_new_coverage_only():
    ex = Explorer(CTX, 0)
    s1, s2 = ex.next_batch(2)
    ex.record(1, s1, Outcome([], features=frozenset({"T None>PENDING_CREATE (create)"})), 0.1)
    ex.record(2, s2, Outcome([], features=frozenset({"T None>PENDING_CREATE (create)"})), 0.2)
    assert ex.corpus == [s1]
    assert ex.coverage_counts() == (1, 0)


def test_counterexamples_grouped_by_check_and_shape_keeping_the_simplest():
    ex = Explorer(CTX, 0)
    big = Schedule(seed=1, duration_s=10.0).with_entries([{"name": "drop", "match": {"type": "OPEN_ORDERS_UPDATE"},
                                                           "drop": True}])
    small = Schedule(seed=2, duration_s=10.0)
    hit = {"false_cancels": ("client OPEN->CANCELED (x): y", "msg", 1.0)}
    other = {"false_cancels": ("client PENDING_CREATE->CANCELED (x): y", "msg", 1.0)}
    ex.record(1, big, Outcome(["false_cancels"], first=hit), 1.0)
    ex.record(2, small, Outcome(["false_cancels"], first=hit), 2.0)
    ex.record(3, small, Outcome(["false_cancels"], first=other), 3.0)
    assert len(ex.groups) == 2
    g = ex.groups[("false_cancels", "client OPEN->CANCELED (x): y")]
    assert g.count == 2 and g.found_at == 1 and g.schedule == small
    assert ex.by_check() == {"false_cancels": 3}


def test_violation_shape_has_no_ids_or_numbers():
    rec = {"kind": "client", "type": "ORDER_STATE",
           "data": {"from": "OPEN", "to": "CANCELED", "reason": "open_orders_update:absent"}}
    a = violation_shape(rec, "client marked HB-VR-S2 CANCELED but the exchange still holds it open 2.0s later")
    b = violation_shape(rec, "client marked HB-VR-S14 CANCELED but the exchange still holds it open 2.0s later")
    assert a == b
    assert a.startswith("client OPEN->CANCELED (open_orders_update:absent)")
    event = {"kind": "event", "type": "OrderStatusChanged", "data": {}}
    assert violation_shape(event, "order 736a947a-843f-4da7-b1ee-daffcc3d5506 never closed") == \
        "event OrderStatusChanged: order <id> never closed"


def test_coverage_features_transitions_and_orderings():
    records = [
        {"kind": "client", "type": "ORDER_STATE", "data": {"from": None, "to": "PENDING_CREATE", "reason": "create"}},
        {"kind": "ws", "dir": "in", "conn": "account-1", "type": "PLACE_LIMIT_WS_RESPONSE"},
        {"kind": "ws", "dir": "in", "conn": "trade-1", "type": "AGGREGATED_ORDERBOOK_UPDATE"},
        {"kind": "ws", "dir": "in", "conn": "account-1", "type": "OPEN_ORDERS_UPDATE"},
        {"kind": "ws", "dir": "out", "conn": "account-1", "type": "CANCEL_LIMIT_ORDER"},
        {"kind": "ws", "dir": "in", "conn": "account-1", "type": "ORDER_STATUS_UPDATE"},
    ]
    assert coverage_features(records) == {
        "T None>PENDING_CREATE (create)",
        "O PLACE_LIMIT_WS_RESPONSE>OPEN_ORDERS_UPDATE",
        "O OPEN_ORDERS_UPDATE>ORDER_STATUS_UPDATE",
    }


def test_shrink_candidates_are_all_smaller():
    base_latency = {"default": "1ms..3ms", "engine": {"default": "2ms", "CANCEL_ORDER": "1ms..5ms"}}
    s = Schedule(seed=9, duration_s=10.0).with_entries([
        {"name": "resend_stale", "match": {"type": "OPEN_ORDERS_UPDATE"},
         "resend_stale": {"age": "1200ms", "after": "5500ms", "probability": 0.3}},
        {"name": "delay", "match": {"type": "ORDER_STATUS_UPDATE", "probability": 0.5},
         "delay": {"by": "100ms..700ms"}},
        {"name": "ws_error", "match": {"type": "CANCEL_LIMIT_ORDER", "nth": 3}, "ws_error": 429},
    ])
    passes = dict(shrink_candidates(s, base_latency))
    assert [len(c.perturb) for c in passes["drop a perturbation"]] == [2, 2, 2]
    reseeded = passes["drop a perturbation, other seeds"]
    assert len(reseeded) == 12 and all(len(c.perturb) == 2 and c.seed != 9 for c in reseeded)
    assert [c.duration_s for c in passes["shorter"]] == [2.0, 3.0, 4.0, 5.0, 6.0, 8.0]
    for name, candidates in passes.items():
        assert candidates, name
        for c in candidates:
            assert size(c, base_latency) < size(s, base_latency), (name, c)
    consts = [json.loads(c.latency) for c in passes["constant latency"]]
    assert {"default": "1ms", "engine": {"default": "2ms", "CANCEL_ORDER": "1ms..5ms"}} in consts
    assert {"default": "1ms..3ms", "engine": {"default": "2ms", "CANCEL_ORDER": "1ms"}} in consts


def test_entry_simplifications():
    entry = {"name": "resend_stale", "match": {"type": "OPEN_ORDERS_UPDATE", "probability": 0.3},
             "resend_stale": {"age": "1200ms", "after": "5500ms"}}
    simpler = entry_simplifications(entry)
    # match is never touched: without its probability (or nth) the fault would be broader, not smaller
    assert all(e["match"] == entry["match"] for e in simpler)
    afters = [e["resend_stale"]["after"] for e in simpler if e["resend_stale"]["after"] != "5500ms"]
    assert afters == ["0ms", "1375ms", "2750ms"]
    assert entry_simplifications({"match": {}, "delay": "100ms..300ms"})[0]["delay"] == "100ms"
    assert latency_simplifications({"default": "5ms"}) == []


@pytest.mark.parametrize("policy", ["naive", "age-guard:5"])
def test_scenario_doc_sets_policy_and_drops_expectations(policy):
    doc = {"scenario": {"name": "x"}, "bot": {"policy": "reconcile"},
           "expect": {"grace": "2s", "policy": {"naive": {"violated": ["orphans"]}}}}
    s = Schedule(seed=4, duration_s=2.0).with_entries([{"name": "drop", "match": {"type": "OPEN_ORDERS_UPDATE"},
                                                        "drop": True}])
    out = scenario_doc(doc, s, policy=policy, connector=None)
    assert out["bot"]["policy"] == policy and out["expect"] == {"grace": "2s"}
    assert out["scenario"]["seed"] == 4 and out["scenario"]["duration"] == "2s"
    assert out["perturb"] == s.entries
    assert doc["bot"]["policy"] == "reconcile"  # the base document is not changed
