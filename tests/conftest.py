"""Shared fixtures. The real libvirt lab (tests/lab/harness.py):

* `lab` (session): 3 lab hosts, started once for the whole run by the first test that asks for it, stopped
  at the end even on failure or Ctrl-C. Mark such tests `@pytest.mark.lab`. If the lab cannot run here
  (not root, libvirtd/QEMU missing) the fixture FAILS: CI must not skip the lab silently. Set
  EVAC_SKIP_LAB=1 to skip lab tests on purpose.
* After every test that used `lab`, `lab.reset()` runs: domains destroyed and undefined, volumes and NBD
  exports deleted, link shaping removed, killed daemons restarted. Tests may therefore reuse names.
* `lab_factory(n)` (function): extra labs of n hosts for one test, stopped after it.
* The lab directory is /tmp/evac-lab-pytest-<pid> (env EVAC_TEST_LAB overrides), so several test runs and
  a `make lab-up` lab can coexist; labs of test runs that died are cleaned at the next start.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.lab.harness import Lab

LAB_TEST_HOSTS = 3
_TEST_LAB_GLOB = "evac-lab-pytest-*"


def _reap_stale_test_labs() -> None:
    """Stops labs left by test runs whose pytest process is gone (SIGKILL, machine sleep...)."""
    from tests.lab.harness import down_lab

    for lab_dir in Path("/tmp").glob(_TEST_LAB_GLOB):
        owner = lab_dir.name.rsplit("-", 1)[-1]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            down_lab(lab_dir)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    if os.environ.get("EVAC_SKIP_LAB") == "1":
        pytest.skip("EVAC_SKIP_LAB=1: libvirt lab tests skipped on purpose")
    try:
        from tests.lab.harness import Lab, environment_problems
    except ImportError as exc:
        pytest.fail(f"the libvirt lab cannot start: {exc} (run `make venv`; EVAC_SKIP_LAB=1 skips lab tests)",
                    pytrace=False)
    problems = environment_problems()
    if problems:
        pytest.fail("the libvirt lab cannot start: " + "; ".join(problems) + " (EVAC_SKIP_LAB=1 skips lab tests)",
                    pytrace=False)
    _reap_stale_test_labs()
    lab_dir = Path(os.environ.get("EVAC_TEST_LAB") or f"/tmp/evac-lab-pytest-{os.getpid()}")
    # A CI runner stops jobs with SIGTERM, which by default ends Python without finalizers or atexit:
    # handle it like Ctrl-C (pytest stops the session and runs the finalizers) so the lab is stopped.
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    started = Lab.up(hosts=LAB_TEST_HOSTS, lab_dir=lab_dir)
    atexit.register(started.down)  # also if the session ends without running finalizers
    try:
        yield started
    finally:
        started.down()
        if previous == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _interrupt_on_sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt("SIGTERM")


@pytest.fixture
def lab_factory(lab: Lab) -> Iterator[Callable[[int], Lab]]:
    """For a test that needs a lab of its own (another host count, or one it may wreck): `lab_factory(4)`
    starts one beside the session lab (~0.3 s); each is stopped after the test."""
    from tests.lab.harness import Lab as LabClass

    made: list[Lab] = []

    def make(hosts: int) -> Lab:
        made.append(LabClass.up(hosts=hosts, lab_dir=Path(f"/tmp/evac-lab-pytest-f{len(made)}-{os.getpid()}")))
        return made[-1]

    try:
        yield make
    finally:
        for extra in made:
            extra.down()


@pytest.fixture(autouse=True)
def _lab_reset_after_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Gives every lab test a clean lab, whatever the previous one left behind."""
    yield
    funcargs = getattr(request.node, "funcargs", None) or {}  # None once an interrupted session unwinds
    used: Lab | None = funcargs.get("lab")  # absent if the lab failed to start
    if used is not None:
        used.reset()


# ---- unreachable libvirt hosts for connection and collector tests (loopback only)


@pytest.fixture
def closed_port() -> int:
    """A loopback TCP port nobody listens on: connecting is refused at once."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback TCP port that accepts connections and never answers: libvirt.open would wait forever."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield int(s.getsockname()[1])
    s.close()
