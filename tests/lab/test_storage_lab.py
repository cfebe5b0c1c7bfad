"""The destination's storage fills up during copy-storage, on the real lab.

A guest on h1 has a local qcow2 disk holding 24 MiB of random data; the plan (made while h2 had
room) copies it to h2. Before the run, h2's pool `default` is replaced by an 8 MiB tmpfs in h2's
mount namespace, so the copy fails part-way with ENOSPC. Expected: the migration fails cleanly and
at once (libvirt error 9 "No space left on device", not retried), the guest keeps running on h1 with
its disk data intact, the partial volume evac created on h2 is removed (libvirt itself leaves it,
filling the pool: measured), the report carries libvirt's error, exit 1.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from executor.journal import Journal
from tests.lab import evac_scenario as es
from tests.lab.fault_helpers import assert_each_runs_once, evac, in_host, small_pool, write_run_files
from tests.lab.harness import Lab

pytestmark = [pytest.mark.lab, pytest.mark.slow]

GUEST = es.GuestSpec("sf-a", 64, 1, 8, True, "h2", local_disk_mib=64)
POOL_MIB = 8  # < the 24 MiB of data the copy must write


class _VolumeWatch:
    """Largest size the volume reached on the host while the run went on (the partial copy)."""

    def __init__(self, lab: Lab, path: str) -> None:
        self.lab, self.path, self.max_bytes = lab, path, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stop.wait(0.05):
            out = in_host(self.lab.hosts[1], "stat", "-c", "%s", self.path).stdout.strip()
            if out.isdigit():
                self.max_bytes = max(self.max_bytes, int(out))

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def test_destination_storage_full_during_copy_storage(lab: Lab, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    sc = es.build(lab, (GUEST,))
    assert sc.plan.migrations[0].copy_storage == ("vda",)
    inventory, plan = write_run_files(sc, tmp_path)
    journal = tmp_path / "run.db"
    with small_pool(lab, lab.hosts[1], POOL_MIB) as pool_path:
        volume = f"{pool_path}/{sc.disks[GUEST.name].name}"
        watch = _VolumeWatch(lab, volume)
        t0 = time.monotonic()
        code, out = evac(capsys, "run", str(plan), "-i", str(inventory), "--journal", str(journal))
        took = time.monotonic() - t0
        watch.close()
        assert code == 1, out
        assert "No space left on device" in out and "libvirt error 9" in out, out
        # The copy really started (the volume grew on h2), and evac removed what it had created.
        assert watch.max_bytes > 1 << 20, watch.max_bytes
        assert in_host(lab.hosts[1], "ls", "-A", str(pool_path)).stdout.strip() == ""
        pool = lab.connect(2).storagePoolLookupByName("default")
        pool.refresh(0)
        assert pool.listAllVolumes() == []
    (record,) = Journal.read(journal).records()
    assert record.state.value == "failed" and record.attempts == 1, record  # not retried: the disk stays full
    assert "No space left on device" in record.error
    assert_each_runs_once(lab, sc.uuids, {GUEST.name: "h1"})
    disk = sc.disks[GUEST.name]
    assert es.read_disk_digest(disk.file, disk.format, es.DISK_DATA_MIB) == sc.disk_digest[GUEST.name]
    print(f"\nstorage full during copy-storage: run {took:.1f} s, partial volume reached "
          f"{watch.max_bytes / 2**20:.1f} MiB before removal")
