"""subreaper.py PIDFILE -- PROGRAM [ARGS...]: run PROGRAM under a child subreaper that reaps orphans at once.

Why: libvirtd daemonizes every QEMU, so a QEMU's parent becomes PID 1 of the machine. On the machines
the lab runs on, PID 1 reaps zombies lazily, and libvirt waits for a stopped QEMU to vanish (it polls
kill(pid, 0) every 200 ms): every destroy and every migration's source cleanup then took 1.4-2 s
longer than on a real host. As a child subreaper (prctl PR_SET_CHILD_SUBREAPER) this process inherits
those orphans and reaps them immediately: destroy 0.2 s, migration wall - job time ~0.2 s (measured).

Writes PROGRAM's PID to PIDFILE, exits with PROGRAM's status once no descendant is left (QEMUs of a
killed libvirtd keep it alive, so they are reaped promptly too). Standard library only.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    pidfile, command = argv[0], argv[2:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"subreaper: prctl failed: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 1
    child = subprocess.Popen(command)
    with open(pidfile + ".tmp", "w") as f:
        f.write(f"{child.pid}\n")
    os.replace(pidfile + ".tmp", pidfile)
    status = 0
    while True:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            return status  # no child and no inherited orphan left
        except InterruptedError:
            continue
        if pid == child.pid:
            status = os.waitstatus_to_exitcode(wait_status)
            child.returncode = status  # tell Popen it is gone, so it never waits on a reused PID


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
