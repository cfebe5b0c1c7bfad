"""The memdirty test guest: build it from tests/lab/guest, describe a domain running it, read its status.

memdirty.c is a multiboot kernel that fills its RAM with incompressible data, then rewrites a working set
at a chosen rate; its status block at guest-physical 0x7000 (read through the QEMU monitor) holds a
heartbeat that proves the guest runs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.lab.procs import run

GUEST_SOURCE_DIR = Path(__file__).resolve().parent / "guest"
DEFAULT_BUILD_DIR = Path(__file__).resolve().parents[2] / "build"
GUEST_MAGIC = 0x4D454D44  # "MEMD", memdirty's status block signature
STATUS_COMMAND = "xp /8wx 0x7000"  # HMP: the 8 status words
_STATUS_FIELDS = ("magic", "heartbeat", "fill_done", "passes", "unused", "wss_mib", "rate_mibs", "mem_mib")


def build_guest(build_dir: Path = DEFAULT_BUILD_DIR) -> Path:
    """Builds memdirty.elf from tests/lab/guest (gcc, ld, objcopy) unless it is up to date; returns its path."""
    out_dir = build_dir / "guest"
    elf = out_dir / "memdirty.elf"
    sources = [GUEST_SOURCE_DIR / "memdirty.c", GUEST_SOURCE_DIR / "link.ld"]
    if elf.exists() and all(elf.stat().st_mtime >= s.stat().st_mtime for s in sources):
        return elf
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".build-{os.getpid()}"  # several engineers may build at once: build aside, rename
    tmp.mkdir(exist_ok=True)
    try:
        obj, elf64, elf32 = tmp / "memdirty.o", tmp / "memdirty64.elf", tmp / "memdirty.elf"
        # Freestanding 64-bit code, no SSE/red zone (interrupt handlers), linked at 1 MiB; QEMU's
        # multiboot loader only takes 32-bit ELF containers, hence the objcopy at the end.
        run("gcc", "-m64", "-mno-red-zone", "-mno-sse", "-mgeneral-regs-only", "-ffreestanding", "-fno-pic",
            "-fno-pie", "-fno-stack-protector", "-mcmodel=small", "-nostdlib", "-O2",
            "-c", str(sources[0]), "-o", str(obj))
        run("ld", "-m", "elf_x86_64", "--no-warn-rwx-segments", "-z", "max-page-size=0x1000",
            "-T", str(sources[1]), "-o", str(elf64), str(obj))
        run("objcopy", "-O", "elf32-i386", str(elf64), str(elf32))
        os.replace(elf32, elf)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return elf


@dataclass(frozen=True, slots=True)
class GuestStatus:
    """memdirty's status block at guest-physical 0x7000."""

    magic: int
    heartbeat: int  # 10 ms PIT ticks since the fill finished
    fill_done: bool
    passes: int  # completed passes over the working set
    wss_mib: int
    rate_mibs: int
    mem_mib: int  # as the guest sees it (multiboot memory map, rounded)

    @property
    def ready(self) -> bool:
        return self.magic == GUEST_MAGIC and self.fill_done and self.heartbeat > 0


def guest_xml(name: str, memory_mib: int, dirty_rate_mibs: int, wss_mib: int, kernel: Path,
              disks_xml: Sequence[str] = (), fill: bool = True, vcpus: int = 1) -> str:
    """A memdirty domain under TCG (`type='qemu'`: guest code is ~100x slower under this nested KVM)."""
    cmdline = f"wss={wss_mib} rate={dirty_rate_mibs} fill={int(fill)}"
    devices = "\n    ".join(disks_xml)
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>{vcpus}</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{kernel}</kernel><cmdline>{cmdline}</cmdline></os>
  <features><acpi/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
    {devices}
    <memballoon model='none'/>
  </devices>
</domain>"""


def parse_status(monitor_output: str) -> GuestStatus | None:
    """The status block from the HMP answer to STATUS_COMMAND; None if it is not 8 words."""
    words = [int(t, 16) for line in monitor_output.splitlines() if ":" in line for t in line.split(":", 1)[1].split()]
    if len(words) != len(_STATUS_FIELDS):
        return None
    v = dict(zip(_STATUS_FIELDS, words, strict=True))
    return GuestStatus(magic=v["magic"], heartbeat=v["heartbeat"], fill_done=bool(v["fill_done"]),
                       passes=v["passes"], wss_mib=v["wss_mib"], rate_mibs=v["rate_mibs"], mem_mib=v["mem_mib"])
