"""Headless Chromium (Debian's `chromium`) for the HTML report tests: console messages and a screenshot.

Chromium writes every console message of the page (console.log/warn/error, uncaught exceptions) to
stderr as `…:CONSOLE…] "message", source: URL (line)` with `--enable-logging=stderr --v=0`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CONSOLE = re.compile(r":CONSOLE[^\]]*\] (.*)$")


@dataclass(frozen=True)
class PageLoad:
    console: list[str]  # every console message the page produced
    screenshot: Path


def chromium() -> str:
    found = shutil.which("chromium")
    assert found, "Debian's chromium is not installed (the Makefile's system-packages step installs it)"
    return found


def load(page: Path, screenshot: Path, profile: Path, size: tuple[int, int] = (1400, 2000)) -> PageLoad:
    """Loads `page` (a local file, no network) in headless Chromium and screenshots it."""
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.unlink(missing_ok=True)
    cmd = [chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0",
           "--no-first-run", "--disable-extensions", "--disable-background-networking", f"--user-data-dir={profile}",
           "--host-resolver-rules=MAP * ~NOTFOUND",  # no network: the page must be self-contained
           f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=8000", "--hide-scrollbars",
           f"--screenshot={screenshot}", page.resolve().as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert screenshot.exists(), out.stderr[-2000:]
    console = [m.group(1) for line in out.stderr.splitlines() if (m := CONSOLE.search(line))]
    return PageLoad(console, screenshot)
