"""Output files: a target evac cannot write is refused with exit 2 naming it, before the work, and an
existing file is never left partial or replaced by a failed write.

These need the atomic-write helper (H1, executor/outputs.py); they are strict xfails until it is merged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fleet import make_inventory
from tests.hostile import run_cli

pytestmark = pytest.mark.timeout(120)
NEEDS_ATOMIC_WRITES = pytest.mark.xfail(strict=True, reason="needs atomic writes (H1)")


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(make_inventory(3, 2).to_dict()))
    return path


def _targets(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    return {"full device": Path("/dev/full"), "a directory": folder, "no such folder": tmp_path / "no" / "x.json"}


@NEEDS_ATOMIC_WRITES
@pytest.mark.parametrize("target", ["full device", "a directory", "no such folder"])
def test_plan_refuses_an_output_it_cannot_write(target: str, inventory: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = _targets(tmp_path)[target]
    code, _, err = run_cli(["plan", str(inventory), "--drain", "h0", "-o", str(out), "--time-limit", "2"], capsys)
    assert code == 2 and str(out) in err and "Traceback" not in err


@NEEDS_ATOMIC_WRITES
@pytest.mark.parametrize("target", ["full device", "a directory", "no such folder"])
def test_generate_refuses_an_output_it_cannot_write(target: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = _targets(tmp_path)[target]
    code, _, err = run_cli(["generate", "--hosts", "2", "--vms", "2", "--racks", "1", "-o", str(out)], capsys)
    assert code == 2 and str(out) in err and "Traceback" not in err


@NEEDS_ATOMIC_WRITES
def test_a_failed_write_leaves_the_previous_plan_whole(inventory: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The write fails half-way (disk full): the old plan must still be there, byte for byte."""
    out = tmp_path / "plan.json"
    out.write_text('{"old": "plan"}\n')
    real_write = Path.write_text

    def half_then_fail(self: Path, data: str, *args: object, **kwargs: object) -> int:
        if self == out:
            real_write(self, data[: len(data) // 2])
            raise OSError(28, "No space left on device")
        return real_write(self, data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", half_then_fail)
    code, _, err = run_cli(["plan", str(inventory), "--drain", "h0", "-o", str(out), "--time-limit", "2"], capsys)
    assert code == 2 and "Traceback" not in err
    assert out.read_text() == '{"old": "plan"}\n'
