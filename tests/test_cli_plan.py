"""`evac plan` and `evac check`: exit codes, output, unknown hosts and labels, malformed plan files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executor.cli.main import main
from tests.fleet import make_inventory

CASES = Path(__file__).parent / "cases"


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    case = json.loads((CASES / "pinned_on_drained_host.json").read_text())
    p = tmp_path / "inv.json"
    p.write_text(json.dumps(case["inventory"]))
    return p


@pytest.fixture
def feasible(tmp_path: Path) -> Path:
    case = json.loads((CASES / "maintenance_host.json").read_text())
    p = tmp_path / "ok.json"
    p.write_text(json.dumps(case["inventory"]))
    return p


def test_plan_feasible_writes_a_plan_that_checks(feasible: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plan.json"
    assert main(["plan", str(feasible), "--drain", "h1", "-o", str(out), "--time-limit", "2"]) == 0
    text = capsys.readouterr().out
    assert "makespan" in text and "lower bound" in text and "wave" in text
    doc = json.loads(out.read_text())
    assert doc["version"] == 1 and set(doc["drained"]) == {"h1", "h2"}
    assert main(["check", str(feasible), str(out)]) == 0
    assert "ok:" in capsys.readouterr().out


def test_plan_infeasible_exits_1_and_names_the_reason(inventory: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(inventory), "--drain", "h1", "--time-limit", "2"]) == 1
    out = capsys.readouterr().out
    assert "license-server" in out and "pinned" in out


def test_plan_json_prints_the_plan(feasible: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(feasible), "--drain", "h1", "--json", "--time-limit", "2"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] in ("optimal", "feasible") and len(doc["migrations"]) == 2


def test_unknown_hosts_and_labels_are_all_named(feasible: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(feasible), "--drain", "nope", "--drain", "h9", "--drain-label", "rack=zz"]) == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "'h9'" in err and "rack=zz" in err and "Traceback" not in err


def test_baselines_table(feasible: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(feasible), "--drain", "h1", "--baselines", "--time-limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "sequential" in out and "kubevirt" in out


def test_check_reports_violations(feasible: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plan.json"
    assert main(["plan", str(feasible), "--drain", "h1", "-o", str(out), "--time-limit", "2"]) == 0
    doc = json.loads(out.read_text())
    doc["migrations"][0]["end_s"] = doc["migrations"][0]["start_s"] + 0.01  # shorter than the model allows
    out.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["check", str(feasible), str(out)]) == 1
    assert "duration" in capsys.readouterr().out


def test_check_malformed_plan_exits_2(feasible: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1, "migrations": "soon"}')
    assert main(["check", str(feasible), str(bad)]) == 2
    assert "migrations" in capsys.readouterr().err


def test_check_accepts_the_inventory_file_digest(feasible: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A plan written by another tool names its inventory by the file's SHA-256: same inventory."""
    import hashlib

    out = tmp_path / "plan.json"
    assert main(["plan", str(feasible), "--drain", "h1", "-o", str(out), "--time-limit", "2"]) == 0
    doc = json.loads(out.read_text())
    doc["inventory_sha256"] = hashlib.sha256(feasible.read_bytes()).hexdigest()
    out.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["check", str(feasible), str(out)]) == 0
    doc["inventory_sha256"] = "0" * 64  # names some other inventory: the checker says so
    out.write_text(json.dumps(doc))
    assert main(["check", str(feasible), str(out)]) == 1
    assert "inventory_sha256" in capsys.readouterr().out


def test_plan_for_another_fleet_is_one_short_message(feasible: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plan.json"
    assert main(["plan", str(feasible), "--drain", "h1", "-o", str(out), "--time-limit", "2"]) == 0
    doc = json.loads(out.read_text())
    for i, m in enumerate(doc["migrations"]):
        m["vm"] = f"elsewhere-{i}"
        m["destination"] = "nowhere"
    out.write_text(json.dumps(doc))
    capsys.readouterr()
    for command in (["check", str(feasible), str(out)], ["run", str(out), "-i", str(feasible), "--dry-run"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "VMs are not in the inventory" in err and "'nowhere'" not in err and "nowhere" in err
        assert len(err.splitlines()) <= 6, err


def test_plan_records_its_inventory_for_run_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`evac plan` writes `inventory_path` (absolute), so `evac run PLAN` and `evac check PLAN` need no
    inventory argument."""
    inv_path = tmp_path / "inv.json"
    inv_path.write_text(json.dumps(make_inventory(4, 3).to_dict()))
    plan_path = tmp_path / "plan.json"
    monkeypatch.chdir(tmp_path)  # a relative inventory argument is recorded absolute
    assert main(["plan", "inv.json", "--drain", "h0", "--time-limit", "5", "-o", str(plan_path)]) == 0
    assert json.loads(plan_path.read_text())["inventory_path"] == str(inv_path)
    monkeypatch.chdir(Path(__file__).parent)
    capsys.readouterr()
    assert main(["run", str(plan_path), "--dry-run"]) == 0
    assert "virsh migrate" in capsys.readouterr().out
    assert main(["check", str(plan_path)]) == 0
    assert main(["check", str(inv_path), str(plan_path)]) == 0  # the two-argument form is unchanged
