"""XML parsing against captured libvirt 9.0 output (lab hosts, test driver) and production-shaped XML."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor import domain_xml as dx

XML = Path(__file__).parent / "data" / "xml"


def read(name: str) -> str:
    return (XML / name).read_text()


def test_lab_capabilities() -> None:
    caps = dx.parse_capabilities(read("lab-capabilities.xml"))
    assert caps.arch == "x86_64"
    assert caps.cpu_model == "kvm64" and caps.cpu_vendor == "AMD"
    assert (caps.sockets, caps.cores, caps.threads) == (1, 2, 1)
    assert caps.host_uuid == "7ab00000-0000-4000-8000-000000000001"
    assert caps.cells_cpus == 2
    assert caps.cells_memory_kib is not None and caps.cells_memory_kib > 1024 * 1024
    assert {"x2apic", "hypervisor"} <= caps.cpu_features


def test_test_driver_capabilities_have_cells_but_no_model() -> None:
    caps = dx.parse_capabilities(read("testdefault-capabilities.xml"))
    assert caps.arch == "i686"
    assert caps.cpu_model is None
    assert caps.cells_cpus == 16
    assert caps.cells_memory_kib == 2097152 + 4194304


def test_domain_capabilities_host_model_tcg_and_kvm() -> None:
    tcg = dx.parse_domain_capabilities(read("lab-domcapabilities-qemu.xml"))
    assert tcg.supported and tcg.model == "EPYC" and tcg.vendor == "AMD"
    assert tcg.features and tcg.disabled  # TCG cannot offer some EPYC features: they are disabled
    assert not tcg.features & tcg.disabled
    assert "qemu64" in tcg.usable_models and "phenom" not in tcg.usable_models
    kvm = dx.parse_domain_capabilities(read("lab-domcapabilities-kvm.xml"))
    assert kvm.model == "kvm64" and "x2apic" in kvm.features


def test_lab_domain_running() -> None:
    d = dx.parse_domain(read("lab-domain-running.xml"))
    assert (d.name, d.domain_type, d.vcpus, d.memory_mib) == ("vm1", "qemu", 1, 96)
    assert d.uuid == "f215c861-ff45-4dd7-b3d8-f63ec7474380"
    assert d.cpu.mode == "custom" and d.cpu.model == "qemu64"
    assert d.cpu.features_required == {"hypervisor", "lahf_lm"}
    vda, vdb, vdc = d.disks
    assert (vda.target, vda.type, vda.path, vda.format, vda.cache) == (
        "vda", "file", "/var/lib/libvirt/images/vm1-root", "qcow2", "none")
    assert vdb.is_network and vdb.protocol == "nbd" and vdb.network_name == "vm1-data"
    assert vdb.hosts == (dx.NetworkHost("10.77.0.2", 10809),)
    assert vdb.source == "nbd://10.77.0.2:10809/vm1-data" and vdb.path is None and vdb.format == "raw"
    assert vdc.path == "/var/lib/libvirt/shared/vm1-dir"
    assert d.interfaces == ()


def test_inactive_domain_matches_running_one() -> None:
    live = dx.parse_domain(read("lab-domain-running.xml"))
    inactive = dx.parse_domain(read("lab-domain-inactive.xml"))
    assert (inactive.name, inactive.memory_kib, inactive.vcpus) == (live.name, live.memory_kib, live.vcpus)
    assert [d.target for d in inactive.disks] == ["vda", "vdb", "vdc"]


def test_production_shaped_domain() -> None:
    d = dx.parse_domain(read("domain-kvm-mixed.xml"))
    assert d.domain_type == "kvm"
    assert d.vcpus == 8  # the maximum: a destination must be able to host all of them
    assert d.memory_mib == 32768 and d.current_memory_kib == 16777216
    assert d.cpu.mode == "host-passthrough" and d.cpu.model is None
    by_target = {disk.target: disk for disk in d.disks}
    assert set(by_target) == {"sda", "vdb", "sdb", "vdc", "vdd", "sdc"}
    assert by_target["sda"].type == "block" and by_target["sda"].path == "/dev/mapper/open_euleros_disk"
    rbd = by_target["vdb"]
    assert rbd.protocol == "rbd" and rbd.network_name == "vms/erp-01-data" and len(rbd.hosts) == 2
    assert rbd.cache == "writeback"
    lun = by_target["sdb"]
    assert lun.device == "lun" and lun.protocol == "iscsi" and lun.shareable
    assert by_target["vdc"].source == "gluster://gluster1.example.net/gv0/erp-01-logs.qcow2"
    vol = by_target["vdd"]
    assert (vol.type, vol.pool, vol.volume, vol.source) == ("volume", "nfs-images", "erp-01-root.qcow2",
                                                           "nfs-images/erp-01-root.qcow2")
    cd = by_target["sdc"]
    assert cd.device == "cdrom" and cd.source is None and cd.readonly
    assert [(i.type, i.source) for i in d.interfaces] == [("network", "prod-net"), ("bridge", "br-storage"),
                                                          ("direct", "ens2f1")]


def test_custom_cpu_policies() -> None:
    xml = """<domain type='kvm'><name>x</name><memory unit='MiB'>512</memory><vcpu>1</vcpu>
      <cpu match='exact'><model>Icelake-Server</model><feature name='pku'/>
      <feature policy='force' name='avx512f'/><feature policy='optional' name='rdrand'/>
      <feature policy='disable' name='hle'/></cpu></domain>"""
    cpu = dx.parse_domain(xml).cpu
    assert cpu.mode == "custom"  # libvirt's default when a model is given
    assert cpu.features_required == {"pku", "avx512f"}  # a feature without policy is required
    assert cpu.features_disabled == {"hle"}
    assert "<model fallback='forbid'>Icelake-Server</model>" in dx.domain_cpu_xml(cpu)


def test_memory_units() -> None:
    assert dx.parse_domain("<domain><name>a</name><memory unit='GiB'>2</memory></domain>").memory_mib == 2048
    assert dx.parse_domain("<domain><name>a</name><memory>1025</memory></domain>").memory_mib == 2  # KiB, rounded up
    assert dx.parse_domain("<domain><name>a</name><memory unit='MB'>1000</memory></domain>").memory_mib == 954


def test_hugepage_backing() -> None:
    """The collector must not take RSS for a hugepage guest's use: hugetlbfs pages are not in RSS."""
    backed = "<domain><name>a</name><memoryBacking><hugepages><page size='2048'/></hugepages></memoryBacking></domain>"
    assert dx.parse_domain(backed).hugepages
    assert not dx.parse_domain("<domain><name>a</name><memoryBacking><locked/></memoryBacking></domain>").hugepages


@pytest.mark.parametrize(
    ("file", "kind", "key", "target"),
    [
        ("pool-netfs.xml", "netfs", "nfs:nas.example.net:/export/vms", "/mnt/nfs"),
        ("pool-rbd.xml", "rbd", "rbd:mon1.example.net,mon2.example.net/vms", None),
        ("pool-iscsi.xml", "iscsi", "iscsi:san.example.net/iqn.2013-06.com.example:iscsi-pool", "/dev/disk/by-path"),
        ("lab-pool-default.xml", "dir", None, "/var/lib/libvirt/images"),
        ("lab-pool-shared.xml", "dir", None, "/var/lib/libvirt/shared"),
    ],
)
def test_pools(file: str, kind: str, key: str | None, target: str | None) -> None:
    pool = dx.parse_pool(read(file))
    assert pool.type == kind and pool.source_key == key and pool.target_path == target
    assert pool.is_network == (key is not None)


def test_pool_sizes_in_bytes() -> None:
    pool = dx.parse_pool(read("pool-netfs.xml"))
    assert pool.available_bytes == 3298534883328 and pool.capacity_bytes == 4 * 1024**4


def test_nic_node_devices() -> None:
    phys = dx.parse_node_device_net(read("nodedev-net-physical.xml"))
    assert phys is not None
    assert (phys.interface, phys.speed_gbps, phys.link_up, phys.physical) == ("ens2f0", 25.0, True, True)
    veth = dx.parse_node_device_net(read("lab-nodedev-net-eth0.xml"))
    assert veth is not None and veth.speed_gbps == 10.0 and veth.link_up and not veth.physical
    lo = dx.parse_node_device_net(read("lab-nodedev-net-lo.xml"))
    assert lo is not None and lo.speed_mbps is None and not lo.link_up


def test_non_net_node_device_is_none() -> None:
    xml = "<device><name>computer</name><capability type='system'><hardware/></capability></device>"
    assert dx.parse_node_device_net(xml) is None


def test_expanded_cpu_features() -> None:
    xml = ("<cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model>"
           "<feature policy='require' name='sse2'/><feature policy='disable' name='svm'/></cpu>")
    assert dx.parse_domain_capabilities_cpu_features(xml) == {"sse2"}


@pytest.mark.parametrize("bad", ["<domain><name>x</name>", "<pool type='dir'/>", "<domain><memory>1</memory></domain>"])
def test_bad_xml_raises_parse_error(bad: str) -> None:
    with pytest.raises(dx.XMLParseError):
        dx.parse_domain(bad)


_HV_DOMAIN = """<domain type='kvm'><name>vm1</name><memory unit='MiB'>512</memory><vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <cpu mode='custom' match='exact'><model fallback='forbid'>Haswell</model><feature policy='optional' name='vmx'/></cpu>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='/data/images/vm1.qcow2'/><target dev='vda'/></disk>
    <disk type='network' device='disk'><driver name='qemu' type='raw'/>
      <source protocol='nbd' name='shared0'><host name='10.0.0.2' port='10809'/></source><target dev='vdb'/></disk>
    <disk type='file' device='cdrom'><target dev='sda'/></disk>
    <interface type='network'><source network='prod' portid='p1' bridge='virbr9'/></interface>
    <interface type='bridge'><source bridge='br0'/></interface>
    <interface type='user'/>
  </devices>
</domain>"""


def test_what_the_hypervisor_reads_from_a_domain() -> None:
    """What executor.libvirt_hv's precheck and copy-storage need: disks it moves, networks and bridges
    the host must offer, the <cpu> to compare and the arch."""
    d = dx.parse_domain(_HV_DOMAIN)
    assert [(x.target, x.type, x.path, x.network_name, x.format) for x in d.data_disks] == [
        ("vda", "file", "/data/images/vm1.qcow2", None, "qcow2"), ("vdb", "network", None, "shared0", "raw")]
    assert [(i.type, i.source) for i in d.host_networks] == [("network", "prod"), ("bridge", "br0")]
    assert d.arch == "x86_64" and d.domain_type == "kvm"
    assert d.cpu.names_a_cpu and d.cpu.xml.startswith("<cpu mode=\"custom\"") and "Haswell" in d.cpu.xml
    assert dx.parse_domain(read("lab-domain-running.xml")).cpu.names_a_cpu


@pytest.mark.parametrize(("cpu", "names"), [
    ("", False), ("<cpu mode='host-passthrough'/>", False), ("<cpu><topology sockets='1'/></cpu>", False),
    ("<cpu><feature policy='optional' name='vmx'/></cpu>", True), ("<cpu mode='host-model'/>", False),
])
def test_a_domain_names_a_cpu_to_compare_only_with_a_model_or_features(cpu: str, names: bool) -> None:
    d = dx.parse_domain(f"<domain type='kvm'><name>v</name>{cpu}</domain>")
    assert d.cpu.names_a_cpu is names
