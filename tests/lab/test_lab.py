"""The lab itself, against real libvirtd daemons and QEMU guests: hosts, migrations with and without storage,
the storage facts the collector and executor rely on (NBD shared, shared dir unsafe in libvirt 9.0),
link shaping, daemon faults, and a teardown that leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import libvirt
import pytest

from tests.lab.harness import (
    DEFAULT_FLAGS,
    NBD_STORAGE_ID,
    SHARED_DIR_STORAGE_ID,
    Lab,
    LabError,
    LabHost,
    down_lab,
    netns_prefix,
)

pytestmark = [pytest.mark.lab, pytest.mark.timeout(240)]

MIB = 2**20


def _mbit_to_mibs(mbit: float) -> float:
    return mbit * 1e6 / 8 / MIB


@pytest.mark.lab
def test_each_host_answers_with_its_own_hostname_and_host_uuid(lab: Lab) -> None:
    seen_uuids = set()
    for host in lab.hosts:
        conn = lab.connect(host)
        assert conn.getHostname() == host.name
        uuid = ET.fromstring(conn.getCapabilities()).findtext("host/uuid")
        assert uuid == host.host_uuid
        seen_uuids.add(uuid)
        assert {p.name() for p in conn.listAllStoragePools()} >= {"default", "shared"}
    assert len(seen_uuids) == len(lab.hosts) == 3
    assert [h.address for h in lab.hosts] == ["10.77.0.11", "10.77.0.12", "10.77.0.13"]


@pytest.mark.lab
def test_capped_live_migration_keeps_guest_running_and_respects_the_cap(lab: Lab) -> None:
    h1, h2 = lab.hosts[0], lab.hosts[1]
    cap_mibs = 32
    dom = lab.define_guest(h1, "capped", memory_mib=128, dirty_rate_mibs=2, wss_mib=16)
    lab.wait_ready(dom)
    beat_before, t0 = lab.heartbeat(dom), time.monotonic()

    moved, result = lab.migrate(dom, h2, params={libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: cap_mibs})

    beats, elapsed_s = lab.heartbeat(moved) - beat_before, time.monotonic() - t0
    assert moved.isActive()
    # Live: the guest ticked (100 Hz) through the migration, not only after it. A guest paused for the
    # copy would show ~0 ticks over these ~4 s; some slack for ticks a loaded TCG host drops.
    assert beats >= 0.5 * 100 * elapsed_s, (beats, elapsed_s)
    assert lab.heartbeat_advances(moved)
    assert not lab.connect(h1).lookupByName("capped").isActive()  # persistent: left defined, shut off
    # 128 MiB of incompressible RAM went through: the cap must hold, and must have been the limit.
    assert result.data_processed_mib >= 120
    assert result.rate_mibs <= cap_mibs * 1.1, result.stats
    assert result.rate_mibs >= cap_mibs * 0.5, result.stats


@pytest.mark.lab
def test_bandwidth_cap_holds_on_the_wire(lab: Lab) -> None:
    """The cap seen where an operator's switch would see it: bytes leaving the source's NIC, sampled by
    the kernel while the migration runs, over windows of at least 2 s (the last window, where QEMU
    sends the paused guest's remainder unthrottled, left out)."""
    h1, h2 = lab.hosts[0], lab.hosts[1]
    cap_mibs = 16
    dom = lab.define_guest(h1, "wire", memory_mib=128, dirty_rate_mibs=2, wss_mib=16)
    lab.wait_ready(dom)
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.monotonic(), lab.wire_bytes(h1)[0]))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        lab.migrate(dom, h2, params={libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: cap_mibs})
    finally:
        done.set()
        sampler.join()
    sent_mib = (samples[-1][1] - samples[0][1]) / 2**20
    assert sent_mib >= 120, sent_mib  # 128 MiB of incompressible RAM crossed the lab network
    rates, i = [], 0
    for j in range(1, len(samples) - 1):
        if samples[j][0] - samples[i][0] >= 2.0:
            rates.append((samples[j][1] - samples[i][1]) / 2**20 / (samples[j][0] - samples[i][0]))
            i = j
    assert len(rates) >= 2, samples
    # TCP/IP headers add ~3 % on the wire to what QEMU counts against the cap
    assert max(rates) <= cap_mibs * 1.10, rates
    assert max(rates) >= cap_mibs * 0.5, rates  # the cap, not something else, was the limit


@pytest.mark.lab
def test_copy_storage_migration_of_a_local_qcow2_keeps_its_data(lab: Lab) -> None:
    h1, h2 = lab.hosts[0], lab.hosts[1]
    disk = lab.create_local_disk(h1, "cs-data.qcow2", capacity_mib=64)
    assert disk.storage_id is None
    _qemu_io(disk.file, "write -P 0xa5 0 1M", "write -P 0x5a 40M 2M")
    dom = lab.define_guest(h1, "cs", memory_mib=64, dirty_rate_mibs=1, wss_mib=4, disks=[(disk, "vda")])
    lab.wait_ready(dom)

    with pytest.raises(libvirt.libvirtError) as refused:  # local disk without copy-storage: unsafe
        dom.migrateToURI3(h2.peer_uri, {}, DEFAULT_FLAGS)
    assert refused.value.get_error_code() == libvirt.VIR_ERR_MIGRATE_UNSAFE

    copy = lab.create_destination_volume(h2, disk)  # same name, format and capacity, as the executor does
    moved, result = lab.migrate(dom, h2, flags=DEFAULT_FLAGS | libvirt.VIR_MIGRATE_NON_SHARED_DISK,
                                params={libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: ["vda"]})

    assert lab.heartbeat_advances(moved)
    assert result.source_stats["disk_total"] == result.source_stats["disk_processed"] == 64 * MIB
    moved.destroy()  # QEMU on h2 closes the copy: now read it back
    _qemu_io(copy.file, "read -P 0xa5 0 1M", "read -P 0x5a 40M 2M", "read -P 0 1M 39M")
    compare = subprocess.run(["qemu-img", "compare", "-q", "-f", "qcow2", "-F", "qcow2", str(disk.file),
                              str(copy.file)], capture_output=True, text=True)
    assert compare.returncode == 0, compare.stdout + compare.stderr


def _qemu_io(image: Path, *commands: str) -> None:
    argv = ["qemu-io", "-f", "qcow2"]
    for command in commands:
        argv += ["-c", command]
    proc = subprocess.run([*argv, str(image)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Pattern verification failed" not in proc.stdout, proc.stdout
    assert "failed" not in proc.stdout.lower() and "error" not in proc.stdout.lower(), proc.stdout


@pytest.mark.lab
def test_nbd_shared_disk_migrates_without_unsafe(lab: Lab) -> None:
    h1, h3 = lab.hosts[0], lab.hosts[2]
    disk = lab.create_shared_disk("nbd0", capacity_mib=64)
    assert disk.storage_id == NBD_STORAGE_ID
    dom = lab.define_guest(h1, "on-nbd", memory_mib=64, dirty_rate_mibs=1, wss_mib=4, disks=[(disk, "vda")])
    lab.wait_ready(dom)

    moved, result = lab.migrate(dom, h3)  # no UNSAFE, no copy-storage

    assert lab.heartbeat_advances(moved)
    assert result.source_stats["disk_total"] == 0  # nothing copied: the disk is shared
    assert "protocol='nbd'" in moved.XMLDesc(0).replace('"', "'")


@pytest.mark.lab
def test_shared_dir_disk_needs_unsafe_in_libvirt_9(lab: Lab) -> None:
    """Fact the collector and executor rely on: a plain directory every host mounts is not shared storage
    to libvirt 9.0. Without VIR_MIGRATE_UNSAFE the migration fails with error 81 and the guest stays."""
    h1, h2 = lab.hosts[0], lab.hosts[1]
    disk = lab.create_shared_dir_disk("sd0.qcow2", capacity_mib=64)
    assert disk.storage_id == SHARED_DIR_STORAGE_ID
    dom = lab.define_guest(h1, "on-dir", memory_mib=64, dirty_rate_mibs=1, wss_mib=4, disks=[(disk, "vda")])
    lab.wait_ready(dom)

    with pytest.raises(libvirt.libvirtError) as refused:
        lab.migrate(dom, h2)
    assert refused.value.get_error_code() == libvirt.VIR_ERR_MIGRATE_UNSAFE == 81
    assert dom.isActive() and lab.heartbeat_advances(dom)
    assert lab.connect(h2).listAllDomains() == []

    moved, _ = lab.migrate(dom, h2, flags=DEFAULT_FLAGS | libvirt.VIR_MIGRATE_UNSAFE)  # only when asked
    assert lab.heartbeat_advances(moved)


@pytest.mark.lab
def test_link_shaping_slows_an_uncapped_migration(lab: Lab) -> None:
    h1, h2 = lab.hosts[0], lab.hosts[1]
    shaped_mbit = 100  # 11.9 MiB/s: 64 MiB take >= 5.4 s, against well under 1 s on a bare veth
    dom = lab.define_guest(h1, "shaped", memory_mib=64, dirty_rate_mibs=0, wss_mib=4, persistent=False)
    lab.wait_ready(dom)
    dom, fast = lab.migrate(dom, h2)

    lab.shape(h2, mbit=shaped_mbit)  # h2's NIC is now a 100 Mbit/s one, both ways
    dom, slow = lab.migrate(dom, h1)

    assert lab.heartbeat_advances(dom)
    assert slow.data_processed_mib >= 60
    assert slow.rate_mibs <= _mbit_to_mibs(shaped_mbit) * 1.15, slow.stats
    assert slow.time_elapsed_s > fast.time_elapsed_s + 2, (fast.stats, slow.stats)
    lab.unshape(h2)
    # The control connection may also go over the unix socket: the data still takes the (now bare) link.
    _, again = lab.migrate(dom, h2, dest_uri=h2.uri)
    assert again.rate_mibs > _mbit_to_mibs(shaped_mbit) * 1.5, again.stats


@pytest.mark.lab
def test_killed_daemon_restarts_and_finds_its_running_guest(lab: Lab) -> None:
    h3 = lab.hosts[2]
    dom = lab.define_guest(h3, "survivor", memory_mib=64, wss_mib=4)
    lab.wait_ready(dom)

    lab.kill_daemon(h3)
    assert not lab.daemon_alive(h3)
    with pytest.raises(LabError, match="cannot connect to h3"):
        lab.connect(h3)

    lab.restart_daemon(h3)
    again = lab.connect(h3).lookupByName("survivor")
    assert again.isActive()
    assert lab.heartbeat_advances(again)


@pytest.mark.lab
def test_down_leaves_no_process_namespace_or_mount_even_half_started(lab: Lab) -> None:
    """A second, small lab (the session lab keeps running beside it: namespaces are per lab directory)."""
    lab_dir = Path(f"/tmp/evac-lab-pytest-down-{os.getpid()}")
    other = Lab.up(hosts=2, lab_dir=lab_dir)
    try:
        with pytest.raises(LabError, match="already up"):
            Lab.up(hosts=2, lab_dir=lab_dir)
        dom = other.define_guest(1, "leftover", memory_mib=64, persistent=False)
        other.create_shared_disk("leftover-disk", capacity_mib=16)
        pids = [p for h in other.hosts
                for p in (other.daemon_pid(h), _pid(h.dir / "holder.pid"), _pid(h.dir / "reaper.pid"))]
        pids += [dom.ID() and _pid(other.hosts[0].dir / "run/libvirt/qemu/leftover.pid"),
                 _pid(lab_dir / "nbd/leftover-disk.pid")]
        assert all(isinstance(p, int) and _running(p) for p in pids), pids
        # Now make it look crashed half-way: a daemon gone, the state file lost.
        other.kill_daemon(2)
        (lab_dir / "state.json").unlink()

        down_lab(lab_dir)

        assert not [p for p in pids if isinstance(p, int) and _running(p)]
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        assert netns_prefix(lab_dir) not in netns
        assert str(lab_dir) not in Path("/proc/self/mountinfo").read_text()
        assert not lab_dir.exists()
    finally:
        if lab_dir.exists():
            down_lab(lab_dir)
    # The session lab is untouched.
    assert all(lab.daemon_alive(h) for h in lab.hosts)


@pytest.mark.lab
def test_a_lab_that_fails_half_way_up_is_cleaned_up(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    lab_dir = Path(f"/tmp/evac-lab-pytest-half-{os.getpid()}")
    real_spawn = Lab._spawn_daemon

    def spawn_then_fail(self: Lab, host: LabHost) -> None:
        real_spawn(self, host)  # h1 runs, h2's daemon is spawned: then the start-up breaks
        if host.index == 2:
            raise LabError("injected failure")

    monkeypatch.setattr(Lab, "_spawn_daemon", spawn_then_fail)
    with pytest.raises(LabError, match="injected failure"):
        Lab.up(hosts=3, lab_dir=lab_dir)

    assert not lab_dir.exists()
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert netns_prefix(lab_dir) not in netns
    assert all(lab.daemon_alive(h) for h in lab.hosts)  # the session lab is untouched


@pytest.mark.lab
def test_lab_factory_gives_an_independent_lab_of_any_size(lab: Lab, lab_factory: Callable[[int], Lab]) -> None:
    other = lab_factory(4)
    assert [other.connect(h).getHostname() for h in other.hosts] == ["h1", "h2", "h3", "h4"]
    assert other.prefix != lab.prefix and other.lab_dir != lab.lab_dir
    dom = other.define_guest(4, "same-name", memory_mib=64, persistent=False)
    twin = lab.define_guest(1, "same-name", memory_mib=64, persistent=False)  # separate daemons: no clash
    assert other.heartbeat_advances(dom) and lab.heartbeat_advances(twin)


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
