"""`evac return JOURNAL`: a drain run on the simulated fleet, then the plan of kind return that sends its VMs
home (and runs); skipped VMs with their reasons; bad journals exit 2 without writing; nothing to do exits 0."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

from executor.cli.main import main
from executor.journal import Journal
from planner.inventory import load_inventory
from planner.model import Inventory
from planner.plan import load_plan
from planner.solve import make_plan
from tests.fleet import make_inventory


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out, out.err


def _drained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Inventory, Path, Path]:
    """h0's three VMs drained onto h1/h2 by `evac plan` + `evac run --simulate`: (inventory, plan, journal)."""
    inv = make_inventory(n_hosts=3, vms_per_host=3, drained=())
    inv_path, plan_path, journal = tmp_path / "inv.json", tmp_path / "plan.json", tmp_path / "run.db"
    inv_path.write_text(json.dumps(inv.to_dict()))
    code, out, err = _cli(capsys, "plan", str(inv_path), "--drain", "h0", "-o", str(plan_path), "--time-limit", "2")
    assert code == 0, out + err
    code, out, err = _cli(capsys, "run", str(plan_path), "--simulate", "--speedup", "2000", "--journal", str(journal))
    assert code == 0, out + err
    return inv, plan_path, journal


def _now(inv: Inventory, plan_path: Path, path: Path, **moves: str) -> Path:
    """The inventory after the run (every VM on its destination), with `moves` applied on top; written to `path`."""
    where = {m.vm: m.destination for m in load_plan(plan_path).migrations} | moves
    now = dataclasses.replace(inv, vms=tuple(dataclasses.replace(v, host=where.get(v.name, v.host)) for v in inv.vms))
    path.write_text(json.dumps(now.to_dict()))
    return path


def test_a_drained_run_returns_home_and_the_return_plan_runs(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    inv, plan_path, journal = _drained(tmp_path, capsys)
    now, out = _now(inv, plan_path, tmp_path / "now.json"), tmp_path / "return.json"
    code, stdout, err = _cli(capsys, "return", str(journal), "-i", str(now), "-o", str(out), "--time-limit", "2")
    assert code == 0, stdout + err
    plan = load_plan(out)
    moved = {m.vm for m in load_plan(plan_path).migrations}
    assert plan.kind.value == "return" and dict(plan.target) == dict.fromkeys(moved, "h0")
    assert {m.vm: m.destination for m in plan.migrations} == dict.fromkeys(moved, "h0")
    assert _cli(capsys, "check", str(out))[0] == 0  # plan.inventory_path names the -i inventory
    code, stdout, err = _cli(capsys, "run", str(out), "--simulate", "--speedup", "2000", "--journal",
                             str(tmp_path / "back.db"))
    assert code == 0, stdout + err
    with Journal.read(tmp_path / "back.db") as back:
        assert back.summary() == {"done": len(moved)}


def test_vms_moved_since_or_gone_are_skipped_with_a_reason_and_the_others_return(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv, plan_path, journal = _drained(tmp_path, capsys)
    first, second, third = sorted(m.vm for m in load_plan(plan_path).migrations)
    reached = {m.vm: m.destination for m in load_plan(plan_path).migrations}
    elsewhere = next(h for h in ("h1", "h2") if h != reached[first])
    now_path = _now(inv, plan_path, tmp_path / "now.json", **{first: elsewhere})
    doc = json.loads(now_path.read_text())
    doc["vms"] = [v for v in doc["vms"] if v["name"] != second]
    now_path.write_text(json.dumps(doc))
    out = tmp_path / "return.json"
    code, stdout, err = _cli(capsys, "return", str(journal), "-i", str(now_path), "-o", str(out), "--time-limit", "2")
    assert code == 0, stdout + err
    assert f"{first}: not sent home: moved since" in stdout and f"it is on {elsewhere} now" in stdout
    assert f"{second}: not sent home: gone" in stdout
    assert {m.vm for m in load_plan(out).migrations} == {third}


def test_nothing_to_return_is_nothing_to_do_and_writes_nothing(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    inv, _, journal = _drained(tmp_path, capsys)
    home, out = tmp_path / "home.json", tmp_path / "return.json"
    home.write_text(json.dumps(inv.to_dict()))  # every VM already back on h0
    code, stdout, _ = _cli(capsys, "return", str(journal), "-i", str(home), "-o", str(out))
    assert code == 0 and "nothing to do" in stdout and "already back on h0" in stdout
    assert not out.exists()


def _unfinished(path: Path) -> None:
    inv = make_inventory(n_hosts=2, vms_per_host=1, drained=())
    with Journal.open(path, make_plan(inv, ["h0"], time_limit_s=1)) as j:
        j.event("run_started", mode="default", resume=False)  # and the process died


@pytest.mark.parametrize("what", ["missing", "empty", "random bytes", "not sqlite of evac", "unfinished"])
def test_a_bad_journal_is_one_message_exit_2_and_no_plan_written(what: str, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    journal, out = tmp_path / "j.db", tmp_path / "return.json"
    if what == "empty":
        journal.write_bytes(b"")
    elif what == "random bytes":
        journal.write_bytes(bytes(range(256)) * 8)
    elif what == "not sqlite of evac":
        with contextlib.closing(sqlite3.connect(journal)) as db:
            db.execute("CREATE TABLE t (x)")
    elif what == "unfinished":
        _unfinished(journal)
    out.write_text("old")
    code, stdout, err = _cli(capsys, "return", str(journal), "-o", str(out), "-i", str(tmp_path / "inv.json"))
    assert code == 2, stdout + err
    assert str(journal) in err and err.count("evac:") == 1, err
    assert out.read_text() == "old"
    if what == "unfinished":
        assert "did not finish" in err


def test_live_without_the_runs_inventory_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv, plan_path, journal = _drained(tmp_path, capsys)
    inventory_path = Path(json.loads(plan_path.read_text())["inventory_path"])
    changed = load_inventory(inventory_path).inventory
    inventory_path.write_text(json.dumps(dataclasses.replace(changed, vms=changed.vms[1:]).to_dict()))
    code, stdout, err = _cli(capsys, "return", str(journal), "-o", str(tmp_path / "r.json"))
    assert code == 2 and "is not the inventory the run" in err and "-i INVENTORY" in err, stdout + err
    inventory_path.write_text(json.dumps(inv.to_dict()))  # the run's own, but its hosts have no URI
    code, stdout, err = _cli(capsys, "return", str(journal), "-o", str(tmp_path / "r.json"))
    assert code == 2 and "without a libvirt uri" in err, stdout + err
    assert not (tmp_path / "r.json").exists()
