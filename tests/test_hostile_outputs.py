"""Output files: a target evac cannot write is refused with exit 2 naming it, before the work, and an
existing file is never left partial or replaced by a failed write.

They rely on `executor/outputs.py` (checked before the work, written atomically after it)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fleet import make_inventory
from tests.hostile import run_cli

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(make_inventory(3, 2).to_dict()))
    return path


def _targets(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    return {"full device": Path("/dev/full"), "a directory": folder, "no such folder": tmp_path / "no" / "x.json"}


@pytest.mark.parametrize("target", ["full device", "a directory", "no such folder"])
def test_plan_refuses_an_output_it_cannot_write(target: str, inventory: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = _targets(tmp_path)[target]
    code, _, err = run_cli(["plan", str(inventory), "--drain", "h0", "-o", str(out), "--time-limit", "2"], capsys)
    assert code == 2 and str(out) in err and "Traceback" not in err


@pytest.mark.parametrize("target", ["full device", "a directory", "no such folder"])
def test_generate_refuses_an_output_it_cannot_write(target: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = _targets(tmp_path)[target]
    code, _, err = run_cli(["generate", "--hosts", "2", "--vms", "2", "--racks", "1", "-o", str(out)], capsys)
    assert code == 2 and str(out) in err and "Traceback" not in err


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A real filesystem with almost no room left: a 64 KiB tmpfs, filled but for a few hundred bytes."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.fail("needs root and mount(8) for a real full filesystem (the lab tests need root too)")
    mnt = tmp_path / "full"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
    try:
        (mnt / "old-plan.json").write_text('{"old": "plan"}\n')
        with contextlib.suppress(OSError), open(mnt / "filler", "wb") as f:
            while True:
                f.write(b"x" * 512)
                f.flush()
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_a_failed_write_leaves_the_previous_plan_whole(inventory: Path, full_disk: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The disk is really full when the plan is written: the old plan is still there, byte for byte, and no
    temporary file is left beside it."""
    out = full_disk / "old-plan.json"
    code, _, err = run_cli(["plan", str(inventory), "--drain", "h0", "-o", str(out), "--time-limit", "2"], capsys)
    assert code == 2 and "No space left on device" in err and "Traceback" not in err
    assert out.read_text() == '{"old": "plan"}\n'
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler", "old-plan.json"]
