"""Lab accuracy: how well evac's duration model predicts real migrations, before and after `evac calibrate`.

Six scenarios on the real libvirt lab (tests/lab/harness.py: 4 libvirtd "hosts" in network
namespaces, TCG memdirty guests), each draining h1: 4–10 guests of 64–512 MiB dirtying 0–16 MiB/s,
local (copied) and shared (NBD) disks, 3 or 4 hosts, NIC speeds set on paper so the planner's
per-migration caps land between 8 and 64 MiB/s. Every scenario is planned with evac's planner
(`make_plan`, as `evac plan`) and run for real with evac's runner (`run_plan` on the libvirt
hypervisor, as `evac run`), keeping its journal.

1. All six are planned with the default model and run, interleaved (calibration and held-out
   scenarios alternate, so a machine whose load drifts during the bench does not bias one half).
2. The CALIBRATION half (s1, s3, s5) is fitted (`evac calibrate`'s own code) into a model file.
3. The HELD-OUT half (s2, s4, s6) is judged: each migration's measured wall time (dispatch to
   verified, from its journal) against the duration each model gives it at its planned bandwidth, and
   the run's measured makespan against the makespan the executor's dispatch of those durations gives
   (`planner.monitor.dispatch_hop_times`: the runner starts migrations by free resources, in plan
   order), before (default model) and after (calibrated). Targets (issue 11): held-out makespan within
   10 %, every migration within 20 %.
4. Validation of `evac plan --model`: one more scenario (s7) planned WITH the calibrated model and run;
   its plan's own makespan and durations against what was measured.

Writes docs/lab-accuracy.md (linked from docs/benchmarks.md) unless --no-write. Needs root and the lab's
packages (tests/lab/harness.py `environment_problems`). Run: `.venv/bin/python bench/bench_lab_accuracy.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from executor.cli.calibrate_cmd import calibrate, fit_tables, with_model  # noqa: E402
from executor.collector import collect  # noqa: E402
from executor.journal import Journal  # noqa: E402
from executor.libvirt_hv import LibvirtHypervisor  # noqa: E402
from executor.reporter import Reporter  # noqa: E402
from executor.runner import RunOptions, run_plan  # noqa: E402
from planner.duration import DEFAULT_MODEL, DurationModel, model_document  # noqa: E402
from planner.migration_facts import vm_estimate  # noqa: E402
from planner.model import Inventory  # noqa: E402
from planner.monitor import dispatch_hop_times, hop_key  # noqa: E402
from planner.plan import Plan  # noqa: E402
from planner.solve import make_plan  # noqa: E402
from tests.lab.harness import Lab, LabDisk  # noqa: E402

DOC = ROOT / "docs" / "lab-accuracy.md"
MAKESPAN_TARGET = 0.10
MIGRATION_TARGET = 0.20


@dataclass(frozen=True, slots=True)
class Guest:
    memory_mib: int
    dirty_mibs: int
    disk: str = ""  # "", "local" (copied with copy-storage) or "shared" (NBD, not copied)


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    hosts: int
    nic_gbps: float  # on paper: NIC × migration_share 0.5 is what the migrations out of h1 share
    guests: tuple[Guest, ...]


G = Guest
SCENARIOS = (
    Spec("s1", 3, 0.27, (G(64, 0), G(96, 2), G(128, 4), G(64, 0, "shared"))),
    Spec("s2", 3, 0.54, (G(128, 8), G(128, 0), G(64, 4, "local"), G(192, 2), G(96, 0))),
    Spec("s3", 4, 0.8, (G(64, 0), G(64, 8), G(64, 2, "local"), G(128, 0), G(128, 4, "shared"), G(128, 8))),
    Spec("s4", 4, 1.07, (G(256, 16), G(512, 4), G(128, 0), G(64, 8, "shared"))),
    Spec("s5", 3, 0.4, (G(64, 0), G(64, 2), G(64, 4), G(64, 6), G(64, 8), G(64, 10), G(64, 12), G(64, 14))),
    Spec("s6", 4, 1.07, (G(64, 0), G(96, 4), G(128, 8), G(64, 16), G(128, 2, "local"), G(96, 0), G(64, 6),
                         G(128, 12), G(64, 0, "shared"), G(96, 4))),
)
CALIBRATE_ON = ("s1", "s3", "s5")
CHECK = Spec("s7", 4, 0.8, (G(128, 4), G(64, 0, "local"), G(192, 8), G(96, 2), G(64, 12, "shared"), G(128, 0)))


@dataclass
class Outcome:
    spec: Spec
    plan: Plan
    inventory: Inventory
    journal: Path
    measured: dict[tuple[str, int], float]  # wall time dispatch → verified
    makespan_s: float
    wall_s: float


def _start_guests(lab: Lab, spec: Spec) -> None:
    doms = []
    for i, g in enumerate(spec.guests):
        name = f"{spec.name}-{i}"
        disks: list[tuple[LabDisk, str]] = []
        if g.disk == "local":
            disks.append((lab.create_local_disk(1, f"{name}.qcow2", 32), "vda"))
        elif g.disk == "shared":
            disks.append((lab.create_shared_disk(name, 32), "vda"))
        doms.append(lab.define_guest(1, name, memory_mib=g.memory_mib, dirty_rate_mibs=g.dirty_mibs,
                                     wss_mib=min(16, g.memory_mib // 4), persistent=bool(g.disk), disks=disks))
    for dom in doms:
        lab.wait_ready(dom, timeout_s=180)


def _inventory(lab: Lab, spec: Spec) -> Inventory:
    result = collect([h.uri for h in lab.hosts[:spec.hosts]], dirty_rate=True, dirty_rate_seconds=1,
                     virt_type="qemu", hosts_file=lab.hosts_file)
    if result.failures:
        raise RuntimeError(f"collector could not read: {result.failures}")
    inv = result.inventory
    # Small guests at small caps run longer than the default 150 s/GiB completion timeout allows (64 MiB at
    # 8 MiB/s is 8 s, the timeout 9.4 s): the operator's setting for a slow link, not a model matter.
    policy = dataclasses.replace(inv.policy, completion_timeout_per_gib_s=3000.0)
    return dataclasses.replace(inv, policy=policy, hosts=tuple(dataclasses.replace(h, nic_gbps=spec.nic_gbps)
                                                                for h in inv.hosts))


def run_scenario(lab: Lab, spec: Spec, model: DurationModel, source: str | None, out: Path) -> Outcome:
    t0 = time.monotonic()
    lab.destroy_all_domains()
    _start_guests(lab, spec)
    inv = _inventory(lab, spec)
    plan = make_plan(inv, ["h1"], time_limit_s=10, model=model)
    if plan.unplaced or len(plan.migrations) != len(spec.guests):
        raise RuntimeError(f"{spec.name}: the planner left VMs unplaced: {plan.unplaced}")
    plan = with_model(plan, model, source)
    journal_path = out / f"{spec.name}.db"
    with Journal.open(journal_path, plan) as journal:
        hv = LibvirtHypervisor(inv, peer_uris={h.name: h.peer_uri for h in lab.hosts[:spec.hosts]},
                               allow_insecure_transport=True)
        result = run_plan(plan, inv, hv, journal, Reporter(), RunOptions())
    if not result.ok:
        raise RuntimeError(f"{spec.name}: the run did not succeed: {result.summary()}")
    reader = Journal.read(journal_path)
    try:
        measured = {(e["vm"], int(e.get("hop", 0))): float(e["ended_s"]) - float(e["dispatched_s"])
                    for e in reader.events("migration_measured")}
    finally:
        reader.close()
    return Outcome(spec, plan, inv, journal_path, measured, result.makespan_s, time.monotonic() - t0)


def _predicted(o: Outcome, model: DurationModel) -> tuple[dict[tuple[str, int], float], float]:
    """Each migration's duration under `model` at the plan's bandwidths, and the makespan the executor's
    dispatch of those durations gives."""
    p = o.inventory.policy
    durations = {hop_key(m): vm_estimate(o.inventory.vm[m.vm], m.bandwidth_mibs, p, model).duration_s
                 for m in o.plan.migrations}
    times = dispatch_hop_times(o.plan, o.inventory, duration_s=durations)
    return durations, max((end for _, end in times.values()), default=0.0)


def _err(predicted: float, measured: float) -> float:
    return (predicted - measured) / measured


def judge(o: Outcome, after: DurationModel) -> dict[str, object]:
    before, before_makespan = _predicted(o, DEFAULT_MODEL)
    calibrated, after_makespan = _predicted(o, after)
    rows = []
    for m in sorted(o.plan.migrations, key=lambda m: m.start_s):
        k = hop_key(m)
        rows.append({"vm": m.vm, "memory_mib": m.memory_mib, "disk_mib": m.disk_mib,
                     "dirty_mibs": o.inventory.vm[m.vm].dirty_rate_mibs, "cap_mibs": m.bandwidth_mibs,
                     "measured_s": o.measured[k], "before_s": before[k], "after_s": calibrated[k],
                     "planned_s": m.duration_s})
    return {"scenario": o.spec.name, "hosts": o.spec.hosts, "vms": len(o.spec.guests),
            "measured_makespan_s": o.makespan_s, "plan_makespan_s": o.plan.makespan_s,
            "before_makespan_s": before_makespan, "after_makespan_s": after_makespan,
            "migrations": rows, "wall_s": o.wall_s}


def _makespan_row(j: dict[str, object]) -> tuple[str, float]:
    ms, bs, as_ = (float(j[k]) for k in ("measured_makespan_s", "before_makespan_s",  # type: ignore[arg-type]
                                         "after_makespan_s"))
    ok = abs(_err(as_, ms)) <= MAKESPAN_TARGET
    return (f"| {j['scenario']} | {j['hosts']} | {j['vms']} | {ms:.1f} | {bs:.1f} | {_err(bs, ms):+.1%} | "
            f"{as_:.1f} | {_err(as_, ms):+.1%} | {'yes' if ok else 'NO'} |"), abs(_err(as_, ms))


def _migration_rows(j: dict[str, object], after_key: str) -> tuple[list[str], float, float]:
    lines, worst_before, worst_after = [], 0.0, 0.0
    for r in j["migrations"]:  # type: ignore[attr-defined]
        eb, ea = _err(r["before_s"], r["measured_s"]), _err(r[after_key], r["measured_s"])
        worst_before, worst_after = max(worst_before, abs(eb)), max(worst_after, abs(ea))
        size = f"{r['memory_mib']:g}" + (f" + {r['disk_mib']:.1f} disk" if r["disk_mib"] else "")
        lines.append(f"| {j['scenario']} | {r['vm']} | {size} | {r['dirty_mibs']:.1f} | {r['cap_mibs']:.1f} | "
                     f"{r['measured_s']:.2f} | {r['before_s']:.2f} | {eb:+.1%} | {r[after_key]:.2f} | {ea:+.1%} |")
    return lines, worst_before, worst_after


MIGRATION_HEADER = ["| scenario | VM | MiB | dirty MiB/s | cap MiB/s | measured s | before s | err | after s | err |",
                    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
MAKESPAN_HEADER = ["| scenario | hosts | VMs | measured s | before s | err | after s | err | within 10 % |",
                   "|---|---:|---:|---:|---:|---:|---:|---:|:---:|"]


def markdown(train: list[Outcome], judged: list[dict[str, object]], check: dict[str, object] | None,
             model: DurationModel, fitted: tuple[str, ...], rms: tuple[float, float], total_s: float,
             left_out: tuple[tuple[str, str], ...] = ()) -> str:
    load = os.getloadavg()
    lines = ["# Lab accuracy of the duration model", "",
             "Generated by `bench/bench_lab_accuracy.py` (do not edit by hand; the method is in its docstring). "
             "Real libvirt lab (tests/lab/harness.py): TCG memdirty guests on h1, drained by evac's planner "
             "(CP-SAT, 10 s) and runner, one journal per scenario; durations are wall times from dispatch to "
             "verified on the destination.", "",
             f"Machine: {platform.node()}, {os.cpu_count()} cores, {platform.machine()}, Python "
             f"{platform.python_version()}; load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
             f"(other work shared the machine); bench wall time {total_s:.0f} s.", "",
             "## Calibration", "",
             f"`evac calibrate` on {', '.join(o.spec.name for o in train)} "
             f"({sum(len(o.plan.migrations) for o in train)} migrations): RMS relative error per migration "
             f"{rms[0]:.1%} with the default model, {rms[1]:.1%} with the fitted one"
             + (f" (left out as outliers, planner/calibrate.py: "
                f"{'; '.join(f'{m}, {why}' for m, why in left_out)})" if left_out else "") + ".", "",
             "| constant | default | calibrated |", "|---|---:|---:|"]
    for name in ("fixed_cost_s", "copy_setup_s", "bandwidth_efficiency", "dirty_rate_factor", "resume_cost_ms"):
        note = "" if name in fitted else " (kept)"
        lines.append(f"| {name} | {getattr(DEFAULT_MODEL, name):g} | {getattr(model, name):g}{note} |")
    lines += ["", "## Held-out scenarios", "",
              "Makespan: measured (run clock, first dispatch to last verified) vs the executor's dispatch of each "
              "model's durations (before = default model, after = calibrated).", "", *MAKESPAN_HEADER]
    worst_makespan = 0.0
    for j in judged:
        row, err = _makespan_row(j)
        lines.append(row)
        worst_makespan = max(worst_makespan, err)
    lines += ["", "Per migration:", "", *MIGRATION_HEADER]
    worst_before = worst_after = 0.0
    for j in judged:
        rows, wb, wa = _migration_rows(j, "after_s")
        lines += rows
        worst_before, worst_after = max(worst_before, wb), max(worst_after, wa)
    lines += ["", f"Held-out: worst makespan error after calibration {worst_makespan:.1%} (target "
                  f"{MAKESPAN_TARGET:.0%}); worst migration error {worst_before:.1%} before, {worst_after:.1%} after "
                  f"(target {MIGRATION_TARGET:.0%}).", ""]
    if check is not None:
        ps, ms, bs = (float(check[k]) for k in ("plan_makespan_s", "measured_makespan_s",  # type: ignore[arg-type]
                                                "before_makespan_s"))
        rows, wb, wa = _migration_rows(check, "planned_s")
        lines += ["## A plan made with the calibrated model (`evac plan --model`), run", "",
                  f"{check['scenario']} ({check['hosts']} hosts, {check['vms']} VMs): the plan says {ps:.1f} s, the "
                  f"run took {ms:.1f} s ({_err(ps, ms):+.1%}); the same migrations under the default model would be "
                  f"dispatched in {bs:.1f} s ({_err(bs, ms):+.1%}). Worst migration: {wb:.1%} before, "
                  f"{wa:.1%} with the plan's own durations (after = the plan's).", "", *MIGRATION_HEADER, *rows, ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-write", action="store_true", help="print, do not write docs/lab-accuracy.md")
    ap.add_argument("--keep", type=Path, default=None, help="keep journals and the model file here")
    args = ap.parse_args()
    out = args.keep or Path(tempfile.mkdtemp(prefix="evac-lab-accuracy-"))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with Lab.up(hosts=max(s.hosts for s in (*SCENARIOS, CHECK)), lab_dir=out / "lab") as lab:
        print(f"lab up in {lab.up_seconds:.1f} s", flush=True)
        runs = []
        for spec in SCENARIOS:
            o = run_scenario(lab, spec, DEFAULT_MODEL, None, out)
            print(f"{spec.name}: {len(o.plan.migrations)} migrations, plan {o.plan.makespan_s:.1f} s, measured "
                  f"{o.makespan_s:.1f} s ({o.wall_s:.0f} s wall)", flush=True)
            runs.append(o)
        train = [o for o in runs if o.spec.name in CALIBRATE_ON]
        result = calibrate([o.journal for o in train])
        model_file = out / "model.json"
        model_file.write_text(json.dumps(model_document(result.model, result.summary()), indent=2) + "\n")
        from rich.console import Console

        for table in fit_tables(result):
            Console().print(table)
        judged = [judge(o, result.model) for o in runs if o.spec.name not in CALIBRATE_ON]
        o = run_scenario(lab, CHECK, result.model, model_file.name, out)
        check = judge(o, result.model)
        print(f"{CHECK.name} (planned with the calibrated model): plan {o.plan.makespan_s:.1f} s, measured "
              f"{o.makespan_s:.1f} s ({o.wall_s:.0f} s wall)", flush=True)
        lab.destroy_all_domains()
    text = markdown(train, judged, check, result.model, result.fitted, (result.rms(False), result.rms()),
                    time.monotonic() - t0, left_out=result.left_out)
    print(text)
    (out / "lab-accuracy.json").write_text(json.dumps({"held_out": judged, "check": check}, indent=2))
    if not args.no_write:
        DOC.write_text(text)
        print(f"written {DOC}; journals and model in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
