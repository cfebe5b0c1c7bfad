"""planner.whatif: scenario parsing (every problem at once), fleet changes, sweeps, restarts (N+1)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from planner.errors import UsageError
from planner.frames import to_frames
from planner.host_rules import needs_of, suits
from planner.inventory import load_inventory
from planner.model import HostState, Inventory
from planner.solve import make_plan
from planner.whatif import (
    Scenario,
    Settings,
    each_host,
    each_label,
    evaluate,
    evaluate_scenario,
    host_failures,
    parse_scenarios,
    prepare,
    restart_placement,
)
from tests._planner_fixtures import flat, host, two_racks, vm

ROOT = Path(__file__).resolve().parent.parent


def test_every_problem_of_every_scenario_is_named_at_once() -> None:
    bad = ["drain=", "bogus=1", "migration-share=2", "policy.nope=1", "add-hosts=x:cpus=-1", "nic-gbps=abc",
           "drain=h1+fail=h1", "policy.auto_converge=maybe", "drain-label=rack"]
    with pytest.raises(UsageError) as e:
        parse_scenarios(["drain=ok", *bad])
    where = [p.where for p in e.value.problems]
    for i, text in enumerate(bad, start=2):  # each bad scenario is named by its position and text
        assert any(w == f"--scenario {i} {text!r}" for w in where), (text, where)
    text = str(e.value)
    for needle in ("unknown kind 'bogus'", "not in (0, 1]", "unknown policy key 'nope'", "'x' is not an integer",
                   "cpus: -1 must be > 0", "'abc' is not a number", "both drained and failed", "not true or false",
                   "not key=value"):
        assert needle in text, needle
    assert "--scenario 1 'drain=ok'" not in text


def test_unknown_hosts_and_labels_of_every_scenario_are_named_before_any_work() -> None:
    inv = two_racks(vms=[vm("v1", "a1")])
    for h in inv.hosts:
        assert "rack" not in h.labels
    with pytest.raises(UsageError) as e:
        prepare(inv, parse_scenarios(["drain=zz", "drain-label=rack=r9", "fail=qq+drain=a1"]))
    text = str(e.value)
    assert "unknown host 'zz'" in text and "no host has label rack=r9" in text and "fail: unknown host 'qq'" in text
    assert len(e.value.problems) == 3


def test_fleet_changes_add_hosts_like_an_existing_one_and_set_policy_and_nics() -> None:
    inv = two_racks(vms=[vm("v1", "a1")])
    inv = dataclasses.replace(inv, hosts=tuple(dataclasses.replace(h, labels={"rack": "rb"}) if h.name == "b1" else h
                                               for h in inv.hosts))
    [p] = prepare(inv, parse_scenarios(["add-hosts=3:cpus=64,memory_gib=512,nic_gbps=25,rack=rb+migration-share=0.3"
                                        "+policy.max_inbound_per_host=4+policy.auto_converge=false"]))
    new = [h for h in p.inventory.hosts if h.name.startswith("new-rb-")]
    assert [h.name for h in new] == ["new-rb-01", "new-rb-02", "new-rb-03"]
    assert all(h.cpus == 64 and h.memory_mib == 512 * 1024 and h.nic_gbps == 25 for h in new)
    assert all(h.switch == "tor-b" and h.labels["rack"] == "rb" for h in new)  # modelled on b1, same rack
    assert p.inventory.policy.migration_share == 0.3 and p.inventory.policy.max_inbound_per_host == 4
    assert p.inventory.policy.auto_converge is False
    [q] = prepare(inv, parse_scenarios(["nic-gbps=40"]))
    assert {h.nic_gbps for h in q.inventory.hosts} == {40.0}
    assert q.drain == () and evaluate(q).feasible  # nothing drained, nothing to block


def _pinned_fleet():  # type: ignore[no-untyped-def]
    vms = [vm("pinned-1", "a1", pinned=True), vm("free-1", "a1"), vm("b-1", "b1", memory_mib=4096),
           vm("b-2", "b1", memory_mib=2048), vm("a2-1", "a2")]
    return two_racks(per_rack=2, vms=vms)


def test_each_host_shows_the_pinned_host_infeasible_and_another_host_with_its_time() -> None:
    inv = _pinned_fleet()
    scenarios = each_host(inv)
    assert [s.text for s in scenarios] == ["drain=a1", "drain=a2", "drain=b1", "drain=b2"]
    results = {s.text: evaluate_scenario(inv, s) for s in scenarios}
    a1 = results["drain=a1"]
    assert not a1.feasible and a1.vms_unplaced == 1
    assert "pinned" in a1.blockers[0].reason and a1.blockers[0].examples == ("pinned-1",)
    b1 = results["drain=b1"]
    assert b1.feasible and b1.vms_moved == 2 and b1.makespan_s > 0
    assert b1.makespan_s == make_plan(inv, ["b1"], greedy_only=True).makespan_s
    assert results["drain=b2"].feasible and results["drain=b2"].vms_moved == 0


def test_each_label_is_one_scenario_per_value_and_an_unknown_key_is_a_usage_error() -> None:
    inv = load_inventory(ROOT / "data" / "medium.json").inventory
    assert [s.text for s in each_label(inv, "rack")] == [f"drain-label=rack=r{i}" for i in range(1, 5)]
    with pytest.raises(UsageError, match="no host has label 'nope'"):
        each_label(inv, "nope")


def test_host_failure_sets_are_every_combination_of_hosts_that_run_vms() -> None:
    inv = _pinned_fleet()  # b2 runs nothing: its loss strands nothing, it is left out
    assert [s.text for s in host_failures(inv, 1)] == ["fail=a1", "fail=a2", "fail=b1"]
    assert len(host_failures(inv, 2)) == math.comb(3, 2)
    with pytest.raises(UsageError):
        host_failures(inv, 0)


def test_a_failed_host_strands_what_does_not_fit_or_would_meet_its_anti_affinity_peer() -> None:
    hosts = [host("h1", memory_mib=65536), host("h2", memory_mib=16384), host("h3", memory_mib=16384)]
    vms = [vm("big", "h1", memory_mib=32768), vm("aa-1", "h1", anti_affinity=frozenset({"g"})),
           vm("aa-2", "h2", anti_affinity=frozenset({"g"})), vm("aa-3", "h3", anti_affinity=frozenset({"g"})),
           vm("small", "h1", memory_mib=1024)]
    r = restart_placement(flat(hosts, vms), ["h1"])
    assert set(r.destination) == {"small"} and r.destination["small"] in ("h2", "h3")
    assert set(r.stranded) == {"big", "aa-1"}
    assert "32768 MiB" in r.stranded["big"][0]
    assert any("anti_affinity group g" in x for x in r.stranded["aa-1"])
    assert r.inventory_after.host["h1"].state.value == "down"


def test_n_plus_one_on_hard_json_checked_by_hand_for_r1_h03() -> None:
    """r1-h03 runs 15 VMs; cache-17 has a local disk (vdb): it died with the host. The other 14 restart
    elsewhere within capacity, away from their anti-affinity peers, on hosts that suit them."""
    path = ROOT / "data" / "hard.json"
    raw = json.loads(path.read_text())
    on = [v for v in raw["vms"] if v["host"] == "r1-h03" and v.get("state", "running") == "running"]
    by_hand = sorted(v["name"] for v in on if v.get("pinned") or any(d.get("storage") is None for d in v["disks"]))
    assert len(on) == 15 and by_hand == ["cache-17"]

    inv = load_inventory(path).inventory
    result = evaluate_scenario(inv, parse_scenarios(["fail=r1-h03"])[0], Settings())
    assert not result.feasible and result.vms_stranded == 1 and result.vms_restarted == 14
    assert result.blockers[0].reason == "its local disks (vdb) were on failed host r1-h03"
    assert result.plan is None  # a restart, not a migration: no bandwidth schedule

    r = restart_placement(inv, ["r1-h03"])
    assert sorted(r.stranded) == by_hand
    after = r.inventory_after
    hosts = to_frames(after).hosts
    up = [h.name for h in after.hosts if h.state.value == "up"]
    assert (hosts.loc[up, "vcpus_free"] >= 0).all() and (hosts.loc[up, "memory_free_mib"] >= 0).all()
    for name, dest in r.destination.items():
        v = inv.vm[name]
        assert dest != "r1-h03" and after.host[dest].state.value == "up"
        assert suits(needs_of(v, inv), after.host[dest])
        peers = {p.name for p in after.vms_on[dest] if p.name != name and p.anti_affinity & v.anti_affinity}
        assert not peers, (name, dest, peers)


def test_n_plus_one_on_hard_json_lists_every_host_whose_loss_strands_vms() -> None:
    inv = load_inventory(ROOT / "data" / "hard.json").inventory
    results = [evaluate_scenario(inv, s) for s in host_failures(inv, 1)]
    stranded = {r.scenario.removeprefix("fail="): r.vms_stranded for r in results if r.vms_stranded}
    assert stranded["r1-h03"] == 1 and stranded["r2-h04"] == 6
    assert "r2-h01" not in {r.scenario.removeprefix("fail=") for r in results}  # in maintenance: not a failure set


def test_policy_values_take_the_type_the_policy_declares() -> None:
    [sc] = parse_scenarios(["policy.max_downtime_ms=250.5+policy.max_concurrent=3+policy.cpu_overcommit=2"])
    assert dict(sc.policy) == {"max_downtime_ms": 250.5, "max_concurrent": 3, "cpu_overcommit": 2.0}
    assert isinstance(dict(sc.policy)["max_concurrent"], int)
    with pytest.raises(UsageError, match=r"'1\.5' is not an integer"):
        parse_scenarios(["policy.max_concurrent=1.5"])


def test_cp_sat_settings_solve_each_scenario_within_its_time_limit() -> None:
    inv = _pinned_fleet()
    [sc] = parse_scenarios(["drain=b1+fail=a2"])
    r = evaluate_scenario(inv, sc, Settings(greedy=False, time_limit_s=2.0))
    assert r.feasible and r.vms_moved == 2 and r.vms_restarted == 1
    assert r.solver in ("cp-sat", "greedy") or r.solver.startswith("baseline:")  # CP-SAT ran, or a tool order won
    assert r.plan is not None and "a2" not in {m.destination for m in r.plan.migrations}  # a2 is down now


def test_a_sweep_on_one_inventory_gives_the_rows_of_the_uncached_path() -> None:
    """The fleet-wide facts a sweep reuses between scenarios (planner.inventory_cache) never change an
    answer: 20 hosts of a generated fleet, with fleet-changing scenarios in between (each makes a new
    inventory that must not see the base fleet's facts), row for row as without any cache."""
    from planner.generate import generate_fleet

    inv = generate_fleet(200, 1200, 4, seed=1)
    hosts = [s.text.removeprefix("drain=") for s in each_host(inv)[:20]]
    texts = [f"drain={h}" for h in hosts[:10]] + [
        f"nic-gbps=1+drain={hosts[0]}", f"add-hosts=2:cpus=8,memory_gib=16+drain={hosts[1]}",
        f"policy.cpu_overcommit=1.0+drain={hosts[2]}", f"fail={hosts[3]}", f"drain={hosts[4]},{hosts[5]}",
    ] + [f"drain={h}" for h in hosts[10:]]
    reference = _cached_and_uncached_agree(inv, parse_scenarios(texts))
    assert len({r["makespan_s"] for r in reference}) > 1


def test_a_sweep_with_affinity_pinning_and_maintenance_gives_the_rows_of_the_uncached_path() -> None:
    grp, anti = frozenset({"g"}), frozenset({"a"})
    vms = [vm("p1", "a1", affinity=grp), vm("p2", "a1", affinity=grp), vm("p3", "b1", affinity=grp),
           vm("x1", "a1", anti_affinity=anti), vm("x2", "a2", anti_affinity=anti), vm("x3", "b2", anti_affinity=anti),
           vm("pin", "b2", pinned=True), vm("big", "a2", memory_mib=60000), vm("s1", "b1"), vm("s2", "a3")]
    inv = two_racks(3, vms=vms)
    inv = dataclasses.replace(inv, hosts=tuple(dataclasses.replace(h, state=HostState.MAINTENANCE)
                                               if h.name == "b3" else h for h in inv.hosts))
    reference = _cached_and_uncached_agree(inv, each_host(inv) + parse_scenarios(["fail=a1", "drain=a1,b1"]))
    assert any(not r["feasible"] for r in reference) and any(r["feasible"] for r in reference)


def _cached_and_uncached_agree(inv: Inventory, scenarios: list[Scenario]) -> list[dict[str, object]]:
    """Every answer (all but the time each step took) the same with no per-inventory cache, then twice
    with the sweep's caches (cold, then warm); the uncached answers."""
    from planner.inventory_cache import disabled

    def answers() -> list[dict[str, object]]:
        out = []
        for s in scenarios:
            d = evaluate_scenario(inv, s, Settings()).to_dict()
            out.append(d | {"solve_s": 0, "plan": d["plan"] and d["plan"] | {"solve_s": 0}})
        return out

    with disabled():
        reference = answers()
    assert answers() == reference
    assert answers() == reference
    return reference
