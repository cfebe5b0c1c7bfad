"""`evac run` (simulated, dry run, refusals), `evac status`, `evac demo`, in-process through main()."""

from __future__ import annotations

import dataclasses
import json
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from executor.cli import run_cmds
from executor.cli.main import main
from planner.checker import check_plan
from planner.errors import PlanRejected
from planner.inventory import load_inventory
from planner.model import Inventory
from planner.plan import Plan, PlanStatus, Unplaced
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


def test_demo_reproduces_its_plan_within_2_percent(files: tuple[Path, Path, Inventory, Plan], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's fleet follows the model the plan used: the run must not drift from the plan (it ran 9 %
    long: a 15 % jitter, and the executor's own wall time counted `speedup` times in simulated time)."""
    _, inv_path, _, _ = files
    code = main(["demo", str(inv_path), "--drain", "h0", "--speedup", "300", "--out", str(tmp_path / "demo"),
                 "--time-limit-s", "5"])
    text = capsys.readouterr().out
    assert code == 0, text
    found = re.search(r"makespan ([\d.]+) s \(planned ([\d.]+) s\)", text)
    assert found, text
    executed, planned = float(found[1]), float(found[2])
    assert 0.98 * planned <= executed <= 1.02 * planned, text


# ---------------------------------------------------------------- run refuses plans the checker refuses


@pytest.fixture
def drain2(tmp_path: Path) -> tuple[Path, Path, dict[str, Any]]:
    """h0 and h4 drained (3 VMs each; vm0 and vm12 have a local disk vda); vm0, vm6 (on h2) and vm12
    share anti-affinity group g. The valid plan moves vm0 to h1, three VMs leave h0 (at most 2 at once)."""
    inv_path = tmp_path / "inv2.json"
    inv_path.write_text(json.dumps(make_inventory(5, 3, drained=("h0", "h4"), local_disk_every=4,
                                                  anti_affinity_every=6).to_dict()))
    inv = load_inventory(inv_path).inventory
    plan = greedy_plan(inv)
    assert check_plan(inv, plan) == []
    doc = plan.to_dict()
    assert {m["vm"]: m["destination"] for m in doc["migrations"]}["vm0"] not in ("h2", "h4")
    return tmp_path / "hostile.json", inv_path, doc


def _mig(doc: dict[str, Any], vm: str) -> dict[str, Any]:
    return next(m for m in doc["migrations"] if m["vm"] == vm)


def _retime(doc: dict[str, Any]) -> None:
    doc["makespan_s"] = max((m["end_s"] for m in doc["migrations"]), default=0.0)


def _onto(doc: dict[str, Any], vm: str, host: str) -> None:
    m = _mig(doc, vm)
    m["destination"], m["path"] = host, [m["source"], "(flat)", host]


def _all_at_zero(doc: dict[str, Any]) -> None:
    for m in doc["migrations"]:
        m["end_s"], m["start_s"], m["wave"] = m["end_s"] - m["start_s"], 0.0, 0
    _retime(doc)


def _no_migrations(doc: dict[str, Any]) -> None:
    doc["migrations"], doc["makespan_s"] = [], 0.0


def _set(vm: str, **fields: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        _mig(doc, vm).update(fields)
        _retime(doc)
    return change


def _too_short(doc: dict[str, Any]) -> None:
    for m in doc["migrations"]:
        m["end_s"] = m["start_s"] + 0.5
    _retime(doc)


def _lower_bound_above(doc: dict[str, Any]) -> None:
    doc["lower_bound_s"] = doc["makespan_s"] + 100.0


HOSTILE: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    # name: (how the valid plan is broken, the rule that must be named)
    "onto-drained-host": (lambda d: _onto(d, "vm0", "h4"), "migration-facts"),
    "copy-storage-emptied": (_set("vm0", copy_storage=[]), "migration-facts"),
    "copy-storage-unknown-disk": (_set("vm1", copy_storage=["vdz"]), "migration-facts"),
    "all-at-t0": (_all_at_zero, "concurrency"),
    "drain-without-migrations": (_no_migrations, "drain"),
    "anti-affinity-broken": (lambda d: _onto(d, "vm0", "h2"), "anti-affinity"),
    "bandwidth-1e12": (_set("vm1", bandwidth_mibs=1e12), "bandwidth-cap"),
    "negative-start": (_set("vm1", start_s=-5.0), "totals"),
    "too-short": (_too_short, "duration"),
    "lower-bound-above-makespan": (_lower_bound_above, "totals"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_check_refuses_each_hostile_plan(case: str, drain2: tuple[Path, Path, dict[str, Any]],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    plan_path, inv_path, doc = drain2
    breaks, rule = HOSTILE[case]
    breaks(doc)
    plan_path.write_text(json.dumps(doc))
    assert main(["check", str(inv_path), str(plan_path)]) == 1
    assert f"[{rule}]" in capsys.readouterr().out


@pytest.mark.parametrize("mode", ["--dry-run", "--simulate", "real"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_run_refuses_each_hostile_plan_before_touching_anything(
        case: str, mode: str, drain2: tuple[Path, Path, dict[str, Any]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """What `evac check` refuses, `evac run` refuses too: exit 2 naming the violation, with no hypervisor
    built (so no call) and no journal written, in every mode."""
    plan_path, inv_path, doc = drain2
    breaks, rule = HOSTILE[case]
    breaks(doc)
    plan_path.write_text(json.dumps(doc))
    monkeypatch.setattr(run_cmds, "_hypervisor", lambda *a: _missing(Path("no hypervisor for a refused plan")))
    journal = tmp_path / "j.db"
    args = ["run", str(plan_path), "-i", str(inv_path), "--journal", str(journal), "--speedup", "1000"]
    assert main(args + ([] if mode == "real" else [mode])) == 2
    captured = capsys.readouterr()
    assert f"[{rule}]" in captured.err and "nothing was run" in captured.err and "Traceback" not in captured.err
    assert "virsh migrate" not in captured.out
    assert not list(tmp_path.glob("j.db*"))


def test_refusal_names_the_first_violations_and_counts_the_rest(
        drain2: tuple[Path, Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    plan_path, inv_path, doc = drain2
    for m in doc["migrations"]:
        m["bandwidth_mibs"] = 1e12  # one violation per migration and rule: far more than are shown
    plan_path.write_text(json.dumps(doc))
    assert main(["run", str(plan_path), "-i", str(inv_path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "more (evac check lists them all)" in err
    assert len(err.splitlines()) <= PlanRejected.SHOWN + 3, err


# ---------------------------------------------------------------- a plan that leaves VMs behind


def _infeasible(files: tuple[Path, Path, Inventory, Plan], tmp_path: Path) -> tuple[Path, Path, str]:
    """The valid plan with its last migration taken out and that VM listed as unplaced (still valid)."""
    _, inv_path, inv, plan = files
    left = plan.migrations[-1].vm
    bad = dataclasses.replace(plan, migrations=plan.migrations[:-1], status=PlanStatus.INFEASIBLE,
                              makespan_s=max(m.end_s for m in plan.migrations[:-1]),
                              unplaced=(Unplaced(left, ("pinned to its host (test)",)),))
    assert check_plan(inv, bad) == []
    path = tmp_path / "infeasible.json"
    path.write_text(bad.to_json())
    return path, inv_path, left


@pytest.mark.parametrize("mode", ["--simulate", "--dry-run"])
def test_infeasible_plan_exits_1_and_names_the_vms_left(files: tuple[Path, Path, Inventory, Plan], tmp_path: Path,
                                                        mode: str, capsys: pytest.CaptureFixture[str]) -> None:
    plan_path, inv_path, left = _infeasible(files, tmp_path)
    code = main(["run", str(plan_path), "-i", str(inv_path), mode, "--speedup", "400",
                 "--journal", str(tmp_path / "inf.db")])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "1 VMs not moved" in out and left in out and "pinned to its host (test)" in out


def test_infeasible_plan_json_events_list_the_vms_left(files: tuple[Path, Path, Inventory, Plan], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    plan_path, inv_path, left = _infeasible(files, tmp_path)
    journal = tmp_path / "inf.db"
    assert main(["run", str(plan_path), "-i", str(inv_path), "--simulate", "--speedup", "400", "--json",
                 "--journal", str(journal)]) == 1
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    finished = events[-1]
    assert finished["event"] == "run_finished" and finished["ok"] is False
    assert finished["unplaced"] == [{"vm": left, "reasons": ["pinned to its host (test)"]}]
    assert finished["states"] == {"done": len(json.loads(plan_path.read_text())["migrations"])}


# ---------------------------------------------------------------- SIGTERM, --unsafe in status


@pytest.mark.parametrize(("signum", "name"), [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_ctrl_c_or_sigterm_aborts_cleanly_and_exits_1(files: tuple[Path, Path, Inventory, Plan], tmp_path: Path,
                                                      signum: int, name: str) -> None:
    """SIGTERM is what an orchestrator or systemd sends to stop a service: handled as Ctrl-C, a clean
    abort (running migrations aborted, VMs on their sources) with a message, journaled, exit 1."""
    import subprocess
    import sys
    import time

    from executor.journal import Journal

    plan_path, inv_path, _, plan = files
    journal = tmp_path / "stop.db"
    proc = subprocess.Popen([sys.executable, "-m", "executor.cli.main", "run", str(plan_path), "--inventory",
                             str(inv_path), "--simulate", "--speedup", "20", "--journal", str(journal), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until a migration is really running
        if '"migration_started"' in line:
            break
    time.sleep(0.3)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert f"{name}: aborting running migrations" in err and "Traceback" not in err
    j = Journal.read(journal)
    summary = j.summary()
    assert summary.get("aborted", 0) >= 1 and summary.get("done", 0) < len(plan.migrations)
    assert not {"running", "prechecked", "verifying"} & set(summary)
    assert len(j.events("run_finished")) == 1
    j.close()


def test_status_warns_when_any_run_used_unsafe(files: tuple[Path, Path, Inventory, Plan], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    plan_path, inv_path, _, _ = files
    journal = tmp_path / "unsafe.db"
    base = ["run", str(plan_path), "-i", str(inv_path), "--simulate", "--speedup", "400", "--journal", str(journal),
            "--json"]
    assert main([*base, "--unsafe"]) == 0
    assert main([*base, "--resume"]) == 0  # the last run did not pass --unsafe; the first did
    capsys.readouterr()
    assert main(["status", str(journal)]) == 0
    out = capsys.readouterr().out
    assert "--unsafe" in out and "run 1 of 2" in out
    assert main(["status", str(journal), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unsafe_runs"] == [1]


# ---------------------------------------------------------------- the plan names its inventory


def test_inventory_option_overrides_the_recorded_path_and_the_digest_decides(
        files: tuple[Path, Path, Inventory, Plan], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, inv_path, _, plan = files
    moved = tmp_path / "gone.json"
    recorded = tmp_path / "recorded.json"
    recorded.write_text(dataclasses.replace(plan, inventory_path=str(moved)).to_json())
    assert main(["run", str(recorded), "--dry-run"]) == 2
    assert "give --inventory" in capsys.readouterr().err
    assert main(["run", str(recorded), "-i", str(inv_path), "--dry-run"]) == 0
    other = tmp_path / "other.json"
    other.write_text(json.dumps(make_inventory(4, 3, memory_mib=512).to_dict()))  # same names, other digest
    wrong = tmp_path / "wrong.json"
    wrong.write_text(dataclasses.replace(plan, inventory_path="other.json").to_json())  # relative: beside the plan
    capsys.readouterr()
    assert main(["run", str(wrong), "--dry-run"]) == 2
    assert "inventory_sha256" in capsys.readouterr().err


def test_plan_without_inventory_path_needs_the_option(files: tuple[Path, Path, Inventory, Plan],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    plan_path, _, _, _ = files
    assert "inventory_path" not in json.loads(plan_path.read_text())
    assert main(["run", str(plan_path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "give --inventory" in err and "Traceback" not in err
    assert main(["check", str(plan_path)]) == 2
    assert "give --inventory" in capsys.readouterr().err


def test_a_staged_swap_runs_and_its_hops_show_in_the_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`evac run` of a multi-hop plan: the result table, `evac status` and `--dry-run` show the hops."""
    monkeypatch.setattr(run_cmds.console, "width", 200)  # one line per row: the cells are not folded
    from planner.plan import PlanKind
    from tests._planner_fixtures import full_pair, plan_of, staged_swap

    inv_path = tmp_path / "inv.json"
    inv_path.write_text(json.dumps(full_pair().to_dict()))
    inv = load_inventory(inv_path).inventory
    plan = plan_of(inv, staged_swap(inv), drained=(), kind=PlanKind.TARGET, target={"x": "b", "y": "a"})
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(plan.to_json())
    journal = tmp_path / "run.db"
    run = ["run", str(plan_path), "--inventory", str(inv_path), "--simulate", "--speedup", "400"]
    assert main([*run, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "x (hop 2)" in out and "a → c (staging)" in out
    assert main([*run, "--journal", str(journal)]) == 0
    assert "a → c (staging) → b" in capsys.readouterr().out
    assert main(["status", str(journal)]) == 0
    assert "a → c (staging) → b" in capsys.readouterr().out
    assert main(["status", str(journal), "--json"]) == 0
    vms = {v["vm"]: v for v in json.loads(capsys.readouterr().out)["vms"]}
    assert vms["x"]["route"] == ["a", "c", "b"] and vms["x"]["state"] == "done" and "route" not in vms["y"]
    assert main([*run, "--journal", str(tmp_path / "other.db"), "--replan"]) == 0  # --replan re-plans any kind
