"""The memdirty test guest: built from source, and under the lab it runs with the size and dirty rate it
was given, and its heartbeat ticks."""

from __future__ import annotations

import shutil
import struct
import time
from pathlib import Path

import pytest

from tests.lab.harness import GUEST_MAGIC, Lab, build_guest

MULTIBOOT_MAGIC = 0x1BADB002


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc (make system-packages)")
def test_build_guest_makes_a_multiboot_elf32_and_reuses_it(tmp_path: Path) -> None:
    elf = build_guest(tmp_path)
    data = elf.read_bytes()
    assert elf == tmp_path / "guest" / "memdirty.elf"
    assert data[:4] == b"\x7fELF" and data[4] == 1  # ELFCLASS32: what QEMU's multiboot loader accepts
    # The multiboot header must sit 4-aligned in the first 8 KiB, with magic + flags + checksum == 0.
    header = next(off for off in range(0, min(len(data), 8192) - 12, 4)
                  if struct.unpack_from("<I", data, off)[0] == MULTIBOOT_MAGIC)
    magic, flags, checksum = struct.unpack_from("<III", data, header)
    assert (magic + flags + checksum) & 0xFFFFFFFF == 0
    mtime = elf.stat().st_mtime_ns
    assert build_guest(tmp_path) == elf and elf.stat().st_mtime_ns == mtime  # up to date: not rebuilt


@pytest.mark.lab
@pytest.mark.timeout(120)
def test_guest_runs_with_its_size_working_set_and_dirty_rate(lab: Lab) -> None:
    dom = lab.define_guest(lab.hosts[0], "sized", memory_mib=96, dirty_rate_mibs=8, wss_mib=2)
    lab.wait_ready(dom)
    status = lab.guest_status(dom)
    assert status.magic == GUEST_MAGIC and status.fill_done
    assert (status.wss_mib, status.rate_mibs) == (2, 8)
    assert 94 <= status.mem_mib <= 96  # the guest's own view of its RAM (multiboot map, minus the low hole)
    assert dom.info()[1] == 96 * 1024  # libvirt's view, KiB

    # 8 MiB/s over a 2 MiB working set: a full pass every ~0.25 s of guest time.
    assert lab.heartbeat_advances(dom, ticks=50)
    deadline = time.monotonic() + 20
    while lab.guest_status(dom).passes < status.passes + 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lab.guest_status(dom).passes >= status.passes + 2


@pytest.mark.lab
@pytest.mark.timeout(120)
def test_transient_idle_guest_ticks_and_is_gone_after_destroy(lab: Lab) -> None:
    conn = lab.connect(2)
    dom = lab.define_guest(2, "transient", memory_mib=64, persistent=False)
    lab.wait_ready(dom)
    assert not dom.isPersistent()
    assert lab.heartbeat_advances(dom)
    dom.destroy()
    assert "transient" not in [d.name() for d in conn.listAllDomains()]
