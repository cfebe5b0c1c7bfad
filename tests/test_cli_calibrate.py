"""`evac calibrate`, model files, and plans that record their model (`--model`, `--site`).

Journals here are written through `Journal` with `migration_measured` events made from a known model
(the runner's own events are tested in tests/test_calibrate.py on the simulated fleet).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from executor.cli.main import main
from executor.journal import Journal
from planner.calibrate import Sample
from planner.duration import DEFAULT_MODEL, DurationModel, ModelFileError, load_model, model_document
from planner.inventory import load_inventory
from planner.model import VM, Host, HostState, Inventory, Policy
from planner.plan import load_plan
from planner.solve import make_plan

pytestmark = pytest.mark.timeout(120)

FAST = DurationModel(fixed_cost_s=0.25, bandwidth_efficiency=0.5, dirty_rate_factor=0.5, resume_cost_ms=30.0)
# Faster than the default model in every constant: a plan made with it is too short for the default.
QUICK = DurationModel(fixed_cost_s=0.1, dirty_rate_factor=0.5, resume_cost_ms=30.0)
SIZES = ((256, 0), (512, 4), (768, 8), (1024, 2), (384, 6))


def _inventory(tmp_path: Path) -> Path:
    hosts = tuple(Host(name=f"h{i}", cpus=64, memory_mib=65536, nic_gbps=2.0,
                       state=HostState.MAINTENANCE if i == 0 else HostState.UP) for i in range(3))
    vms = tuple(VM(name=f"v{k}", host="h0", vcpus=1, memory_mib=mem, uuid=f"00000000-0000-0000-0000-{k:012d}",
                   dirty_rate_mibs=dirty) for k, (mem, dirty) in enumerate(SIZES))
    inv = Inventory(hosts=hosts, vms=vms, policy=Policy(max_outbound_per_host=2, max_inbound_per_host=2))
    path = tmp_path / "inv.json"
    path.write_text(json.dumps(inv.to_dict()))
    return path


def _journal(tmp_path: Path, name: str = "j.db", model: DurationModel = FAST) -> Path:
    """A finished run's journal whose migrations took what `model` says (at the plan's bandwidths)."""
    inv = load_inventory(_inventory(tmp_path)).inventory
    plan = make_plan(inv, ["h0"], time_limit_s=5, greedy_only=True)
    path = tmp_path / name
    with Journal.open(path, plan) as journal:
        for m in plan.migrations:
            vm = inv.vm[m.vm]
            s = Sample(name, m.vm, vm.memory_mib, 0.0, vm.dirty_rate_mibs, m.bandwidth_mibs, 500.0, True, False, 1.0)
            duration, sent, downtime = s.predict(model)
            journal.event("migration_measured", m.vm, hop=0, attempt=1, dispatched_s=1.0, migrate_started_s=1.1,
                          ended_s=1.0 + duration, migrate_s=duration - 0.2, transferred_mib=sent, downtime_ms=downtime,
                          memory_mib=vm.memory_mib, disk_mib=0.0, dirty_rate_mibs=vm.dirty_rate_mibs,
                          bandwidth_mibs=m.bandwidth_mibs, max_downtime_ms=500.0, live=True, auto_converge=False,
                          escalations=0, iterations=3, measured_rate_mibs=None, measured_dirty_mibs=None)
    return path


def test_calibrate_writes_the_fitted_model_and_prints_residuals(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    journal = _journal(tmp_path)
    out = tmp_path / "model.json"
    assert main(["calibrate", str(journal), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "bandwidth_efficiency" in text and "v0" in text and "RMS error" in text
    model = load_model(out)
    assert model.bandwidth_efficiency == pytest.approx(0.5, abs=0.02)
    assert model.fixed_cost_s == pytest.approx(0.25, abs=0.05)
    doc = json.loads(out.read_text())
    assert doc["version"] == 1 and doc["fit"]["migrations"] == len(SIZES)
    assert main(["calibrate", str(journal), "--json"]) == 0
    fitted = json.loads(capsys.readouterr().out)
    assert len(fitted["residuals"]) == len(SIZES) and abs(fitted["residuals"][0]["after_error"]) < 0.02


def test_calibrate_names_every_bad_journal_and_writes_nothing(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    good = _journal(tmp_path)
    foreign = tmp_path / "notes.db"
    foreign.write_bytes(b"not a database at all" * 10)
    empty_run = tmp_path / "empty.db"
    inv = load_inventory(_inventory(tmp_path)).inventory
    Journal.open(empty_run, make_plan(inv, ["h0"], time_limit_s=5, greedy_only=True)).close()
    out = tmp_path / "model.json"
    out.write_text("previous model\n")
    code = main(["calibrate", str(good), str(tmp_path / "missing.db"), str(foreign), str(empty_run), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "missing.db" in err and "notes.db" in err and "records no measured migration" in err
    assert "3 problems" in err and "Traceback" not in err
    assert out.read_text() == "previous model\n"


def test_calibrate_refuses_a_journal_whose_measurements_are_malformed(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    inv = load_inventory(_inventory(tmp_path)).inventory
    path = tmp_path / "bad.db"
    with Journal.open(path, make_plan(inv, ["h0"], time_limit_s=5, greedy_only=True)) as journal:
        journal.event("migration_measured", "v0", attempt=1, dispatched_s="soon", ended_s=3.0)
    assert main(["calibrate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "migration_measured event 1" in err and "dispatched_s" in err and "memory_mib" in err


def test_a_retried_or_escalated_migration_is_not_fitted(tmp_path: Path) -> None:
    from executor.cli.calibrate_cmd import journal_samples

    journal = _journal(tmp_path)
    with Journal.read(journal) as j:
        n = len(j.events("migration_measured"))
    conn = __import__("sqlite3").connect(journal)
    with conn:
        conn.execute("UPDATE event SET data = json_set(data, '$.attempt', 2) WHERE vm = 'v0'")
        conn.execute("UPDATE event SET data = json_set(data, '$.escalations', 1) WHERE vm = 'v1'")
    conn.close()
    problems: list = []
    names = {s.vm for s in journal_samples(journal, problems)}
    assert not problems and len(names) == n - 2 and not {"v0", "v1"} & names


def test_model_files_name_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": 2, "constants": {"fixed_cost_s": -1, "bandwidth_efficiency": 1.5,
                                                           "max_rounds": 2.5, "warp": 9, "dirty_rate_factor": "x"},
                               "extra": 1}))
    with pytest.raises(ModelFileError) as e:
        load_model(bad)
    text = str(e.value)
    for where in ("version", "constants.fixed_cost_s", "constants.bandwidth_efficiency", "constants.max_rounds",
                  "constants.warp", "constants.dirty_rate_factor", "extra"):
        assert where in text
    assert "7 problems" in text
    twice = tmp_path / "twice.json"
    twice.write_text('{"version": 1, "constants": {"fixed_cost_s": 1, "fixed_cost_s": 2}}')
    with pytest.raises(ModelFileError, match="given twice"):
        load_model(twice)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(model_document(FAST)))
    assert load_model(good) == FAST
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"version": 1, "constants": {"fixed_cost_s": 0.3}}))
    assert load_model(partial) == dataclasses.replace(DEFAULT_MODEL, fixed_cost_s=0.3)


def test_plan_with_a_bad_model_exits_2_and_writes_no_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1, "constants": {"fixed_cost_s": "fast"}}')
    out = tmp_path / "plan.json"
    assert main(["plan", str(_inventory(tmp_path)), "--model", str(bad), "-o", str(out), "--greedy"]) == 2
    assert "constants.fixed_cost_s" in capsys.readouterr().err
    assert not out.exists()
    assert main(["plan", str(_inventory(tmp_path)), "--model", str(tmp_path / "none.json"), "--greedy"]) == 2


def _plan_with_quick_model(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(model file, inventory, plan made with `evac plan --model`)."""
    model = tmp_path / "model.json"
    model.write_text(json.dumps(model_document(QUICK)))
    inv = _inventory(tmp_path)
    out = tmp_path / "plan.json"
    assert main(["plan", str(inv), "--model", str(model), "-o", str(out), "--greedy"]) == 0
    return model, inv, out


def test_a_plan_made_with_a_model_records_it_and_the_checker_holds_it_to_it(tmp_path: Path) -> None:
    model, inv, out = _plan_with_quick_model(tmp_path)
    doc = json.loads(out.read_text())
    assert doc["model"]["source"] == str(model) and doc["model"]["constants"]["fixed_cost_s"] == 0.1
    plan = load_plan(out)
    assert plan.model == QUICK
    default_plan = tmp_path / "default.json"
    assert main(["plan", str(inv), "-o", str(default_plan), "--greedy"]) == 0
    assert "model" not in json.loads(default_plan.read_text())  # the default model: nothing recorded
    assert load_plan(default_plan).makespan_s > plan.makespan_s  # 1.75 s of fixed cost each: longer
    assert main(["check", str(inv), str(out)]) == 0
    # Without its model the same schedule is too short for the default model: the checker judges a plan
    # by the model it records.
    stripped = tmp_path / "stripped.json"
    del doc["model"]
    stripped.write_text(json.dumps(doc))
    assert main(["check", str(inv), str(stripped)]) == 1


def test_the_site_configuration_names_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "lab-model.json").write_text(json.dumps(model_document(QUICK)))
    site = tmp_path / "site.yaml"
    site.write_text("model: lab-model.json\n")
    out = tmp_path / "plan.json"
    assert main(["plan", str(_inventory(tmp_path)), "--site", str(site), "-o", str(out), "--greedy"]) == 0
    assert load_plan(out).model == QUICK
    site.write_text("model: nowhere.json\nhosts: {}\n")
    assert main(["plan", str(_inventory(tmp_path)), "--site", str(site), "--greedy"]) == 2
    assert "nowhere.json" in capsys.readouterr().err


def test_a_plans_model_object_is_read_with_every_problem_named(tmp_path: Path) -> None:
    from planner.errors import PlanFileError

    _, _, out = _plan_with_quick_model(tmp_path)
    doc = json.loads(out.read_text())
    doc["model"] = {"constants": {"fixed_cost_s": -2, "warp": 1}, "source": 3, "why": "x"}
    out.write_text(json.dumps(doc))
    with pytest.raises(PlanFileError) as e:
        load_plan(out)
    for where in ("model.constants.fixed_cost_s", "model.constants.warp", "model.source", "model.why"):
        assert where in str(e.value)


def test_the_simulated_fleet_follows_the_plans_model(tmp_path: Path) -> None:
    _, inv, plan_path = _plan_with_quick_model(tmp_path)
    journal = tmp_path / "run.db"
    assert main(["run", str(plan_path), "--simulate", "--speedup", "10", "--journal", str(journal), "--json"]) == 0
    plan = load_plan(plan_path)
    inventory = load_inventory(inv).inventory
    with Journal.read(journal) as j:
        measured = {e["vm"]: e["migrate_s"] for e in j.events("migration_measured")}
    for m in plan.migrations:
        vm = inventory.vm[m.vm]
        s = Sample("", m.vm, vm.memory_mib, 0.0, vm.dirty_rate_mibs, m.bandwidth_mibs, 500.0, True, False, 1.0)
        quick, default = s.predict(QUICK)[0], s.predict(DEFAULT_MODEL)[0]  # the default's is ≥ 1.65 s longer
        # At least the plan's model's time; nearer it than the default's (the runner's own lag only adds).
        assert quick - 0.05 <= measured[m.vm] < (quick + default) / 2
