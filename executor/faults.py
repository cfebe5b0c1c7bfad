"""Test-only crash points: `EVAC_FAULT_KILL_AT=<point>[:<n>]` SIGKILLs this process at the n-th
time (default 1st) the code passes `point(<point>)`, so crash tests hit exact phases of a run.

Unset (always, outside tests) it costs one dict lookup. Points, in the order a migration meets them:

    run_started      after the journal records the run, before any hypervisor call
    reconcile        resume: before looking at the first in-flight VM of the journal
    reattached       resume: following a migration libvirt still runs (its `reattached` journaled)
    host_wait        resume: waiting for a host that does not answer (its `host_wait` journaled)
    prechecked       precheck passed and journaled, nothing created yet
    volumes_creating destination volumes announced in the journal, not created yet
    volume_created   one destination volume created (executor.libvirt_hv / sim_hv), before the next step
    intent           intent journaled, migrate not called yet
    disk_copy        a progress sample shows the disks being copied (copy-storage)
    memory_copy      a progress sample shows memory being copied
    migrated         migrate returned success, nothing journaled yet
    verifying        migrate's outcome journaled, both hosts not looked at yet
    verified         both hosts looked at (done), not journaled yet
    done             a VM's `done` journaled
    run_finished     every migration ended, the run's end not journaled yet

Several points: `EVAC_FAULT_KILL_AT=intent:2,migrated` (the first reached wins).
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "EVAC_FAULT_KILL_AT"

_lock = threading.Lock()
_hits: dict[str, int] = {}


def _targets() -> dict[str, int]:
    out: dict[str, int] = {}
    for item in os.environ.get(ENV, "").split(","):
        name, _, n = item.strip().partition(":")
        if name:
            out[name] = int(n) if n.isdigit() and int(n) > 0 else 1
    return out


def point(name: str) -> None:
    """SIGKILLs the process if `EVAC_FAULT_KILL_AT` names this point and this is its n-th pass."""
    if ENV not in os.environ:
        return
    want = _targets().get(name)
    if want is None:
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] == want:
            os.kill(os.getpid(), signal.SIGKILL)
