"""What one migration is: disks copied, path and cap, eligibility reasons (one place for everyone)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.migration_facts import (
    can_receive,
    candidate_hosts,
    copied_disk_mib,
    copy_storage_targets,
    drain_set,
    eligible,
    migration_facts,
    vm_estimate,
    why_no_destination,
)
from planner.model import VM, Disk, Host, HostState, Inventory, VMState
from planner.topology import Topology
from planner.units import gbps_to_mibs
from tests._planner_fixtures import flat, host, local_disk, shared_disk, two_racks, vm


def test_only_local_disks_are_copied_and_by_allocation() -> None:
    v = vm("v", "h1", disks=(shared_disk("vda"), local_disk("vdb", 2.0), local_disk("vdc", 0.5)))
    assert copy_storage_targets(v) == ("vdb", "vdc")
    assert copied_disk_mib(v) == pytest.approx(2.5 * 1024)


def test_facts_path_and_cap_across_racks() -> None:
    inv = two_racks(uplink_gbps=4.0, vms=[vm("v", "a1", disks=(local_disk(),))])
    f = migration_facts(inv.vm["v"], "b2", inv, Topology(inv))
    assert f is not None
    assert f.path == ("a1", "tor-a", "spine", "tor-b", "b2")
    assert f.cap_mibs == pytest.approx(gbps_to_mibs(4.0) * 0.5)  # the uplink is the narrowest hop
    assert f.copy_storage == ("vdb",) and f.live
    assert f.estimate(inv.vm["v"], f.cap_mibs, inv.policy).duration_s == pytest.approx(
        1.75 + (1024 + 1024) / f.cap_mibs)


def test_unreachable_destination_has_no_facts() -> None:
    inv = Inventory(hosts=(host("a", switch="s1"), host("b", switch="s2")), vms=(vm("v", "a"),))
    assert migration_facts(inv.vm["v"], "b", inv, Topology(inv)) is None


def test_offline_vm_and_auto_converge_come_from_the_policy() -> None:
    inv = flat([host("h1"), host("h2")], [vm("off", "h1", state=VMState.SHUTOFF),
                                          vm("hot", "h1", dirty_rate_mibs=10_000.0)], auto_converge=False)
    assert vm_estimate(inv.vm["off"], 100.0, inv.policy).rounds == 0
    e = vm_estimate(inv.vm["hot"], 100.0, inv.policy)
    assert not e.converges and not e.throttled


def _src() -> Host:
    return host("src", arch="x86_64", cpu_model="Icelake-Server", cpu_features=frozenset({"avx512f", "pku"}),
                storage=frozenset({"nfs-1"}), networks=frozenset({"br-prod"}))


def _inv(dest: Host, v: VM | None = None) -> Inventory:
    v = v or vm("web", "src", cpu_model="Icelake-Server", cpu_features=frozenset({"avx512f"}),
                networks=frozenset({"br-prod"}), disks=(shared_disk("vda", "nfs-1"), local_disk("vdb", 10.0)))
    return flat([_src(), dest], [v])


GOOD = {"arch": "x86_64", "cpu_model": "Icelake-Server", "cpu_features": frozenset({"avx512f"}),
        "storage": frozenset({"nfs-1"}), "networks": frozenset({"br-prod"})}


@pytest.mark.parametrize(("change", "needle"), [
    ({}, None),
    ({"state": HostState.MAINTENANCE}, "is maintenance"),
    ({"state": HostState.DOWN}, "is down"),
    ({"arch": "aarch64"}, "aarch64"),
    ({"cpu_model": "Skylake-Server"}, "CPU model Skylake-Server"),
    ({"cpu_model": None}, None),  # unknown: allowed
    ({"cpu_features": frozenset()}, "lacks CPU features avx512f"),
    ({"storage": frozenset()}, "does not mount storage nfs-1"),
    ({"networks": frozenset({"br-x"})}, "does not offer network br-prod"),
    ({"local_disk_free_gib": 5.0}, "local disks need 10 GiB"),
    ({"memory_mib": 512}, "MiB"),
    ({"cpus": 0}, "vCPUs"),
])
def test_eligible_reasons(change: dict[str, object], needle: str | None) -> None:
    dest = host("dst", **{**GOOD, **change})
    inv = _inv(dest)
    reasons = eligible(inv.vm["web"], dest, inv)
    if needle is None:
        assert reasons == []
    else:
        assert len(reasons) == 1 and needle in reasons[0], reasons
    assert can_receive(inv.vm["web"], dest, inv) == (reasons == [])


def test_pinned_same_host_and_drained() -> None:
    dest = host("dst", **GOOD)
    inv = _inv(dest)
    web = inv.vm["web"]
    assert any("pinned" in r for r in eligible(replace(web, pinned=True), dest, inv))
    assert any("current host" in r for r in eligible(web, inv.host["src"], inv))
    assert eligible(web, dest, inv, drained={"dst"}) == ["host dst is being drained"]


def test_drain_set_adds_maintenance_hosts() -> None:
    inv = flat([host("a"), host("b", state=HostState.MAINTENANCE), host("c")], [])
    assert drain_set(inv, ["a"]) == {"a", "b"}


@settings(max_examples=150, deadline=None)
@given(features=st.lists(st.sets(st.sampled_from("xyz")), min_size=4, max_size=4),
       nets=st.lists(st.sets(st.sampled_from("pq")), min_size=4, max_size=4),
       states=st.lists(st.sampled_from(list(HostState)), min_size=4, max_size=4),
       mems=st.lists(st.sampled_from([512, 4096]), min_size=4, max_size=4),
       vm_feat=st.sets(st.sampled_from("xyz")), vm_net=st.sets(st.sampled_from("pq")), pinned=st.booleans(),
       drained=st.sets(st.sampled_from(["h0", "h1", "h2", "h3"])))
def test_candidate_hosts_agrees_with_eligible(features: list[set[str]], nets: list[set[str]],
                                             states: list[HostState], mems: list[int], vm_feat: set[str],
                                             vm_net: set[str], pinned: bool, drained: set[str]) -> None:
    hosts = [host(f"h{i}", cpu_features=frozenset(f), networks=frozenset(n), state=s, memory_mib=m)
             for i, (f, n, s, m) in enumerate(zip(features, nets, states, mems, strict=True))]
    vms = [VM(name=f"v{i}", host="h0", vcpus=1, memory_mib=1024, cpu_features=frozenset(vm_feat),
              networks=frozenset(vm_net), pinned=pinned and i == 0,
              disks=(Disk("vda", storage=None, allocation_gib=1.0),)) for i in range(2)]
    inv = flat(hosts, vms)
    got = candidate_hosts(inv, inv.vms, drained, Topology(inv))
    for v in inv.vms:
        assert got[v.name] == tuple(h.name for h in inv.hosts if not eligible(v, h, inv, drained))


def test_why_no_destination_ranks_the_rule_that_excludes_every_host_first() -> None:
    inv = flat([host("h1"), host("h2", networks=frozenset({"br-prod"})), host("h3", cpu_features=frozenset({"x"}))],
               [vm("db", "h1", networks=frozenset({"br-db"}), cpu_features=frozenset({"x"})),
                vm("ok", "h1")])
    assert why_no_destination(inv.vm["db"], inv) == ["no host offers network br-db", "1 of 2 hosts lack CPU features x"]
    assert why_no_destination(inv.vm["ok"], inv) == []
    assert why_no_destination(inv.vm["ok"], inv, drained={"h2", "h3"}) == ["no other host is up and not being drained"]
    assert why_no_destination(replace(inv.vm["ok"], pinned=True), inv) == ["VM ok is pinned"]
