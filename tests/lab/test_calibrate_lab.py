"""`evac calibrate` from one real run on the lab: the runner journals what libvirt measured, the fit reads it.

Three memdirty guests (64–128 MiB, one dirtying memory, one with a copied local disk) drained from h1
at 24 MiB/s each by evac's runner on the real libvirt hypervisor; then `evac calibrate` on its journal.
No timing is asserted (benchmarks print): what libvirt measured is in the journal, every migration is
fitted, and a plan made with the model records it and passes the checker.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executor.cli.main import main
from executor.journal import Journal
from executor.runner import RunOptions, run_plan
from planner.checker import check_plan
from planner.duration import load_model
from planner.solve import make_plan
from tests.lab import evac_scenario as es
from tests.lab.harness import Lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(240)]

GUESTS = (
    es.GuestSpec("cal-a", 64, 0, 8, False, "h2"),
    es.GuestSpec("cal-b", 128, 4, 16, False, "h3"),
    es.GuestSpec("cal-c", 64, 0, 8, True, "h2", local_disk_mib=48),
)


def test_calibrate_from_one_real_run(lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sc = es.build(lab, GUESTS, cap_mibs=24.0)
    journal = tmp_path / "run.db"
    with Journal.open(journal, sc.plan) as j:
        result = run_plan(sc.plan, sc.inventory, es.hypervisor(lab, sc.inventory), j, es.BandwidthRecorder(),
                          RunOptions())
    assert result.ok, result.summary()
    es.assert_nothing_lost(sc, es.hypervisor(lab, sc.inventory))
    with Journal.read(journal) as j:
        measured = {e["vm"]: e for e in j.events("migration_measured")}
    assert set(measured) == {g.name for g in GUESTS}
    for e in measured.values():  # libvirt's completed-job statistics reached the journal
        assert e["transferred_mib"] > 0 and e["downtime_ms"] is not None and e["attempt"] == 1
        assert e["ended_s"] > e["migrate_started_s"] >= e["dispatched_s"]
    assert measured["cal-c"]["disk_mib"] > 0  # the copied disk is recorded (copy_setup_s is fitted from it)

    model_path = tmp_path / "model.json"
    assert main(["calibrate", str(journal), "-o", str(model_path), "--json"]) == 0
    fitted = json.loads(capsys.readouterr().out)
    assert {r["vm"] for r in fitted["residuals"]} == {g.name for g in GUESTS}
    assert {"fixed_cost_s", "copy_setup_s", "bandwidth_efficiency", "dirty_rate_factor"} <= set(fitted["fitted"])
    model = load_model(model_path)
    plan = make_plan(sc.inventory, ["h1"], time_limit_s=5, greedy_only=True, model=model)
    assert check_plan(sc.inventory, plan, model) == []
