"""The pure half of the collector (executor/assemble.py), on hand-made snapshots: no libvirt daemon."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from executor import domain_xml as dx
from executor.assemble import CPUOffer, DomainSnapshot, HostSnapshot, PoolSnapshot, assemble
from executor.site import SiteConfig, load_site_config
from executor.usage import MemorySource, StatsSample, Usage, measure, not_running
from planner.inventory import parse_inventory
from planner.model import VMState

XML = Path(__file__).parent / "data" / "xml"


# ------------------------------------------------------------------------------------------ assemble (pure)

CAPS = dx.parse_capabilities((XML / "lab-capabilities.xml").read_text())


def snapshot(uri: str, hostname: str, domains: Sequence[DomainSnapshot] = (),
             pools: Sequence[str] = ()) -> HostSnapshot:
    return HostSnapshot(
        uri=uri, hostname=hostname, cpus=32, memory_mib=131072, free_memory_mib=65536, capabilities=CAPS,
        host_cpu=None, host_cpu_features=None,
        pools=tuple(PoolSnapshot(dx.parse_pool((XML / p).read_text()), True, 10 * 1024**3) for p in pools),
        networks=frozenset({"prod-net"}), nics=(), domains=tuple(domains))


def dom(xml: str, state: VMState = VMState.RUNNING) -> DomainSnapshot:
    return DomainSnapshot(dx.parse_domain(xml), state, True, {}, None)


def test_network_disks_take_the_id_of_the_pool_with_the_same_source() -> None:
    erp = dom((XML / "domain-kvm-mixed.xml").read_text())
    inv, warnings = assemble([snapshot("test:///a", "a", [erp], ["pool-rbd.xml", "pool-iscsi.xml"]),
                              snapshot("test:///b", "b", [], ["pool-rbd.xml"])], [])
    disks = {d.target: d for d in inv.vm["erp-01"].disks}
    assert disks["vdb"].storage == "ceph-vms"  # rbd image vms/erp-01-data, same monitors as pool ceph-vms
    assert disks["sdb"].storage == "san-lun"  # iSCSI LUN of the target pool san-lun serves
    assert disks["vdc"].storage == "gluster:gluster1.example.net/gv0"  # no pool: id from its source
    assert disks["sda"].storage is None  # a local block device
    assert disks["vdd"].storage is None  # volume of pool nfs-images, which this host does not have
    assert "sdc" not in disks  # empty cdrom
    assert inv.host["a"].storage == {"ceph-vms", "san-lun", "gluster:gluster1.example.net/gv0"}
    assert inv.host["b"].storage == {"ceph-vms"}
    # host-passthrough: needs the source host's CPU (here, without domain capabilities: the raw host CPU).
    assert inv.vm["erp-01"].cpu_model == CAPS.cpu_model and inv.vm["erp-01"].cpu_features == CAPS.cpu_features
    assert inv.vm["erp-01"].networks == {"prod-net", "br-storage", "ens2f1"}
    assert any("gluster" in w.where for w in warnings)


def test_same_name_different_uuid_keeps_both_renamed() -> None:
    one = "<domain><name>dup</name><uuid>11111111-0000-4000-8000-000000000001</uuid><memory>1024</memory></domain>"
    two = "<domain><name>dup</name><uuid>22222222-0000-4000-8000-000000000002</uuid><memory>1024</memory></domain>"
    inv, warnings = assemble([snapshot("test:///a", "a", [dom(one)]), snapshot("test:///b", "b", [dom(two)])], [])
    assert sorted(v.name for v in inv.vms) == ["dup", "dup@b"]
    assert inv.vm["dup@b"].uuid == "22222222-0000-4000-8000-000000000002"
    assert any("share this name" in w.message for w in warnings)


def test_guest_active_on_two_hosts_is_flagged() -> None:
    xml = "<domain><name>m</name><uuid>33333333-0000-4000-8000-000000000003</uuid><memory>1024</memory></domain>"
    inv, warnings = assemble([snapshot("test:///a", "a", [dom(xml)]),
                              snapshot("test:///b", "b", [dom(xml, VMState.PAUSED)])], [])
    assert [(v.name, v.host) for v in inv.vms] == [("m", "a")]
    assert any("ACTIVE ON BOTH" in w.message for w in warnings)


def test_hosts_file_entry_without_uri_matches_the_libvirt_hostname(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text("hosts:\n  a: {reserved_memory_mib: 512, nic_gbps: 40}\n")
    inv, _ = assemble([snapshot("test:///x", "a"), snapshot("test:///y", "b")], [], load_site_config(path))
    assert (inv.host["a"].reserved_memory_mib, inv.host["a"].nic_gbps) == (512, 40)
    assert (inv.host["b"].reserved_memory_mib, inv.host["b"].nic_gbps) == (0, 1.0)
    assert SiteConfig().override_for("test:///x", "a") is None


# ------------------------------------------------------------------------------------------ CPU offer per domain type

KVM_CPU = dx.parse_domain_capabilities((XML / "lab-domcapabilities-kvm.xml").read_text())
QEMU_CPU = dx.parse_domain_capabilities((XML / "lab-domcapabilities-qemu.xml").read_text())
# Expanded offers as libvirt 9.0 gives them on this machine (abridged): TCG emulates svm, KVM without nesting
# does not offer it; the lab guest's qemu64 model includes svm.
KVM_OFFER = frozenset({"fpu", "sse2", "lahf_lm", "hypervisor", "x2apic", "vme"})
QEMU_OFFER = frozenset({"fpu", "sse2", "lahf_lm", "hypervisor", "svm", "npt", "acpi"})
QEMU64_NEEDS = frozenset({"fpu", "sse2", "lahf_lm", "hypervisor", "svm"})


def kvm_host(hostname: str, domains: Sequence[DomainSnapshot], qemu_offer: frozenset[str] = QEMU_OFFER,
             read_qemu: bool = True) -> HostSnapshot:
    """A host with /dev/kvm: its default offer is KVM's; the qemu (TCG) one is read when a guest is TCG."""
    offers = {"kvm": CPUOffer(KVM_CPU, KVM_OFFER)} | ({"qemu": CPUOffer(QEMU_CPU, qemu_offer)} if read_qemu else {})
    return replace(snapshot(f"qemu+unix:///system?socket=/run/{hostname}", hostname, domains),
                   host_cpu=KVM_CPU, host_cpu_features=KVM_OFFER, virttype="kvm", cpu_offers=offers)


def lab_guest(name: str, virttype: str = "qemu", needs: frozenset[str] = QEMU64_NEEDS,
              state: VMState = VMState.RUNNING) -> DomainSnapshot:
    xml = (XML / "lab-domain-running.xml").read_text().replace("<name>vm1</name>", f"<name>{name}</name>")
    xml = xml.replace("f215c861-ff45-4dd7-b3d8-f63ec7474380", str(uuid.uuid5(uuid.NAMESPACE_DNS, name)))
    if virttype == "kvm":
        xml = xml.replace("<domain type='qemu'", "<domain type='kvm'")
    return DomainSnapshot(dx.parse_domain(xml), state, True, {}, needs, virttype=virttype)


def test_tcg_guests_on_kvm_hosts_are_judged_by_the_qemu_offer() -> None:
    """Issue 8 item 10: the default collect on the lab wrote VMs needing svm that no host offered."""
    inv, warnings = assemble([kvm_host("h1", [lab_guest("a"), lab_guest("b")]), kvm_host("h2", [lab_guest("c")])], [])
    for host in inv.hosts:
        assert host.cpu_features == QEMU_OFFER and host.cpu_model == QEMU_CPU.model
    for vm in inv.vms:
        assert vm.cpu_features == QEMU64_NEEDS
        assert all(vm.cpu_features <= h.cpu_features for h in inv.hosts), vm.name
    assert not [w for w in warnings if "CPU" in w.message]


def test_a_running_vm_needing_more_than_its_host_offers_is_named_and_can_stay() -> None:
    odd = lab_guest("odd", needs=QEMU64_NEEDS | {"avx512f", "pku"})
    inv, warnings = assemble([kvm_host("h1", [odd, lab_guest("fine")]), kvm_host("h2", [])], [])
    vm = inv.vm["odd"]
    assert vm.cpu_features <= inv.host["h1"].cpu_features and vm.cpu_features == QEMU64_NEEDS
    [w] = [w for w in warnings if w.where == "vms.odd"]
    assert "avx512f, pku" in w.message and "h1" in w.message and "disagree" in w.message
    assert inv.vm["fine"].cpu_features == QEMU64_NEEDS


def test_a_shut_off_vm_needing_more_is_warned_about_and_kept() -> None:
    off = lab_guest("off", needs=QEMU64_NEEDS | {"avx512f"}, state=VMState.SHUTOFF)
    inv, warnings = assemble([kvm_host("h1", [off, lab_guest("on")])], [])
    assert "avx512f" in inv.vm["off"].cpu_features
    assert any(w.where == "vms.off" and "shut off" in w.message for w in warnings)


def test_a_mixed_fleet_describes_hosts_by_the_majority_type_and_says_so_for_the_others() -> None:
    kvm_needs = frozenset({"fpu", "sse2", "x2apic"})
    inv, warnings = assemble([kvm_host("h1", [lab_guest("k1", "kvm", kvm_needs), lab_guest("k2", "kvm", kvm_needs),
                                              lab_guest("t1")]), kvm_host("h2", [], read_qemu=False)], [])
    assert all(h.cpu_features == KVM_OFFER for h in inv.hosts)
    assert inv.vm["k1"].cpu_features == kvm_needs
    assert "svm" not in inv.vm["t1"].cpu_features and inv.vm["t1"].cpu_features <= inv.host["h1"].cpu_features
    [w] = [w for w in warnings if w.where == "vms.t1"]
    assert "svm" in w.message and "a qemu guest judged by the kvm CPU offer" in w.message


# ------------------------------------------------------------------------------------------ measured use

S = 1_000_000_000


def guest(name: str, usage: Usage, state: VMState = VMState.RUNNING, memory_mib: int = 1024) -> DomainSnapshot:
    xml = (f"<domain><name>{name}</name><uuid>{uuid.uuid5(uuid.NAMESPACE_DNS, name)}</uuid>"
           f"<memory unit='MiB'>{memory_mib}</memory><vcpu>2</vcpu></domain>")
    return DomainSnapshot(dx.parse_domain(xml), state, True, {}, None, usage=usage)


def test_measured_use_reaches_the_inventory_and_a_shut_off_vm_has_none() -> None:
    first = StatsSample(10.0, {"busy": {"cpu.time": 4 * S, "balloon.current": 1048576, "balloon.rss": 700 * 1024},
                               "idle": {"cpu.time": 9 * S, "balloon.current": 1048576, "balloon.available": 900 * 1024,
                                        "balloon.unused": 600 * 1024}})
    second = StatsSample(12.0, {"busy": {"cpu.time": 7 * S}, "idle": {"cpu.time": 9 * S + S // 10}})
    inv, warnings = assemble([snapshot("test:///a", "a", [guest("busy", measure("busy", first, second)),
                                                          guest("idle", measure("idle", first, second)),
                                                          guest("off", not_running(), VMState.SHUTOFF)])], [])
    busy, idle, off = inv.vm["busy"], inv.vm["idle"], inv.vm["off"]
    assert (busy.cpu_used, busy.memory_used_mib) == (1.5, 700)
    assert (idle.cpu_used, idle.memory_used_mib) == (0.05, 300)  # the guest's own view: available − unused
    assert (off.cpu_used, off.memory_used_mib) == (None, None)
    [w] = [w for w in warnings if "usage not measured" in w.message]
    assert w.where == "a" and "cpu_used absent for 1 of 3 VMs (shut off: 1)" in w.message
    assert "memory_used_mib absent for 1 of 3 VMs (shut off: 1)" in w.message
    doc = inv.to_dict()
    by_name = {v["name"]: v for v in doc["vms"]}
    assert by_name["busy"]["cpu_used"] == 1.5 and by_name["busy"]["memory_used_mib"] == 700
    assert "cpu_used" not in by_name["off"] and "memory_used_mib" not in by_name["off"]  # absent, not 0
    assert parse_inventory(doc, "assembled").inventory.vm["busy"].cpu_used == 1.5  # the loader accepts it


def test_a_big_host_without_statistics_gets_one_line_not_one_per_vm() -> None:
    lost = Usage(None, 512, MemorySource.RSS, "second sample not read (connection reset)", None)
    doms = [guest(f"vm{i:03}", lost) for i in range(300)] + [guest(f"off{i}", not_running(), VMState.SHUTOFF)
                                                            for i in range(5)]
    inv, warnings = assemble([snapshot("test:///a", "a", doms), snapshot("test:///b", "b")], [])
    usage_lines = [w for w in warnings if "usage not measured" in w.message]
    assert len(usage_lines) == 1 and usage_lines[0].where == "a"
    assert usage_lines[0].message == (
        "usage not measured: cpu_used absent for 305 of 305 VMs (second sample not read (connection reset): 300; "
        "shut off: 5); memory_used_mib absent for 5 of 305 VMs (shut off: 5)")
    assert inv.vm["vm000"].memory_used_mib == 512 and inv.vm["vm000"].cpu_used is None


def test_the_usage_warning_names_the_inventory_host_not_the_libvirt_hostname(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text("hosts:\n  r1-h01: {uri: 'test:///x'}\n")
    _, warnings = assemble([snapshot("test:///x", "localhost", [guest("off", not_running(), VMState.SHUTOFF)])], [],
                           load_site_config(path))
    assert [w.where for w in warnings if "usage not measured" in w.message] == ["r1-h01"]

