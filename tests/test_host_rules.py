"""Host rules: one table decides which hosts suit a VM, for candidates, checker and explainer alike."""

from __future__ import annotations

from dataclasses import replace

from planner.checker import check_plan
from planner.explain import static_reasons
from planner.host_rules import HOST_RULES, needs_of, suits, unsuited_reasons
from planner.migration_facts import can_receive, candidate_hosts, eligible, why_no_destination
from planner.topology import Topology
from tests._planner_fixtures import flat, host, move, plan_of, vm


def _zones() -> tuple:
    hosts = [host("h1", labels={"zone": "a"}), host("h2", labels={"zone": "a"}), host("h3", labels={"zone": "b"})]
    return hosts


def test_requires_host_labels_admits_only_hosts_with_every_pair() -> None:
    inv = flat(_zones(), [vm("db", "h1", requires_host_labels={"zone": "a"})])
    db = inv.vm["db"]
    assert can_receive(db, inv.host["h2"], inv)
    assert not can_receive(db, inv.host["h3"], inv)
    assert eligible(db, inv.host["h3"], inv) == ["host h3 lacks labels zone=a"]
    assert candidate_hosts(inv, inv.vms, (), Topology(inv))["db"] == ("h2",)


def test_a_label_no_host_has_is_named_by_the_explainer_and_unplaced_reasons() -> None:
    inv = flat(_zones(), [vm("db", "h1", requires_host_labels={"zone": "c"})])
    db = inv.vm["db"]
    assert static_reasons(inv, db, {"h1"}, Topology(inv)) == ["no host has labels zone=c"]
    assert why_no_destination(db, inv) == ["no host has labels zone=c"]


def test_checker_refuses_a_destination_that_breaks_a_host_rule() -> None:
    inv = flat(_zones(), [vm("db", "h1", requires_host_labels={"zone": "a"})])
    free = replace(inv, vms=(replace(inv.vm["db"], requires_host_labels={}),))
    plan = plan_of(inv, [move(free, "db", "h3")])
    found = [v for v in check_plan(inv, plan) if "lacks labels zone=a" in v.message]
    assert found, check_plan(inv, plan)


def test_every_rule_has_a_reason_exactly_when_it_fails() -> None:
    hosts = [host("h1", arch="x86_64", cpu_model="A", cpu_features=frozenset({"f"}), storage=frozenset({"s"}),
                  networks=frozenset({"n"}), labels={"zone": "a"}),
             host("h2", arch="aarch64", cpu_model="B")]
    need = vm("v", "h1", cpu_model="A", cpu_features=frozenset({"f"}), networks=frozenset({"n"}),
              requires_host_labels={"zone": "a"})
    inv = flat(hosts, [need])
    needs = needs_of(inv.vm["v"], inv)
    assert suits(needs, inv.host["h1"]) and unsuited_reasons(needs, inv.host["h1"]) == []
    failing = [r.name for r in HOST_RULES if r.fails(needs, inv.host["h2"])]
    assert failing == ["arch", "cpu_model", "cpu_features", "networks", "requires_host_labels"]
    assert len(unsuited_reasons(needs, inv.host["h2"])) == len(failing)
