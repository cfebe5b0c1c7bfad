"""The test-only crash points (executor/faults.py): inert without the variable, SIGKILL at the n-th pass."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from executor import faults

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = "from executor import faults\nfor i in range(5):\n    print(i, flush=True)\n    faults.point('p')\n"


def _run(env_value: str | None) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    if env_value is not None:
        env[faults.ENV] = env_value
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    return proc.returncode, proc.stdout


def test_kills_at_the_nth_pass_of_the_named_point() -> None:
    assert _run("p:3") == (-signal.SIGKILL, "0\n1\n2\n")
    assert _run("other,p") == (-signal.SIGKILL, "0\n")


def test_inert_without_the_variable_or_for_other_points() -> None:
    assert _run(None) == (0, "0\n1\n2\n3\n4\n")
    assert _run("q:1") == (0, "0\n1\n2\n3\n4\n")
    faults.point("p")  # this process has no variable: nothing happens
