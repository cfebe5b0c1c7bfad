"""The real libvirt lab: N libvirt "hosts" on this one machine, for tests and benchmarks.

Each lab host `h<i>` is one `libvirtd` (root, `qemu:///system`) in namespaces of its own:

* network: `eth0` = 10.77.0.(10+i)/24, a veth plugged into a bridge in the lab's switch namespace;
* mount: its own /etc/libvirt, /run, /etc/hosts|passwd|group, and an overlay over /var (so
  /var/lib/libvirt/images, the `default` dir pool, is private to the host);
* UTS: hostname `h<i>`; libvirtd.conf gives it its own `host_uuid`.

A storage namespace (10.77.0.2) on the same bridge runs one `qemu-nbd` per shared disk (storage id
`lab-nbd`). The directory `$LAB/shared` is bind-mounted at /var/lib/libvirt/shared on every host and
defined there as the dir pool `shared` (storage id `lab-shared`). Guests are the `memdirty` test
kernel (tests/lab/guest/memdirty.c) under TCG: they fill their RAM with incompressible data, dirty a
working set at a chosen rate and count a heartbeat at guest-physical 0x7000.

Using it from a test (the session fixture `lab` in tests/conftest.py starts 3 hosts; after every
test that uses it, `lab.reset()` destroys all domains, deletes volumes, removes shaping and restarts
killed daemons)::

    import libvirt, pytest
    from tests.lab.harness import Lab

    @pytest.mark.lab
    def test_move(lab: Lab) -> None:
        h1, h2 = lab.hosts[0], lab.hosts[1]
        dom = lab.define_guest(h1, "vm1", memory_mib=64, dirty_rate_mibs=2, wss_mib=8)
        lab.wait_ready(dom)
        moved, result = lab.migrate(dom, h2, params={libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 32})
        assert lab.heartbeat_advances(moved)

API summary (hosts may be given as a `LabHost` or its 1-based index everywhere):

* `Lab.up(hosts=3, lab_dir=None)`, `Lab.attach(lab_dir=None)`, `lab.down() -> seconds`;
  `down_lab(lab_dir)` also cleans a half-started or crashed lab. `lab_dir` defaults to env LAB or
  /tmp/evac-lab.
* `lab.hosts: list[LabHost]`; `LabHost(index, name, uri, peer_uri, address, host_uuid, pool_dir, ...)`:
  `uri` (unix socket) is for this process; `peer_uri` (tcp, no auth) is for another lab host. Every lab
  host sees /tmp, so `uri` also works as the p2p destination URI (migration data still crosses the lab
  network: qemu.conf sets migration_host to the host's address), i.e. an inventory may give `uri` only.
* In an inventory, lab hosts offer storage `lab-nbd` (network disks served by 10.77.0.2) and
  `lab-shared` (files under /var/lib/libvirt/shared); /var/lib/libvirt/images is local (storage null).
  Lab links are veths (unlimited: one TCG migration moves ~170 MiB/s) unless `shape()`d; a shaped link
  gives one migration ~75-90 % of its line rate (TCP over tbf: 1 Gbit/s -> ~88 MiB/s of 119).
* `lab.wire_bytes(host)`: bytes sent/received on the host's NIC, to observe caps on the wire.
* `lab.hosts_file`: a ready `evac collect --hosts-file` for the lab (declares `lab-nbd`).
* `with Lab.up(hosts=2) as lab:` stops the lab on exit (scripts, benchmarks).
* `lab.connect(host) -> virConnect` (cached, reopened after a daemon restart).
* `lab.define_guest(host, name, memory_mib, dirty_rate_mibs, wss_mib, persistent=True, disks=(),
  start=True) -> virDomain`; `lab.wait_ready(dom)`, `lab.guest_status(dom) -> GuestStatus`,
  `lab.heartbeat(dom)`, `lab.heartbeat_advances(dom)`.
* Disks (`LabDisk`, attach with `disks=[(disk, "vda")]`): `lab.create_local_disk(host, name,
  capacity_mib)` (qcow2 in pool `default`; `disk.file` is its path seen from this process, for
  qemu-io / qemu-img), `lab.create_destination_volume(host, disk)` (same name, format, capacity on
  another host, for copy-storage), `lab.create_shared_disk(name, capacity_mib)` (NBD export, shared
  by nature), `lab.create_shared_dir_disk(name, capacity_mib)` (file in pool `shared`: libvirt 9.0
  does NOT consider it shared, migration fails with error 81 unless VIR_MIGRATE_UNSAFE).
* `lab.migrate(dom, dst, flags=LIVE|PEER2PEER, params=None, dest_uri=None) -> (virDomain on dst,
  MigrationResult)`: `.seconds` (wall), `.time_elapsed_s`, `.data_processed_mib`, `.rate_mibs`,
  `.downtime_ms`, raw `.stats` (destination) and `.source_stats` (disk_* of copy-storage).
* Faults and links: `lab.kill_daemon(host)`, `lab.restart_daemon(host)`, `lab.daemon_alive(host)`,
  `lab.shape(host, mbit=... | gbps=...)` (tbf both directions on the host's link), `lab.unshape(host)`.
* Reset: `lab.destroy_all_domains()`, `lab.reset()`.

Figures and pitfalls behind the choices here: /work/shared/reference/NOTES.md §1. One correction
measured here: the "fixed cost ~1.5-2 s per migration" there was mostly this machine's PID 1 reaping
QEMU zombies lazily; libvirtd runs under subreaper.py, and wall - job time is ~0.2 s (destroy 0.2 s).

Processes per host: a namespace holder (`sleep infinity` in the mount/UTS namespaces, so a killed
libvirtd restarts into the same mounts), subreaper.py and its child libvirtd, the QEMUs. All PIDs are
in files under $LAB; `down` stops them by PID, then anything left in the lab's network namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import libvirt
import libvirt_qemu

from tests.lab.hostconfig import (
    STORAGE_ADDRESS,
    LabHost,
    add_link,
    evac_hosts_file,
    holder_script,
    make_host,
    netns_prefix,
    write_host_files,
    write_lab_files,
)
from tests.lab.memdirty import (
    DEFAULT_BUILD_DIR,
    GUEST_MAGIC,
    STATUS_COMMAND,
    GuestStatus,
    build_guest,
    guest_xml,
    parse_status,
)
from tests.lab.procs import (
    LabError,
    LabUnavailable,
    alive,
    cmdline,
    mounts_under,
    netns_list,
    read_pid,
    run,
    signal_if,
    stop_all,
)

__all__ = [
    "DEFAULT_FLAGS", "GUEST_MAGIC", "NBD_STORAGE_ID", "SHARED_DIR_STORAGE_ID", "DiskKind", "GuestStatus", "Lab",
    "LabDisk", "LabError", "LabHost", "LabUnavailable", "MigrationResult", "build_guest", "down_lab",
    "environment_problems", "lab_dir_from_env", "lab_is_live", "netns_prefix",
]

SUBREAPER = Path(__file__).resolve().parent / "subreaper.py"
DEFAULT_LAB_DIR = Path("/tmp/evac-lab")
NBD_FIRST_PORT = 10809
NBD_STORAGE_ID = "lab-nbd"
SHARED_DIR_STORAGE_ID = "lab-shared"

REQUIRED_PROGRAMS = (
    "libvirtd", "qemu-system-x86_64", "qemu-img", "qemu-io", "qemu-nbd",
    "ip", "unshare", "nsenter", "tc", "sleep", "gcc", "ld", "objcopy",
)

DEFAULT_FLAGS = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER

# libvirt prints every error to stderr by default; the exceptions carry them anyway.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def lab_dir_from_env() -> Path:
    return Path(os.environ.get("LAB") or DEFAULT_LAB_DIR)


def environment_problems() -> list[str]:
    """Why this machine cannot run the lab; empty when it can."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the lab needs root (namespaces, mounts, libvirtd as qemu:///system)")
    missing = [p for p in REQUIRED_PROGRAMS if shutil.which(p) is None]
    if missing:
        problems.append(f"missing programs: {', '.join(missing)} (run `make system-packages`)")
    return problems


# ------------------------------------------------------------------------------------ disks, migrations


class DiskKind(StrEnum):
    LOCAL = "local"  # qcow2 in the host's private pool `default`: migrate with copy-storage
    NBD = "nbd"  # network disk served from the storage namespace: shared by nature
    SHARED_DIR = "shared-dir"  # file in the pool `shared` every host mounts: libvirt 9.0 calls it unsafe


@dataclass(frozen=True, slots=True)
class LabDisk:
    kind: DiskKind
    name: str  # volume name (LOCAL, SHARED_DIR) or NBD export name
    capacity_mib: int
    file: Path  # the image file, seen from this process
    source: str  # the path lab hosts see (file disks) or the export name (NBD)
    storage_id: str | None  # inventory `disks[].storage`: None for local disks
    format: str = "qcow2"  # format of `file`
    nbd_port: int = 0

    def xml(self, target: str) -> str:
        """The <disk> element attaching this disk as `target` (vda, vdb, ...) on virtio."""
        if self.kind is DiskKind.NBD:
            # qemu-nbd already interprets the qcow2: the guest sees a raw export.
            return (f"<disk type='network' device='disk'><driver name='qemu' type='raw' cache='none'/>"
                    f"<source protocol='nbd' name='{self.source}'><host name='{STORAGE_ADDRESS}' "
                    f"port='{self.nbd_port}'/></source><target dev='{target}' bus='virtio'/></disk>")
        return (f"<disk type='file' device='disk'><driver name='qemu' type='{self.format}' cache='none'/>"
                f"<source file='{self.source}'/><target dev='{target}' bus='virtio'/></disk>")


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """Figures of one finished migration. `stats` (destination, VIR_DOMAIN_JOB_STATS_COMPLETED) has the
    memory figures and the real downtime; `source_stats` also has `disk_total`/`disk_processed` of a
    copy-storage migration, but only a persistent guest leaves a source domain to ask (else {})."""

    seconds: float  # wall time of the migrate call
    stats: dict[str, Any]
    source_stats: dict[str, Any]

    @property
    def data_processed_mib(self) -> float:
        return float(self.stats.get("data_processed", 0)) / 2**20

    @property
    def time_elapsed_s(self) -> float:
        return float(self.stats.get("time_elapsed", 0)) / 1000

    @property
    def rate_mibs(self) -> float:
        """Average transfer rate over the job (data_processed / time_elapsed)."""
        return self.data_processed_mib / self.time_elapsed_s if self.time_elapsed_s > 0 else 0.0

    @property
    def downtime_ms(self) -> int:
        return int(self.stats.get("downtime", 0))


def _completed_stats(dom: libvirt.virDomain) -> dict[str, Any]:
    try:
        stats: dict[str, Any] = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        return stats
    except libvirt.libvirtError:
        return {}  # a transient guest leaves no domain on the source


HostRef = LabHost | int


# ------------------------------------------------------------------------------------ lab life cycle


def _caps_cache_dir() -> Path | None:
    """Where QEMU capabilities probed by an earlier lab are kept (env LAB_CAPS_CACHE, '' = none).
    libvirt validates the files (binary ctime, libvirt version, kernel) and re-probes if stale."""
    env = os.environ.get("LAB_CAPS_CACHE")
    if env == "":
        return None
    return Path(env) if env else DEFAULT_BUILD_DIR / "lab-cache" / "qemu"


def _copy_tree(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True)


def _tree_differs(a: Path, b: Path) -> bool:
    files_a = {p.relative_to(a): p for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b): p for p in b.rglob("*") if p.is_file()}
    return files_a.keys() != files_b.keys() or any(p.read_bytes() != files_b[k].read_bytes()
                                                   for k, p in files_a.items())


def _state_path(lab_dir: Path) -> Path:
    return lab_dir / "state.json"


def _read_state(lab_dir: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(_state_path(lab_dir).read_text())
        return state
    except (OSError, ValueError):
        return {}


def _lab_pids(lab_dir: Path) -> dict[int, str]:
    """Every process the lab started that may still run, with the program name expected in its cmdline."""
    pids: dict[int, str] = {}
    for host_dir in sorted(lab_dir.glob("h*")):
        for pidfile in (host_dir / "run" / "libvirt" / "qemu").glob("*.pid"):
            if (pid := read_pid(pidfile)) is not None:
                pids[pid] = "qemu-system"
        if (pid := read_pid(host_dir / "libvirtd.pid")) is not None:
            pids[pid] = "libvirtd"
        for line in (host_dir / "reapers").read_text().split() if (host_dir / "reapers").exists() else []:
            pids[int(line)] = "subreaper"
        if (pid := read_pid(host_dir / "holder.pid")) is not None:
            pids[pid] = "sleep"
    for pidfile in (lab_dir / "nbd").glob("*.pid"):
        if (pid := read_pid(pidfile)) is not None:
            pids[pid] = "qemu-nbd"
    return {pid: expect for pid, expect in pids.items() if alive(pid)}


def lab_is_live(lab_dir: Path) -> bool:
    return bool(_lab_pids(lab_dir)) or any(n.startswith(netns_prefix(lab_dir)) for n in netns_list())


def down_lab(lab_dir: Path | None = None) -> float:
    """Stops everything a lab in lab_dir started, even half-started or crashed, and verifies it.

    QEMU processes first (SIGTERM, what virDomainDestroy sends), then the daemons, NBD servers and
    namespace holders, all by PID and in parallel; then whatever still runs in the lab's network
    namespaces; then the namespaces and the directory. Returns seconds taken; raises LabError if
    something is left."""
    t0 = time.monotonic()
    lab_dir = lab_dir or lab_dir_from_env()
    prefix = _read_state(lab_dir).get("netns_prefix") or netns_prefix(lab_dir)
    pids = _lab_pids(lab_dir) if lab_dir.exists() else {}
    stop_all({p: e for p, e in pids.items() if e == "qemu-system"})
    stop_all({p: e for p, e in pids.items() if e != "qemu-system"})
    ours = [n for n in netns_list() if n.startswith(prefix)]
    for ns in ours:
        # Anything left in a lab namespace was started by the lab (e.g. a qemu whose pidfile is gone).
        for pid_text in run("ip", "netns", "pids", ns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_text), signal.SIGKILL)
    for ns in ours:
        for _ in range(50):
            if not run("ip", "netns", "pids", ns, check=False).stdout.split():
                break
            time.sleep(0.02)
        run("ip", "netns", "del", ns, check=False)
    left = [f"process {pid} ({expect})" for pid, expect in _lab_pids(lab_dir).items()] if lab_dir.exists() else []
    left += [f"netns {n}" for n in netns_list() if n.startswith(prefix)]
    left += [f"mount {m}" for m in mounts_under(lab_dir)] if lab_dir.exists() else []
    if left:
        raise LabError(f"lab at {lab_dir} not fully stopped: {', '.join(left)}")
    if lab_dir.exists():
        if not _looks_like_lab(lab_dir):
            raise LabError(f"refusing to delete {lab_dir}: it does not look like a lab directory (check LAB)")
        shutil.rmtree(lab_dir, ignore_errors=True)
    return time.monotonic() - t0


def _looks_like_lab(lab_dir: Path) -> bool:
    """A directory the lab made (it writes state.json first, then passwd/group), or an empty one."""
    marks = (lab_dir / "state.json", lab_dir / "passwd", lab_dir / "group")
    return any(m.exists() for m in marks) or not any(lab_dir.iterdir())


class Lab:
    """A running lab. Start with `Lab.up(...)`, or `Lab.attach(...)` to one started by `labctl.py up`."""

    def __init__(self, lab_dir: Path, hosts: Sequence[LabHost], up_seconds: float = 0.0) -> None:
        self.lab_dir = lab_dir
        self.hosts: list[LabHost] = list(hosts)
        self.up_seconds = up_seconds
        self.prefix = netns_prefix(lab_dir)
        self.kernel = build_guest()
        self._conns: dict[int, libvirt.virConnect] = {}
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._nbd_lock = threading.Lock()
        self._stopped = False

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.down()

    # ---- life cycle

    @classmethod
    def up(cls, hosts: int = 3, lab_dir: Path | None = None) -> Lab:
        """Starts a lab of `hosts` hosts; refuses if one is live in lab_dir, cleans a dead one first."""
        problems = environment_problems()
        if problems:
            raise LabUnavailable("cannot start the libvirt lab: " + "; ".join(problems))
        if not 1 <= hosts <= 200:
            raise LabError(f"hosts must be between 1 and 200, not {hosts}")
        lab_dir = (lab_dir or lab_dir_from_env()).resolve()
        if lab_is_live(lab_dir):
            raise LabError(f"a lab is already up in {lab_dir} (stop it with `labctl.py down`, LAB={lab_dir})")
        if lab_dir.exists():
            down_lab(lab_dir)  # left over from a crashed run: nothing of it runs any more
        build_guest()
        t0 = time.monotonic()
        prefix = netns_prefix(lab_dir)
        lab_hosts = [make_host(lab_dir, prefix, i) for i in range(1, hosts + 1)]
        lab = cls(lab_dir, lab_hosts)
        try:
            lab_dir.mkdir(parents=True)
            _state_path(lab_dir).write_text(json.dumps({"netns_prefix": prefix, "hosts": hosts, "complete": False}))
            lab._start(lab_hosts)
        except BaseException:
            with contextlib.suppress(Exception):
                lab.down()
            raise
        lab.up_seconds = time.monotonic() - t0
        _state_path(lab_dir).write_text(json.dumps({"netns_prefix": prefix, "hosts": hosts, "complete": True,
                                                    "up_seconds": round(lab.up_seconds, 3)}))
        return lab

    @classmethod
    def attach(cls, lab_dir: Path | None = None) -> Lab:
        lab_dir = (lab_dir or lab_dir_from_env()).resolve()
        state = _read_state(lab_dir)
        if not state.get("complete"):
            raise LabError(f"no complete lab in {lab_dir} (start one with `labctl.py up`)")
        prefix = netns_prefix(lab_dir)
        return cls(lab_dir, [make_host(lab_dir, prefix, i) for i in range(1, int(state["hosts"]) + 1)],
                   float(state.get("up_seconds", 0.0)))

    @property
    def hosts_file(self) -> Path:
        """`evac collect --hosts-file` for this lab (names, URIs, migration addresses, storage `lab-nbd`)."""
        return self.lab_dir / "evac-hosts.yaml"

    def _start(self, hosts: Sequence[LabHost]) -> None:
        lab_dir, prefix = self.lab_dir, self.prefix
        write_lab_files(lab_dir, hosts)
        self.hosts_file.write_text(evac_hosts_file(hosts))
        run("ip", "netns", "add", f"{prefix}sw")
        run("ip", "-n", f"{prefix}sw", "link", "set", "lo", "up")
        run("ip", "-n", f"{prefix}sw", "link", "add", "br0", "type", "bridge")
        run("ip", "-n", f"{prefix}sw", "link", "set", "br0", "up")
        add_link(prefix, f"{prefix}st", "pst", STORAGE_ADDRESS)
        for host in hosts:
            write_host_files(lab_dir, host)
            add_link(prefix, host.netns, f"p{host.index}", host.address)
        for host in hosts:
            self._spawn(host.dir / "holder.pid", host.dir / "holder.out",
                        ["ip", "netns", "exec", host.netns, "unshare", "--uts", "--",
                         "/bin/sh", "-c", holder_script(lab_dir, host)])
        for host in hosts:
            self._wait_for(lambda h=host: (h.dir / "mounted").exists(), f"mounts of {host.name}",
                           host.dir / "holder.pid", host.dir / "holder.out")
        # A fresh daemon probes QEMU's capabilities on first use (~4-8 s; a migration to an unprobed host
        # stalls that long): probe once on h1 (or reuse an earlier lab's probe) and seed the others.
        cache = _caps_cache_dir()
        h1_cache = hosts[0].dir / "var-up" / "cache" / "libvirt" / "qemu"
        seeded = False
        if cache is not None and cache.is_dir():
            with contextlib.suppress(OSError):  # another run may be replacing it: then probe afresh
                _copy_tree(cache, h1_cache)
                seeded = True
        self._start_daemon(hosts[0])
        # Host capabilities probe every installed emulator (qemu-system-x86_64 and -i386): ~3.5 s each.
        self.connect(hosts[0]).getCapabilities()
        self.connect(hosts[0]).getDomainCapabilities(None, "x86_64", None, "qemu", 0)
        if cache is not None and h1_cache.is_dir() and (not seeded or _tree_differs(h1_cache, cache)):
            with contextlib.suppress(OSError):  # build aside, swap in: concurrent runs never see half a cache
                tmp = cache.with_name(f"{cache.name}.{os.getpid()}")
                _copy_tree(h1_cache, tmp)
                shutil.rmtree(cache, ignore_errors=True)
                tmp.rename(cache)
        for host in hosts[1:]:
            _copy_tree(h1_cache, host.dir / "var-up" / "cache" / "libvirt" / "qemu")
            self._spawn_daemon(host)
        for host in hosts[1:]:
            self._wait_daemon(host)

    def down(self) -> float:
        """Stops this lab (idempotent); returns seconds taken."""
        if self._stopped:
            return 0.0
        for conn in self._conns.values():
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()
        self._conns.clear()
        seconds = down_lab(self.lab_dir)
        for child in self._children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1)
        self._stopped = True
        return seconds

    # ---- processes

    def _spawn(self, pidfile: Path, logfile: Path, argv: Sequence[str]) -> int:
        with open(logfile, "ab") as log:
            # New session: Ctrl-C on the test run must not kill the daemons before teardown stops them.
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._children[child.pid] = child
        pidfile.write_text(f"{child.pid}\n")
        return child.pid

    def _wait_for(self, ready: Any, what: str, pidfile: Path, logfile: Path, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            pid = read_pid(pidfile)
            if pid is None or not alive(pid):
                raise LabError(f"{what}: process died: {self._tail(logfile)}")
            if time.monotonic() > deadline:
                raise LabError(f"{what}: not ready after {timeout_s:.0f} s: {self._tail(logfile)}")
            time.sleep(0.02)

    @staticmethod
    def _tail(path: Path, lines: int = 15) -> str:
        try:
            return "\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _spawn_daemon(self, host: LabHost) -> None:
        holder = read_pid(host.dir / "holder.pid")
        if holder is None or not alive(holder):
            raise LabError(f"{host.name}: its namespace holder is gone; restart the lab")
        (host.dir / "libvirtd.pid").unlink(missing_ok=True)
        # nsenter execs (no fork for net/mount/uts namespaces) the subreaper, which starts libvirtd and
        # writes libvirtd's PID; see subreaper.py for why QEMU orphans must not go to PID 1.
        reaper = self._spawn(host.dir / "reaper.pid", host.dir / "libvirtd.out",
                             ["nsenter", "-t", str(holder), "-m", "-u", "-n", "--", sys.executable,
                              str(SUBREAPER), str(host.dir / "libvirtd.pid"), "--",
                              "libvirtd", "-f", "/etc/libvirt/libvirtd.conf", "--listen"])
        with open(host.dir / "reapers", "a") as reapers:  # all of them, for down(): old ones reap old QEMUs
            reapers.write(f"{reaper}\n")

    def _wait_daemon(self, host: LabHost) -> None:
        def answers() -> bool:
            try:
                libvirt.open(host.uri).close()
                return True
            except libvirt.libvirtError:
                return False

        self._wait_for(answers, f"libvirtd of {host.name}", host.dir / "reaper.pid", host.dir / "libvirtd.out")

    def _start_daemon(self, host: LabHost) -> None:
        self._spawn_daemon(host)
        self._wait_daemon(host)

    def host(self, ref: HostRef) -> LabHost:
        if isinstance(ref, LabHost):
            return ref
        if not 1 <= ref <= len(self.hosts):
            raise LabError(f"no lab host {ref}: the lab has hosts 1..{len(self.hosts)}")
        return self.hosts[ref - 1]

    def daemon_pid(self, ref: HostRef) -> int | None:
        return read_pid(self.host(ref).dir / "libvirtd.pid")

    def daemon_alive(self, ref: HostRef) -> bool:
        pid = self.daemon_pid(ref)
        return pid is not None and alive(pid) and "libvirtd" in cmdline(pid)

    def kill_daemon(self, ref: HostRef, sig: int = signal.SIGKILL) -> None:
        """Kills the host's libvirtd (SIGKILL by default: a crash). Its guests keep running."""
        host = self.host(ref)
        pid = self.daemon_pid(host)
        self._drop_connection(host)
        if pid is None or not signal_if(pid, sig, "libvirtd"):
            return
        for _ in range(500):
            if not alive(pid):
                return
            time.sleep(0.01)
        raise LabError(f"libvirtd of {host.name} (pid {pid}) did not die on signal {sig}")

    def restart_daemon(self, ref: HostRef) -> None:
        """Starts the host's libvirtd again (stopping it first if it runs); it re-attaches to running guests."""
        host = self.host(ref)
        if self.daemon_alive(host):
            self.kill_daemon(host, signal.SIGTERM)
        self._start_daemon(host)

    # ---- connections

    def connect(self, ref: HostRef) -> libvirt.virConnect:
        """A connection to the host's daemon from this process (cached; reopened if it died)."""
        host = self.host(ref)
        conn = self._conns.get(host.index)
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                if conn.isAlive():
                    return conn
            self._drop_connection(host)
        try:
            conn = libvirt.open(host.uri)
        except libvirt.libvirtError as exc:
            raise LabError(f"cannot connect to {host.name} ({host.uri}): {exc}") from exc
        self._conns[host.index] = conn
        return conn

    def _drop_connection(self, host: LabHost) -> None:
        conn = self._conns.pop(host.index, None)
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    # ---- guests

    def define_guest(self, host: HostRef, name: str, memory_mib: int = 64, dirty_rate_mibs: int = 0,
                     wss_mib: int = 8, persistent: bool = True,
                     disks: Iterable[tuple[LabDisk, str]] = (), start: bool = True,
                     fill: bool = True) -> libvirt.virDomain:
        """Defines (and by default starts) a memdirty guest: `memory_mib` of RAM filled with incompressible
        data, `wss_mib` of it rewritten at `dirty_rate_mibs`. `disks` = (disk, target dev) pairs."""
        xml = guest_xml(name, memory_mib, dirty_rate_mibs, wss_mib, self.kernel,
                        [disk.xml(target) for disk, target in disks], fill)
        conn = self.connect(host)
        if persistent:
            dom = conn.defineXML(xml)
            if start:
                dom.create()
            return dom
        if not start:
            raise LabError("a transient guest (persistent=False) must be started")
        return conn.createXML(xml, 0)

    def guest_status(self, dom: libvirt.virDomain) -> GuestStatus:
        """Reads memdirty's status block through the QEMU monitor (HMP `xp`)."""
        out = libvirt_qemu.qemuMonitorCommand(dom, STATUS_COMMAND, libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)
        status = parse_status(out)
        if status is None:
            raise LabError(f"unexpected monitor answer for {dom.name()}: {out!r}")
        return status

    def heartbeat(self, dom: libvirt.virDomain) -> int:
        return self.guest_status(dom).heartbeat

    def wait_ready(self, dom: libvirt.virDomain, timeout_s: float = 60.0) -> float:
        """Waits until the guest has filled its RAM and ticks; returns seconds waited."""
        t0 = time.monotonic()
        last: GuestStatus | str = "no answer"
        while time.monotonic() - t0 < timeout_s:
            try:
                last = self.guest_status(dom)
                if last.ready:
                    return time.monotonic() - t0
            except (libvirt.libvirtError, LabError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise LabError(f"guest {dom.name()} not ready after {timeout_s:.0f} s: {last}")

    def heartbeat_advances(self, dom: libvirt.virDomain, within_s: float = 10.0, ticks: int = 5) -> bool:
        """True once the heartbeat has moved `ticks` (10 ms each) ahead, False if not within `within_s`."""
        start = self.heartbeat(dom)
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if self.heartbeat(dom) >= start + ticks:
                return True
        return False

    def migrate(self, dom: libvirt.virDomain, dst: HostRef, flags: int = DEFAULT_FLAGS,
                params: dict[str, Any] | None = None,
                dest_uri: str | None = None) -> tuple[libvirt.virDomain, MigrationResult]:
        """Peer-to-peer migration of dom to dst: the source daemon dials `dest_uri` (default dst.peer_uri;
        dst.uri works too). Returns the domain on dst and the job's figures; libvirtError propagates
        (e.g. code 81 VIR_ERR_MIGRATE_UNSAFE)."""
        host = self.host(dst)
        name = dom.name()
        t0 = time.monotonic()
        dom.migrateToURI3(dest_uri or host.peer_uri, params or {}, flags)
        seconds = time.monotonic() - t0
        moved = self.connect(host).lookupByName(name)
        return moved, MigrationResult(seconds, _completed_stats(moved), _completed_stats(dom))

    def destroy_all_domains(self) -> None:
        """Destroys and undefines every domain on every host whose daemon runs."""
        for host in self.hosts:
            if not self.daemon_alive(host):
                continue
            for dom in self.connect(host).listAllDomains():
                with contextlib.suppress(libvirt.libvirtError):
                    if dom.isActive():
                        dom.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    if dom.isPersistent():
                        dom.undefine()

    def reset(self) -> None:
        """Back to a fresh lab: daemons restarted, no shaping, no domains, no volumes, no NBD exports."""
        for host in self.hosts:
            if not self.daemon_alive(host):
                self._start_daemon(host)
            self.unshape(host)
        self.destroy_all_domains()
        for host in self.hosts:
            for pool_name in ("default", "shared"):
                pool = self.connect(host).storagePoolLookupByName(pool_name)
                pool.refresh(0)
                for vol in pool.listAllVolumes():
                    with contextlib.suppress(libvirt.libvirtError):
                        vol.delete(0)
        pids = {pid: "qemu-nbd" for f in (self.lab_dir / "nbd").glob("*.pid") if (pid := read_pid(f))}
        stop_all(pids)
        for f in (self.lab_dir / "nbd").iterdir():
            f.unlink()

    # ---- storage

    def _create_volume(self, host: LabHost, pool_name: str, name: str, capacity_mib: int, fmt: str) -> str:
        pool = self.connect(host).storagePoolLookupByName(pool_name)
        pool.refresh(0)
        vol = pool.createXML(f"<volume><name>{name}</name><capacity unit='MiB'>{capacity_mib}</capacity>"
                             f"<target><format type='{fmt}'/></target></volume>", 0)
        path: str = vol.path()
        return path

    def create_local_disk(self, host: HostRef, name: str, capacity_mib: int = 64, fmt: str = "qcow2") -> LabDisk:
        """A volume in the host's private pool `default` (inventory storage null: copy-storage to migrate)."""
        h = self.host(host)
        source = self._create_volume(h, "default", name, capacity_mib, fmt)
        return LabDisk(DiskKind.LOCAL, name, capacity_mib, h.local_path(name), source, None, fmt)

    def create_destination_volume(self, host: HostRef, disk: LabDisk) -> LabDisk:
        """Pre-creates `disk` (same name, format, capacity) in pool `default` of another host, as copy-storage
        migration (VIR_MIGRATE_NON_SHARED_DISK) needs; without it libvirt fails with error 49."""
        return self.create_local_disk(host, disk.name, disk.capacity_mib, disk.format)

    def create_shared_dir_disk(self, name: str, capacity_mib: int = 64, fmt: str = "qcow2") -> LabDisk:
        """A volume in pool `shared`, the same directory on every host. libvirt 9.0 does not recognise it as
        shared storage: migrating a guest using it fails with error 81 unless VIR_MIGRATE_UNSAFE is given."""
        source = self._create_volume(self.hosts[0], "shared", name, capacity_mib, fmt)
        for host in self.hosts[1:]:
            if self.daemon_alive(host):
                self.connect(host).storagePoolLookupByName("shared").refresh(0)
        return LabDisk(DiskKind.SHARED_DIR, name, capacity_mib, self.lab_dir / "shared" / name, source,
                       SHARED_DIR_STORAGE_ID, fmt)

    def create_shared_disk(self, name: str, capacity_mib: int = 64) -> LabDisk:
        """A qcow2 exported by its own qemu-nbd in the storage namespace: a network disk every host reaches,
        which libvirt treats as shared (migrates without UNSAFE). Inventory storage id `lab-nbd`."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise LabError(f"NBD export name {name!r}: use letters, digits, '.', '_' and '-'")
        nbd_dir = self.lab_dir / "nbd"
        image = nbd_dir / f"{name}.qcow2"
        if image.exists():
            raise LabError(f"shared disk {name} already exists")
        run("qemu-img", "create", "-q", "-f", "qcow2", str(image), f"{capacity_mib}M")
        with self._nbd_lock:
            port = NBD_FIRST_PORT + len(list(nbd_dir.glob("*.pid")))
            # -e 4: several clients (source and destination QEMU during a migration; the default of one
            # makes the destination hang); -t: keep serving after a client leaves; --fork returns once
            # the socket listens.
            run("ip", "netns", "exec", f"{self.prefix}st", "qemu-nbd", "-t", "-e", "4", "-x", name, "-f", "qcow2",
                "--bind", STORAGE_ADDRESS, "--port", str(port), "--cache=none", "--fork",
                "--pid-file", str(nbd_dir / f"{name}.pid"), str(image))
        return LabDisk(DiskKind.NBD, name, capacity_mib, image, name, NBD_STORAGE_ID, "qcow2", port)

    # ---- links

    def shape(self, ref: HostRef, mbit: float | None = None, gbps: float | None = None) -> None:
        """Limits the host's link to `mbit` Mbit/s (or `gbps`) in both directions with tbf, as if its NIC
        were that fast: egress on its eth0, ingress as the egress of its port on the switch."""
        if (mbit is None) == (gbps is None):
            raise LabError("shape(): give exactly one of mbit= or gbps=")
        rate_mbit = mbit if mbit is not None else (gbps or 0) * 1000
        if rate_mbit <= 0:
            raise LabError(f"shape(): rate must be positive, not {rate_mbit} Mbit/s")
        host = self.host(ref)
        rate_bit = int(rate_mbit * 1e6)
        # Burst of ~10 ms at the rate (>= 64 KiB so GSO packets of the veth pass), 50 ms queue.
        burst = max(64 * 1024, rate_bit // 8 // 100)
        tbf = ["root", "tbf", "rate", f"{rate_bit}bit", "burst", str(burst), "latency", "50ms"]
        run("ip", "netns", "exec", host.netns, "tc", "qdisc", "replace", "dev", "eth0", *tbf)
        run("ip", "netns", "exec", f"{self.prefix}sw", "tc", "qdisc", "replace", "dev", f"p{host.index}", *tbf)

    def wire_bytes(self, ref: HostRef) -> tuple[int, int]:
        """(sent, received) bytes so far on the host's NIC (its eth0), as the kernel counts them on the wire."""
        host = self.host(ref)
        stats = json.loads(run("ip", "-n", host.netns, "-s", "-j", "link", "show", "eth0").stdout)[0]["stats64"]
        return int(stats["tx"]["bytes"]), int(stats["rx"]["bytes"])

    def unshape(self, ref: HostRef) -> None:
        host = self.host(ref)
        run("ip", "netns", "exec", host.netns, "tc", "qdisc", "del", "dev", "eth0", "root", check=False)
        run("ip", "netns", "exec", f"{self.prefix}sw", "tc", "qdisc", "del", "dev", f"p{host.index}", "root",
            check=False)
