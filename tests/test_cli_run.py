"""`evac run` (simulated, dry run, refusals), `evac status`, `evac demo`, in-process through main()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executor.cli import run_cmds
from executor.cli.main import main
from planner.inventory import load_inventory
from planner.model import Inventory
from planner.plan import Plan
from tests.fleet import greedy_plan, make_inventory

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, Inventory, Plan]:
    inv_path = tmp_path / "inv.json"
    inv_path.write_text(json.dumps(make_inventory(4, 3, local_disk_every=4).to_dict()))
    inv = load_inventory(inv_path).inventory  # the plan records the digest of the inventory as loaded
    plan = greedy_plan(inv)
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(plan.to_json())
    return plan_path, inv_path, inv, plan


def _missing(p: Path) -> Inventory:
    raise AssertionError(p)


def test_run_simulated_then_status(files: tuple[Path, Path, Inventory, Plan], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    plan_path, inv_path, _, plan = files
    journal = tmp_path / "run.db"
    code = main(["run", str(plan_path), "--inventory", str(inv_path), "--simulate", "--speedup", "400",
                 "--journal", str(journal), "--json"])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert events[0]["event"] == "run_started" and events[-1]["event"] == "run_finished"
    assert sum(e["event"] == "migration_done" for e in events) == len(plan.migrations)
    assert main(["status", str(journal), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["summary"] == {"done": len(plan.migrations)}
    assert status["runs"][0]["flags"]["unsafe"] is False
    assert main(["status", str(journal)]) == 0
    assert "done" in capsys.readouterr().out
    # the journal holds a finished run: running again needs --resume, which then has nothing left to do
    assert main(["run", str(plan_path), "--inventory", str(inv_path), "--simulate", "--journal", str(journal)]) == 2
    assert main(["run", str(plan_path), "--inventory", str(inv_path), "--simulate", "--journal", str(journal),
                 "--resume", "--json"]) == 0


def test_dry_run_prints_virsh_commands_and_calls_nothing(files: tuple[Path, Path, Inventory, Plan],
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    plan_path, inv_path, _, plan = files
    monkeypatch.setattr(run_cmds, "_hypervisor", lambda *a: _missing(Path("no hypervisor in a dry run")))
    code = main(["run", str(plan_path), "--inventory", str(inv_path), "--dry-run", "--one-at-a-time"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("virsh migrate --live --p2p") == len(plan.migrations)
    assert "--copy-storage-all" in out and "--unsafe" not in out
    assert "predicted makespan" in out
    assert not Path(f"{plan_path}.journal").exists()


def test_refuses_a_plan_for_another_inventory(files: tuple[Path, Path, Inventory, Plan], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    plan_path, inv_path, _, _ = files
    doc = json.loads(plan_path.read_text())
    doc["inventory_sha256"] = "0" * 64
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    assert main(["run", str(other), "--inventory", str(inv_path), "--simulate"]) == 2
    err = capsys.readouterr().err
    assert "inventory_sha256" in err and "Traceback" not in err


@pytest.mark.parametrize("args", [["--barrier", "--one-at-a-time"], ["--timeout-action", "postcopy"],
                                  ["--timeout-action", "pause"], ["--retries", "-1"]])
def test_bad_flags_exit_2(files: tuple[Path, Path, Inventory, Plan], args: list[str]) -> None:
    plan_path, inv_path, _, _ = files
    assert main(["run", str(plan_path), "--inventory", str(inv_path), "--simulate", *args]) == 2


def test_status_of_a_missing_journal(tmp_path: Path) -> None:
    assert main(["status", str(tmp_path / "none.db")]) == 2


def test_demo_plans_runs_and_charts(files: tuple[Path, Path, Inventory, Plan], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    _, inv_path, _, _ = files
    out = tmp_path / "demo"
    code = main(["demo", str(inv_path), "--drain", "h0", "--speedup", "300", "--out", str(out),
                 "--time-limit-s", "5"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert (out / "gantt.png").stat().st_size > 10_000
    assert (out / "plan.json").exists() and (out / "journal.db").exists()
    assert "makespan" in text and "planned" in text


def test_ctrl_c_aborts_cleanly_and_exits_1(files: tuple[Path, Path, Inventory, Plan], tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from executor.journal import Journal

    plan_path, inv_path, _, plan = files
    journal = tmp_path / "ctrlc.db"
    proc = subprocess.Popen([sys.executable, "-m", "executor.cli.main", "run", str(plan_path), "--inventory",
                             str(inv_path), "--simulate", "--speedup", "20", "--journal", str(journal), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until a migration is really running
        if '"migration_started"' in line:
            break
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    summary = Journal.read(journal).summary()
    assert summary.get("aborted", 0) >= 1 and summary.get("done", 0) < len(plan.migrations)
    assert not {"running", "prechecked", "verifying"} & set(summary)
