"""Process and namespace plumbing of the lab: run a command, is a PID alive, stop PIDs, list namespaces."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


class LabError(Exception):
    """The lab could not be started, stopped or used; the message says what to do."""


class LabUnavailable(LabError):
    """This machine cannot run the lab at all (not root, missing programs)."""


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def alive(pid: int) -> bool:
    """True if pid runs; a zombie (killed child not yet reaped) counts as dead, and is reaped."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def signal_if(pid: int, sig: int, expect: str) -> bool:
    """Send sig to pid only if it still is the program we started (guards against PID reuse)."""
    if not alive(pid) or expect not in cmdline(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    return True


def stop_all(pids: dict[int, str], grace_s: float = 5.0) -> None:
    """SIGTERM every pid (program name expected in its cmdline), wait in parallel, SIGKILL stragglers."""
    running = [pid for pid, expect in pids.items() if signal_if(pid, signal.SIGTERM, expect)]
    deadline = time.monotonic() + grace_s
    while running and time.monotonic() < deadline:
        running = [pid for pid in running if alive(pid)]
        time.sleep(0.02)
    for pid in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in running:
        for _ in range(100):
            if not alive(pid):
                break
            time.sleep(0.01)


def netns_list() -> list[str]:
    out = run("ip", "netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def mounts_under(lab_dir: Path) -> list[str]:
    """Mount points in this process's mount namespace at or below lab_dir (the lab should make none)."""
    root = str(lab_dir.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point == root or point.startswith(root + "/"):
            found.append(point)
    return found
