"""LibvirtHypervisor against libvirt's own `test:///<file>` driver (no mock stands in for libvirt).

Each fake host is a node XML file; every connection to a file gets its own in-memory state, so one
hypervisor's shared connection per host behaves like a small fleet. The test driver has no
migration, job statistics, CPU comparison or free-memory figures (getFreeMemory answers 0): what
needs them is tested in the real lab (tests/lab/test_executor_lab.py); here: URIs, flags and
parameters, status classification, precheck, volume creation for copy-storage.
"""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest

from executor import libvirt_errors
from executor.hypervisor import DomainState, HypervisorError, MigrationSpec
from executor.libvirt_hv import LibvirtHypervisor, job_progress_from_stats
from executor.runner import RunOptions
from planner.errors import UsageError
from planner.model import Host, Inventory

VM_UUID = "11111111-1111-4111-8111-111111111111"


def _domain(name: str = "vm1", uuid: str = VM_UUID, network: str = "prod") -> str:
    return f"""<domain type='test'>
    <name>{name}</name><uuid>{uuid}</uuid><memory unit='MiB'>512</memory><vcpu>1</vcpu>
    <os><type arch='x86_64'>hvm</type></os>
    <devices>
      <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
        <source file='/data/images/{name}.qcow2'/><target dev='vda'/></disk>
      <disk type='network' device='disk'><driver name='qemu' type='raw'/>
        <source protocol='nbd' name='shared0'><host name='10.0.0.2' port='10809'/></source><target dev='vdb'/></disk>
      <interface type='network'><source network='{network}'/></interface>
    </devices>
  </domain>"""


_POOL = """<pool type='dir'><name>images</name><uuid>22222222-1111-4111-8111-11111111111{i}</uuid><source/>
    <target><path>/data/images</path></target>{volumes}</pool>"""
_VOLUME = """<volume type='file'><name>{name}.qcow2</name><key>/data/images/{name}.qcow2</key><source/>
      <capacity unit='MiB'>64</capacity><allocation unit='MiB'>1</allocation>
      <target><path>/data/images/{name}.qcow2</path><format type='qcow2'/></target></volume>"""


def _node(tmp_path: Path, name: str, *, domains: tuple[str, ...] = (), network: bool = True, pool: bool = True,
          volumes: tuple[str, ...] = ()) -> str:
    parts = ["<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads>"
             "<active>4</active><mhz>2000</mhz><model>x86_64</model></cpu><memory>8388608</memory>"]
    parts += [_domain(d) for d in domains]
    if network:
        parts.append("<network><name>prod</name><bridge name='virbr9'/>"
                     "<ip address='192.168.9.1' netmask='255.255.255.0'/></network>")
    if pool:
        parts.append(_POOL.format(i=len(name) % 10, volumes="".join(_VOLUME.format(name=v) for v in volumes)))
    parts.append("</node>")
    path = tmp_path / f"{name}.xml"
    path.write_text("\n".join(parts))
    return f"test://{path}"


def _hv(uris: dict[str, str], **kwargs: object) -> LibvirtHypervisor:
    hosts = tuple(Host(name=n, cpus=4, memory_mib=8192, nic_gbps=10, uri=u) for n, u in uris.items())
    return LibvirtHypervisor(Inventory(hosts=hosts, vms=()), **kwargs)  # type: ignore[arg-type]


def _spec(**kwargs: object) -> MigrationSpec:
    base: dict[str, object] = {"vm": "vm1", "uuid": VM_UUID, "source": "a", "destination": "b",
                               "bandwidth_mibs": 32.0, "max_downtime_ms": 300.0}
    base.update(kwargs)
    return MigrationSpec(**base)  # type: ignore[arg-type]


# ---------------------------------------------------------------- error codes


def test_error_codes_are_libvirts() -> None:
    for code in libvirt_errors.LibvirtCode:
        if code is not libvirt_errors.LibvirtCode.OK:
            assert getattr(libvirt, f"VIR_ERR_{code.name}") == code.value, code.name


def test_retryable_codes() -> None:
    assert libvirt_errors.is_retryable(68)  # job lock held by someone else: retry with backoff
    for final in (1, 42, 49, 69, 74, 78, 81, 84, 88, 91):
        assert not libvirt_errors.is_retryable(final), final
    # operation failed, system error, RPC, job lock timeout: what the runner retries by default
    assert RunOptions().retryable_codes == frozenset({9, 38, 39, 68})
    # ... unless the message says the destination is full: the next attempt would fail the same way
    assert libvirt_errors.is_retryable(9, "migration of disk vda failed: Input/output error")
    assert not libvirt_errors.is_retryable(9, "migration of disk vda failed: No space left on device")
    assert libvirt_errors.describe(78) == "78 OPERATION_ABORTED (operation aborted)"
    assert libvirt_errors.name(12345) == "code 12345"


# ---------------------------------------------------------------- URIs


def test_bad_uris_are_refused_together_naming_hosts(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        _hv({"a": "qemu+ext:///system?command=/bin/sh", "b": "qemu+tcp://10.0.0.2/system"})
    text = str(err.value)
    assert "hosts[0].uri (a)" in text and "ext" in text
    assert "hosts[1].uri (b)" in text and "tcp" in text


def test_tcp_peer_uri_needs_allow_insecure(tmp_path: Path) -> None:
    uris = {"a": _node(tmp_path, "a"), "b": _node(tmp_path, "b")}
    with pytest.raises(UsageError, match="peer URI of b"):
        _hv(uris, peer_uris={"b": "qemu+tcp://10.77.0.12/system"})
    hv = _hv(uris, peer_uris={"b": "qemu+tcp://10.77.0.12/system"}, allow_insecure_transport=True)
    assert hv.peer_uri("b") == "qemu+tcp://10.77.0.12/system" and hv.peer_uri("a") == uris["a"]
    with pytest.raises(UsageError, match="not in the inventory"):
        _hv(uris, peer_uris={"zz": "qemu:///system"})


# ---------------------------------------------------------------- flags and parameters


def test_flags_follow_the_virsh_guide_and_never_add_unsafe(tmp_path: Path) -> None:
    hv = _hv({"a": _node(tmp_path, "a"), "b": _node(tmp_path, "b")})
    base = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
    persist = libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    assert hv.migration_flags(_spec(), persistent=True) == base | persist
    assert hv.migration_flags(_spec(), persistent=False) == base
    everything = _spec(auto_converge=True, copy_storage=("vda",), postcopy_allowed=True, tls=True,
                       parallel_connections=4)
    flags = hv.migration_flags(everything, persistent=True)
    for flag in (libvirt.VIR_MIGRATE_AUTO_CONVERGE, libvirt.VIR_MIGRATE_NON_SHARED_DISK, libvirt.VIR_MIGRATE_POSTCOPY,
                 libvirt.VIR_MIGRATE_TLS, libvirt.VIR_MIGRATE_PARALLEL):
        assert flags & flag
    assert not flags & libvirt.VIR_MIGRATE_UNSAFE
    assert hv.migration_flags(_spec(unsafe=True), persistent=True) & libvirt.VIR_MIGRATE_UNSAFE
    offline = hv.migration_flags(_spec(live=False), persistent=True)
    assert offline == libvirt.VIR_MIGRATE_OFFLINE | libvirt.VIR_MIGRATE_PEER2PEER | persist


def test_params_bandwidth_disks_address(tmp_path: Path) -> None:
    hosts = (Host(name="a", cpus=4, memory_mib=8192, nic_gbps=10, uri=_node(tmp_path, "a")),
             Host(name="b", cpus=4, memory_mib=8192, nic_gbps=10, uri=_node(tmp_path, "b"),
                  migration_address="10.9.0.2"))
    hv = LibvirtHypervisor(Inventory(hosts=hosts, vms=()))
    params = hv.migration_params(_spec(bandwidth_mibs=23.6, copy_storage=("vda",), parallel_connections=2))
    assert params == {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 24, libvirt.VIR_MIGRATE_PARAM_URI: "tcp://10.9.0.2",
                      libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: ["vda"],
                      libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS: 2}
    assert hv.migration_params(_spec(bandwidth_mibs=0.2))[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] == 1  # 0 = unlimited
    assert libvirt.VIR_MIGRATE_PARAM_BANDWIDTH not in hv.migration_params(_spec(bandwidth_mibs=0))
    assert hv.migration_params(_spec(destination="a")) == {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 32}
    assert hv.migration_params(_spec(destination="a", postcopy_allowed=True)) == {
        libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 32, libvirt.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY: 32}


# ---------------------------------------------------------------- status


def test_domain_status_running_absent_unknown(tmp_path: Path) -> None:
    hv = _hv({"a": _node(tmp_path, "a", domains=("vm1",)), "b": _node(tmp_path, "b"),
              "gone": "qemu+unix:///system?socket=/nonexistent/libvirt-sock"})
    st = hv.domain_status("a", "vm1", VM_UUID)
    assert (st.state, st.uuid, st.persistent, st.job_active) == (DomainState.RUNNING, VM_UUID, True, False)
    assert hv.domain_status("a", "vm1").state is DomainState.RUNNING  # by name without a uuid
    assert hv.domain_status("b", "vm1", VM_UUID).state is DomainState.ABSENT
    assert hv.domain_status("a", "other").state is DomainState.ABSENT
    assert hv.domain_status("gone", "vm1", VM_UUID).state is DomainState.UNKNOWN  # never raises
    assert hv.domain_status("not-in-inventory", "vm1").state is DomainState.UNKNOWN
    hv.suspend("a", "vm1", VM_UUID)
    assert hv.domain_status("a", "vm1", VM_UUID).state is DomainState.PAUSED
    hv.resume("a", "vm1", VM_UUID)
    assert [d.vm for d in hv.list_domains("a")] == ["vm1"]
    with pytest.raises(HypervisorError) as err:
        hv.list_domains("gone")
    assert err.value.host == "gone"
    hv.close()


def test_job_control_errors_carry_libvirt_codes(tmp_path: Path) -> None:
    hv = _hv({"a": _node(tmp_path, "a", domains=("vm1",)), "b": _node(tmp_path, "b")})
    with pytest.raises(HypervisorError) as err:
        hv.abort("a", "vm1", VM_UUID)  # the test driver has no jobs: NO_SUPPORT, not a crash
    assert err.value.code == libvirt_errors.LibvirtCode.NO_SUPPORT
    with pytest.raises(HypervisorError) as err:
        hv.abort("b", "vm1", VM_UUID)
    assert err.value.code == libvirt_errors.LibvirtCode.NO_DOMAIN


def test_job_progress_units() -> None:
    stats = {"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED, "time_elapsed": 2500, "data_total": 256 * 2**20,
             "data_processed": 64 * 2**20, "data_remaining": 192 * 2**20, "memory_iteration": 2,
             "memory_bps": 16 * 2**20, "memory_dirty_rate": 512, "memory_page_size": 4096,
             "disk_total": 32 * 2**20, "disk_processed": 8 * 2**20, "downtime": 40}
    p = job_progress_from_stats(stats)
    assert p is not None
    assert (p.elapsed_s, p.data_total_mib, p.data_processed_mib, p.data_remaining_mib) == (2.5, 256, 64, 192)
    assert (p.rate_mibs, p.dirty_rate_mibs, p.disk_total_mib, p.disk_processed_mib) == (16, 2, 32, 8)
    assert (p.memory_iteration, p.expected_downtime_ms) == (2, 40)
    assert job_progress_from_stats({"type": libvirt.VIR_DOMAIN_JOB_NONE}) is None


# ---------------------------------------------------------------- precheck


def test_precheck_names_missing_network_and_pool(tmp_path: Path) -> None:
    hv = _hv({"a": _node(tmp_path, "a", domains=("vm1",), volumes=("vm1",)),
              "b": _node(tmp_path, "b", network=False, pool=False)})
    problems = hv.precheck(_spec())
    assert any(p.startswith("b: no network prod") for p in problems), problems
    assert any(p.startswith("b: no active storage pool with target path /data/images") and "vda" in p
               for p in problems), problems
    assert not any("vdb" in p for p in problems)  # the NBD disk is shared by nature
    # Copy-storage of vda still needs a pool on b to create the file in.
    assert any("for copy-storage" in p for p in hv.precheck(_spec(copy_storage=("vda",))))


def test_precheck_shared_pool_must_show_the_disk(tmp_path: Path) -> None:
    hv = _hv({"a": _node(tmp_path, "a", domains=("vm1",), volumes=("vm1",)), "b": _node(tmp_path, "b")})
    problems = hv.precheck(_spec())
    assert any("not visible in pool images" in p for p in problems), problems  # a local disk, not shared
    assert not any("network" in p for p in problems)
    assert not any("vda" in p for p in hv.precheck(_spec(copy_storage=("vda",))))
    shared = _hv({"a": _node(tmp_path, "a2", domains=("vm1",), volumes=("vm1",)),
                  "b": _node(tmp_path, "b2", volumes=("vm1",))})
    assert not any("vda" in p for p in shared.precheck(_spec()))
    assert any("already exists; evac does not overwrite" in p for p in shared.precheck(_spec(copy_storage=("vda",))))


def test_precheck_memory_domain_present_absent_state(tmp_path: Path) -> None:
    hv = _hv({"a": _node(tmp_path, "a", domains=("vm1",), volumes=("vm1",)),
              "b": _node(tmp_path, "b", domains=("vm1",), volumes=("vm1",)),
              "c": "qemu+unix:///system?socket=/nonexistent/libvirt-sock"})
    problems = hv.precheck(_spec())
    assert any(p.startswith("b: already has a domain with this uuid") for p in problems), problems
    assert any(p.startswith("b: 0 MiB free memory, VM vm1 needs 512 MiB") for p in problems), problems
    assert hv.precheck(_spec(source="b", destination="a", uuid="99999999-1111-4111-8111-111111111111")) == [
        "b: VM vm1 not found (uuid 99999999-1111-4111-8111-111111111111)"]
    down = hv.precheck(_spec(destination="c"))
    assert len(down) == 1 and down[0].startswith("c does not answer")
    offline = hv.precheck(_spec(live=False, copy_storage=("vda",)))
    assert any("a live migration" not in p and "needs it shut off" in p for p in offline)
    assert any("cannot copy storage" in p for p in offline)


# ---------------------------------------------------------------- copy-storage volumes


def test_prepare_storage_creates_same_format_and_capacity_then_cleans_up(tmp_path: Path) -> None:
    hv = _hv({"a": _node(tmp_path, "a", domains=("vm1",), volumes=("vm1",)), "b": _node(tmp_path, "b")})
    spec = _spec(copy_storage=("vda",))
    created = hv.prepare_storage(spec)
    assert created == ["/data/images/vm1.qcow2"]
    src_capacity = hv._call("a", lambda c: c.lookupByName("vm1").blockInfo("vda")[0])
    vol_xml = hv._call("b", lambda c: c.storageVolLookupByPath(created[0]).XMLDesc(0))
    vol_info = hv._call("b", lambda c: c.storageVolLookupByPath(created[0]).info())
    assert "<format type='qcow2'/>" in vol_xml and vol_info[1] == src_capacity
    with pytest.raises(HypervisorError, match="already exists"):
        hv.prepare_storage(spec)  # never overwrite a file evac did not create
    hv.cleanup_storage(spec, created)
    with pytest.raises(HypervisorError) as err:
        hv._call("b", lambda c: c.storageVolLookupByPath(created[0]))
    assert err.value.code == libvirt_errors.LibvirtCode.NO_STORAGE_VOL
    hv.cleanup_storage(spec, created)  # idempotent


def test_prepare_storage_without_pool_is_error_49(tmp_path: Path) -> None:
    hv = _hv({"a": _node(tmp_path, "a", domains=("vm1",), volumes=("vm1",)), "b": _node(tmp_path, "b", pool=False)})
    with pytest.raises(HypervisorError) as err:
        hv.prepare_storage(_spec(copy_storage=("vda",)))
    assert err.value.code == 49 and "/data/images" in err.value.message
    with pytest.raises(HypervisorError, match="no disk vdz"):
        hv.prepare_storage(_spec(copy_storage=("vdz",)))
    with pytest.raises(HypervisorError, match="network disk"):
        hv.prepare_storage(_spec(copy_storage=("vdb",)))


def test_the_hypervisor_reads_domain_xml_with_domain_xml_only() -> None:
    """One XML parser (executor.domain_xml): libvirt_hv has no ElementTree of its own."""
    import executor.libvirt_hv as lhv

    assert "xml.etree" not in Path(lhv.__file__).read_text()
