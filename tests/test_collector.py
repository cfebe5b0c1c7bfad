"""The collector against libvirt's test driver: one XML file per fake host (tests/data/xml/testdrv-*.xml)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from executor.cli.main import main
from executor.collector import (
    CollectReporter,
    HostFailure,
    collect,
)
from executor.site import load_site_config
from planner.errors import UsageError
from planner.model import HostState, VMState

XML = Path(__file__).parent / "data" / "xml"
H1, H2, H3 = (f"test://{XML}/testdrv-h{i}.xml" for i in (1, 2, 3))
NFS = "nfs:nas.example.net:/export/vms"  # the two hosts name the pool differently: id from its source


@pytest.fixture
def hosts_file(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump({
        "hosts": {
            "h1": {"uri": H1, "reserved_memory_mib": 4096, "labels": {"rack": "r1"}, "migration_address": "10.0.0.1"},
            "h2": {"uri": H2, "nic_gbps": 10, "state": "maintenance"},
            "h3": {"uri": H3, "switch": "tor-b"},
        },
        "shared_storage": {
            "scratch-nbd": {"servers": ["10.0.9.2"]},
            "lab-shared": {"paths": ["/var/lib/libvirt/shared"]},
        },
    }))
    return path


@pytest.fixture
def topology_file(tmp_path: Path) -> Path:
    path = tmp_path / "topology.json"
    path.write_text(json.dumps({"hosts": {"h1": {"switch": "tor-a"}, "h2": {"switch": "tor-a"}},
                                "links": [{"a": "tor-a", "b": "tor-b", "gbps": 100}]}))
    return path


def test_two_hosts_with_hosts_file(hosts_file: Path, topology_file: Path) -> None:
    result = collect([H1, H2], timeout_s=5, hosts_file=hosts_file, topology=topology_file)
    inv = result.inventory
    assert result.failures == () and result.exit_code == 0
    h1, h2 = inv.host["h1"], inv.host["h2"]
    assert (h1.cpus, h1.memory_mib, h1.reserved_memory_mib) == (16, 65536, 4096)
    assert (h2.cpus, h2.memory_mib) == (8, 32768)
    assert h1.nic_gbps == 25.0  # from the node device eno1
    assert h2.nic_gbps == 10.0  # from the hosts file (h2 has no NIC node device)
    assert (h1.switch, h2.switch) == ("tor-a", "tor-a")
    assert h1.migration_address == "10.0.0.1" and h1.labels == {"rack": "r1"}
    assert h2.state is HostState.MAINTENANCE
    assert h1.storage == {NFS, "scratch-nbd"} and h2.storage == {NFS, "scratch-nbd"}
    assert h1.networks == {"default", "br-prod"}
    # The test driver makes every pool 100 GiB; h1's volumes allocate 12 + 30 GiB of it.
    assert (h1.local_disk_free_gib, h2.local_disk_free_gib) == (58.0, 100.0)
    assert [(lk.a, lk.b, lk.gbps) for lk in inv.links] == [("tor-a", "tor-b", 100.0)]

    web = inv.vm["web-01"]
    assert (web.host, web.vcpus, web.memory_mib, web.state) == ("h1", 4, 8192, VMState.RUNNING)
    assert web.uuid == "4b1f0c9e-2f0e-4c36-9d55-0f6a3c2a9e11" and web.persistent
    assert web.networks == {"default", "br-prod"}
    # The test driver cannot expand CPU models: the model is kept by name with its listed features.
    assert web.cpu_model == "Icelake-Server" and web.cpu_features == {"pku"}
    disks = {d.target: d for d in web.disks}
    assert set(disks) == {"vda", "vdb", "vdc"}  # the cdrom is not a disk a migration copies
    assert (disks["vda"].storage, disks["vda"].capacity_gib, disks["vda"].allocation_gib) == (NFS, 20, 6)
    assert (disks["vdb"].storage, disks["vdb"].capacity_gib, disks["vdb"].allocation_gib) == (None, 40, 12)
    assert disks["vdb"].format == "qcow2" and disks["vdb"].cache == "writeback"
    assert disks["vdc"].storage == "scratch-nbd" and disks["vdc"].source == "nbd://10.0.9.2:10810/web-01-scratch"

    db = inv.vm["db-01"]
    assert db.state is VMState.SHUTOFF and db.disks[0].storage is None
    assert (db.disks[0].capacity_gib, db.disks[0].allocation_gib) == (100, 30)
    app = inv.vm["app-01"]
    assert app.state is VMState.PAUSED and app.host == "h2"
    assert app.disks[0].storage == NFS  # mounted at /srv/nfs-vms on h2, same export as h1's /mnt/nfs


def test_declared_shared_path_and_duplicate_definition(hosts_file: Path) -> None:
    result = collect([H1, H3], timeout_s=5, hosts_file=hosts_file)
    inv = result.inventory
    assert inv.host["h3"].storage == {"lab-shared", "scratch-nbd"}
    assert inv.host["h3"].local_disk_free_gib == 0  # its only pool is shared
    cache = inv.vm["cache-01"]
    assert cache.disks[0].storage == "lab-shared" and cache.disks[0].capacity_gib == 10
    # web-01 runs on h1 and has a shut-off leftover definition on h3: the running copy is the VM.
    assert inv.vm["web-01"].host == "h1" and inv.vm["web-01"].state is VMState.RUNNING
    assert [v.name for v in inv.vms].count("web-01") == 1
    text = "\n".join(str(w) for w in result.warnings)
    assert "defined on" in text and "ignoring the one on h3" in text
    assert "no active local storage pool" in text


def test_without_hosts_file_names_come_from_libvirt_and_are_made_unique() -> None:
    result = collect([H1, H2], timeout_s=5)
    names = [h.name for h in result.inventory.hosts]
    assert len(set(names)) == 2  # the test driver gives every file the machine's hostname
    assert any("not unique" in w.message for w in result.warnings)
    assert any("network storage seen only in disks" in w.message for w in result.warnings)
    nbd = "nbd:10.0.9.2"
    assert nbd in result.inventory.host[result.inventory.vm["web-01"].host].storage
    # A host with no NIC speed anywhere: 1 Gbit/s and a warning naming it.
    h2 = next(h for h in result.inventory.hosts if h.uri == H2)
    assert h2.nic_gbps == 1.0
    assert any(w.where == h2.name and "NIC speed unknown" in w.message for w in result.warnings)


def test_a_driver_without_domain_statistics_leaves_use_absent_and_says_why() -> None:
    """libvirt's test driver answers domainListGetStats with the state group only: no cpu.time, no balloon."""
    result = collect([H1], timeout_s=5)
    web, db = result.inventory.vm["web-01"], result.inventory.vm["db-01"]
    assert (web.cpu_used, web.memory_used_mib, db.cpu_used, db.memory_used_mib) == (None, None, None, None)
    [w] = [w for w in result.warnings if "usage not measured" in w.message]
    assert "cpu_used absent for 2 of 2 VMs (no cpu.time in the domain statistics: 1; shut off: 1)" in w.message
    assert "memory_used_mib absent for 2 of 2 VMs (no balloon statistics: 1; shut off: 1)" in w.message
    assert result.memory_sources == {H1: {}}


def test_dirty_rate_unsupported_is_a_warning_not_a_failure() -> None:
    result = collect([H1], timeout_s=5, dirty_rate=True)
    assert result.failures == ()
    assert result.inventory.vm["web-01"].dirty_rate_mibs == 0
    assert any("dirty rate not measured" in w.message for w in result.warnings)




class Recorder(CollectReporter):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def host_started(self, uri: str) -> None:
        self.events.append(("started", uri))

    def host_done(self, uri: str, name: str, vms: int, seconds: float) -> None:
        self.events.append(("done", uri))

    def host_failed(self, failure: HostFailure, seconds: float) -> None:
        self.events.append(("failed", failure.uri))


def test_failing_hosts_are_reported_by_name_and_reason(tmp_path: Path, closed_port: int, silent_port: int) -> None:
    missing_socket = f"qemu+unix:///system?socket={tmp_path}/nope.sock"
    closed = f"qemu+tcp://127.0.0.1:{closed_port}/system"
    silent = f"qemu+tcp://127.0.0.1:{silent_port}/system"
    rec = Recorder()
    result = collect([H1, missing_socket, closed, silent], timeout_s=1, allow_insecure_transport=True,
                     reporter=rec)
    assert result.exit_code == 1
    by_uri = {f.uri: f for f in result.failures}
    assert by_uri[missing_socket].code == "unreachable" and "No such file" in by_uri[missing_socket].reason
    assert by_uri[closed].code == "unreachable" and "refused" in by_uri[closed].reason.lower()
    assert by_uri[closed].name == "127.0.0.1"
    assert by_uri[silent].code == "timeout"
    missing = {m.uri: m for m in result.inventory.missing_hosts}
    assert set(missing) == {missing_socket, closed, silent}
    assert missing[closed].reason.startswith("unreachable: ")
    assert len(result.inventory.hosts) == 1
    assert sorted(e for e, _ in rec.events) == ["done", "failed", "failed", "failed", "started", "started",
                                                "started", "started"]


def test_no_host_reachable_is_exit_3(tmp_path: Path) -> None:
    result = collect([f"qemu+unix:///system?socket={tmp_path}/nope.sock"], timeout_s=1)
    assert result.exit_code == 3 and not result.inventory.hosts


def test_bad_uris_are_refused_before_connecting() -> None:
    with pytest.raises(UsageError) as info:
        collect([H1, "qemu+ext:///system", "qemu+tcp://h/system"], timeout_s=1)
    assert "qemu+ext:///system" in str(info.value) and "qemu+tcp://h/system" in str(info.value)


def test_bad_site_files_name_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "hosts.yaml"
    bad.write_text(yaml.safe_dump({"hosts": {"h1": {"reserved_memory_mib": -1, "state": "gone", "colour": "red"}},
                                   "shared_storage": {"x": {"paths": ["relative"]}, "y": {}}, "extra": 1}))
    with pytest.raises(UsageError) as info:
        load_site_config(bad)
    text = str(info.value)
    for needle in ("reserved_memory_mib", "state", "colour", "relative", "needs `paths` or `servers`", "extra"):
        assert needle in text
    broken = tmp_path / "t.json"
    broken.write_text("{not json")
    with pytest.raises(UsageError, match="line 1 column 2: malformed JSON"):
        load_site_config(None, broken)


def test_cli_writes_an_inventory_that_loads(tmp_path: Path, hosts_file: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "inventory.json"
    code = main(["collect", H1, H2, "--hosts-file", str(hosts_file), "--timeout", "5", "-o", str(out)])
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["version"] == 1 and {h["name"] for h in doc["hosts"]} == {"h1", "h2"}
    assert {v["name"] for v in doc["vms"]} == {"web-01", "db-01", "app-01"}
    from planner.inventory import load_inventory

    loaded = load_inventory(out).inventory
    assert loaded.to_dict() == doc  # what the planner reads is exactly what the collector saw


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "inv.json"
    dead = f"qemu+unix:///system?socket={tmp_path}/nope.sock"
    assert main(["collect", H1, dead, "-o", str(out)]) == 1
    assert json.loads(out.read_text())["missing_hosts"][0]["uri"] == dead
    assert main(["collect", dead, "-o", str(tmp_path / "none.json")]) == 3
    assert not (tmp_path / "none.json").exists()
    assert main(["collect", "qemu+ext:///system", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "`ext` transport" in err and "Traceback" not in err
    for bad in ("-1", "nan", "601", "two"):
        assert main(["collect", H1, "--sample-s", bad, "-o", str(tmp_path / "s.json")]) == 2
        assert "--sample-s" in capsys.readouterr().err and not (tmp_path / "s.json").exists()
    assert main(["collect", H1, "--virt-type", "xen", "-o", str(tmp_path / "xen.json")]) == 2
    err = capsys.readouterr().err
    assert "--virt-type" in err and "kvm or qemu" in err and not (tmp_path / "xen.json").exists()



def test_a_host_that_stalls_after_connecting_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    import executor.collector as collector

    real = collector.read_host
    release = __import__("threading").Event()

    def stalling(uri: str, *args: object, **kwargs: object) -> collector.HostSnapshot:
        if uri == H2:
            release.wait(10)  # a daemon that accepted the connection and never answers
        return real(uri, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(collector, "read_host", stalling)
    try:
        result = collect([H1, H2], timeout_s=0.2, read_timeout_s=0.3)
    finally:
        release.set()
    assert [h.uri for h in result.inventory.hosts] == [H1]
    (failure,) = result.failures
    assert failure.uri == H2 and failure.code == "timeout" and "not read within" in failure.reason
    assert result.host_seconds[H2] < 3
