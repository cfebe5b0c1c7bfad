"""`evac plan` repairs and targets, `evac rebalance`: exit codes, tables, atomic outputs that check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executor.cli.main import main
from planner.plan import PlanKind, load_plan

CASES = Path(__file__).parent / "cases"


def _inventory(tmp_path: Path, case: str) -> Path:
    p = tmp_path / f"{case}.json"
    p.write_text(json.dumps(json.loads((CASES / f"{case}.json").read_text())["inventory"]))
    return p


def test_nothing_drained_and_nothing_broken_is_nothing_to_do(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plan.json"
    out.write_text("an older plan\n")  # must not be left for `evac run` to run by mistake
    inv = _inventory(tmp_path, "swap_full_hosts")
    assert main(["plan", str(inv), "-o", str(out)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    plan = load_plan(out)
    assert plan.kind is PlanKind.REPAIR and not plan.migrations and not plan.unplaced
    assert main(["check", str(inv), str(out)]) == 0


def test_plan_repairs_a_misplaced_vm_and_the_plan_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv, out = _inventory(tmp_path, "repair_cpu_feature"), tmp_path / "plan.json"
    assert main(["plan", str(inv), "-o", str(out), "--time-limit", "2"]) == 0
    doc = json.loads(out.read_text())
    assert doc["kind"] == "repair" and [m["vm"] for m in doc["migrations"]] == ["hpc"]
    assert main(["check", str(out)]) == 0


def test_drain_with_misplaced_vms_elsewhere_is_a_repair_that_also_drains(tmp_path: Path) -> None:
    inv, out = _inventory(tmp_path, "repair_cpu_feature"), tmp_path / "plan.json"
    assert main(["plan", str(inv), "--drain", "h2", "-o", str(out), "--time-limit", "2"]) == 0
    doc = json.loads(out.read_text())
    assert doc["kind"] == "repair" and doc["drained"] == ["h2"]
    assert {m["vm"] for m in doc["migrations"]} == {"hpc", "db"}


def test_plan_target_with_a_staging_hop_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv, out, target = _inventory(tmp_path, "swap_full_hosts"), tmp_path / "plan.json", tmp_path / "t.csv"
    target.write_text("vm,host\nx,b\ny,a\n")
    assert main(["plan", str(inv), "--target", str(target), "-o", str(out)]) == 0
    assert "staging hop" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["kind"] == "target" and [m["staging"] for m in doc["migrations"]].count(True) == 1
    assert main(["check", str(out)]) == 0


def test_a_bad_target_file_is_exit_2_and_no_plan_is_written(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    inv, out, target = _inventory(tmp_path, "swap_full_hosts"), tmp_path / "plan.json", tmp_path / "t.csv"
    out.write_text("old")
    target.write_text("x\nghost,a\n")
    assert main(["plan", str(inv), "--target", str(target), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "line 1" in err and "line 2" in err and "'ghost'" in err and "Traceback" not in err
    assert out.read_text() == "old"


def test_a_target_that_breaks_a_rule_is_explained_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv, target = _inventory(tmp_path, "target_placement"), tmp_path / "t.json"
    target.write_text(json.dumps({"batch": "h4", "db": "h3"}))
    assert main(["plan", str(inv), "--target", str(target)]) == 1
    assert "batch: target host h4 breaks a rule" in capsys.readouterr().out


def test_rebalance_prints_balance_ladder_and_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv, out = _inventory(tmp_path, "rebalance_anti_affinity"), tmp_path / "plan.json"
    assert main(["rebalance", str(inv), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "balance vs cost" in text and "most → least" in text and "spread 75.0% -> 0.0%" in text
    doc = json.loads(out.read_text())
    assert doc["kind"] == "rebalance" and doc["balance"]["after"]["spread_pct"] == 0.0
    assert main(["check", str(out)]) == 0


def test_rebalance_short_of_its_target_spread_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = _inventory(tmp_path, "rebalance_anti_affinity")
    assert main(["rebalance", str(inv), "--target-spread", "0", "--max-moves", "1"]) == 1
    assert "not reached: the best reachable is 50.0%" in capsys.readouterr().out


def test_rebalance_json_is_the_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rebalance", str(_inventory(tmp_path, "rebalance_anti_affinity")), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "rebalance"


def test_rebalance_bad_options_are_all_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = _inventory(tmp_path, "rebalance_anti_affinity")
    assert main(["rebalance", str(inv), "--metric", "disk", "--by", "guess", "--max-moves", "-1",
                 "--min-gain", "-2"]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in ("--metric", "--by", "--max-moves", "--min-gain")) and "Traceback" not in err
    assert main(["rebalance", str(inv), "--group-by", "rack"]) == 2
    assert "no host has label 'rack'" in capsys.readouterr().err


def test_rebalance_refuses_an_unwritable_output_before_the_work(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    inv = _inventory(tmp_path, "rebalance_anti_affinity")
    assert main(["rebalance", str(inv), "-o", str(tmp_path / "no" / "such" / "plan.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
