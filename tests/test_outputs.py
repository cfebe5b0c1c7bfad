"""Every file evac writes: checked before the work, written atomically, exit 2 in one line on failure."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from executor import outputs
from executor.cli.main import main
from executor.outputs import OutputError, check_writable, check_writable_dir, write_atomic
from tests.fleet import make_inventory

DEV_FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not DEV_FULL.exists(), reason="no /dev/full")


# ---------------------------------------------------------------- the helper


def test_write_atomic_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_atomic(target, "one", "test")
    write_atomic(target, b"two", "test")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary file left behind


def test_replacing_keeps_the_files_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    target.chmod(0o640)
    write_atomic(target, "new", "test")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_a_failed_write_leaves_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Disk full at fsync: the previous plan stays as it was, and no temporary file is left."""
    target = tmp_path / "plan.json"
    target.write_text('{"valid": true}')

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs.os, "fsync", full)
    with pytest.raises(OutputError, match="No space left on device") as exc:
        write_atomic(target, "x" * 100_000, "evac plan -o")
    assert exc.value.exit_code == 2 and "\n" not in str(exc.value)
    assert target.read_text() == '{"valid": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]


@pytest.mark.parametrize(("name", "needle"), [("missing/x.json", "does not exist"), (".", "is a directory")])
def test_check_writable_refuses(tmp_path: Path, name: str, needle: str) -> None:
    with pytest.raises(OutputError, match=needle):
        check_writable(tmp_path / name, "test")


def test_check_writable_follows_a_symlink_to_a_directory(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path)
    with pytest.raises(OutputError, match="is a directory"):
        check_writable(tmp_path / "link", "test")


def test_replacing_through_a_symlink_writes_its_target(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old")
    (tmp_path / "link.json").symlink_to(real)
    write_atomic(tmp_path / "link.json", "new", "test")
    assert (tmp_path / "link.json").is_symlink() and real.read_text() == "new"


def test_check_writable_dir(tmp_path: Path) -> None:
    check_writable_dir(tmp_path / "a" / "b", "test")  # creatable
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="not a directory"):
        check_writable_dir(tmp_path / "file", "test")


@needs_dev_full
def test_a_device_is_written_in_place_never_replaced() -> None:
    """Renaming over /dev/full would destroy the device node; it is written in place and fails."""
    with pytest.raises(OutputError, match="No space left on device"):
        write_atomic(DEV_FULL, "x" * 10_000, "test")
    assert DEV_FULL.is_char_device()


# ---------------------------------------------------------------- every command that writes a file


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    p = tmp_path / "inv.json"
    p.write_text(json.dumps(make_inventory(4, 3).to_dict()))
    return p


def _bad_targets(tmp_path: Path) -> list[tuple[Path, str]]:
    return [(tmp_path / "missing" / "x.json", "does not exist"), (tmp_path, "is a directory")]


def _one_line_exit_2(code: int, capsys: pytest.CaptureFixture[str], needle: str) -> None:
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_plan_output_is_checked_before_solving(inventory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import planner.solve

    def never(*a: object, **k: object) -> None:
        raise AssertionError("solved for an output that cannot be written")

    monkeypatch.setattr(planner.solve, "make_plan", never)
    for target, needle in _bad_targets(tmp_path):
        _one_line_exit_2(main(["plan", str(inventory), "--drain", "h0", "-o", str(target)]), capsys, needle)


def test_plan_output_that_fails_to_write_keeps_the_old_plan(inventory: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "plan.json"
    assert main(["plan", str(inventory), "--drain", "h0", "--time-limit", "5", "-o", str(out)]) == 0
    before = out.read_text()

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs.os, "fsync", full)
    capsys.readouterr()
    _one_line_exit_2(main(["plan", str(inventory), "--drain", "h1", "--time-limit", "5", "-o", str(out)]), capsys,
                     "No space left on device")
    assert out.read_text() == before and json.loads(before)["drained"] == ["h0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inv.json", "plan.json"]


@needs_dev_full
@pytest.mark.parametrize("command", [["plan", "{inv}", "--drain", "h0", "--time-limit", "5"],
                                     ["generate", "--hosts", "4", "--vms", "8", "--racks", "2"]])
def test_dev_full_is_exit_2(inventory: Path, command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    args = [a.replace("{inv}", str(inventory)) for a in command]
    _one_line_exit_2(main([*args, "-o", str(DEV_FULL)]), capsys, "No space left on device")


def test_generate_output_is_checked_before_generating(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for target, needle in _bad_targets(tmp_path):
        _one_line_exit_2(main(["generate", "--hosts", "4", "--vms", "8", "--racks", "2", "-o", str(target)]), capsys,
                         needle)


def test_collect_output_is_checked_before_connecting(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from executor.cli import collect_cmds

    def never(*a: object, **k: object) -> None:
        raise AssertionError("connected for an output that cannot be written")

    monkeypatch.setattr(collect_cmds, "collect", never)
    for target, needle in _bad_targets(tmp_path):
        _one_line_exit_2(main(["collect", "test:///default", "-o", str(target)]), capsys, needle)


def test_demo_out_is_checked_before_planning(inventory: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("")
    _one_line_exit_2(main(["demo", str(inventory), "--drain", "h0", "--out", str(a_file)]), capsys,
                     "not a directory")
    assert "evac demo" not in capsys.readouterr().out


@pytest.mark.parametrize("where", ["dir", "missing"])
def test_run_journal_is_checked_before_anything_runs(inventory: Path, tmp_path: Path, where: str,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from executor.cli import run_cmds

    out = tmp_path / "plan.json"
    assert main(["plan", str(inventory), "--drain", "h0", "--time-limit", "5", "-o", str(out)]) == 0
    capsys.readouterr()
    monkeypatch.setattr(run_cmds, "_hypervisor", lambda *a: (_ for _ in ()).throw(AssertionError("ran")))
    journal = tmp_path if where == "dir" else tmp_path / "missing" / "j.db"
    _one_line_exit_2(main(["run", str(out), "--simulate", "--journal", str(journal)]), capsys,
                     "is a directory" if where == "dir" else "does not exist")
