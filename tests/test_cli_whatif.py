"""`evac whatif`: the comparison table, sweeps equal to `evac plan`, bad input (exit 2), Dask (local and real)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
MEDIUM = ROOT / "data" / "medium.json"
CASES = Path(__file__).parent / "cases"


def _json(capsys: pytest.CaptureFixture[str], argv: list[str], code: int) -> dict:  # type: ignore[type-arg]
    assert main(argv) == code
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def pinned(tmp_path: Path) -> Path:
    """h1 holds a pinned VM (license-server) and web; h2 holds db (a copy of web), which can move to h1."""
    inv = json.loads((CASES / "pinned_on_drained_host.json").read_text())["inventory"]
    web = next(v for v in inv["vms"] if v["name"] == "web")
    inv["vms"].append({**web, "name": "db", "host": "h2"})
    inv["vms"] = [{k: x for k, x in v.items() if k != "uuid"} for v in inv["vms"]]
    p = tmp_path / "pinned.json"
    p.write_text(json.dumps(inv))
    return p


def test_each_label_rack_on_medium_has_a_row_per_rack_with_the_makespan_of_evac_plan(
        capsys: pytest.CaptureFixture[str]) -> None:
    doc = _json(capsys, ["whatif", str(MEDIUM), "--each-label", "rack", "--serial", "--json"], 0)
    rows = {s["scenario"]: s for s in doc["scenarios"]}
    assert list(rows) == [f"drain-label=rack=r{i}" for i in range(1, 5)]
    for rack in ("r1", "r2", "r3", "r4"):
        row = rows[f"drain-label=rack={rack}"]
        assert row["feasible"]
        plan = _json(capsys, ["plan", str(MEDIUM), "--drain-label", f"rack={rack}", "--greedy", "--json"], 0)
        assert row["makespan_s"] == plan["makespan_s"], rack
        assert row["lower_bound_s"] == pytest.approx(plan["lower_bound_s"], abs=1e-3)  # the plan file rounds
        assert row["vms_moved"] == len(plan["migrations"])


def test_pinned_host_is_infeasible_with_the_pinned_reason_and_an_emptiable_host_shows_its_time(
        pinned: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["whatif", str(pinned), "--each-host", "--processes", "1"]) == 1  # on the local Dask cluster
    table = capsys.readouterr().out
    assert "local Dask cluster" in table
    line_h1 = next(line for line in table.splitlines() if "drain=h1 " in line)
    assert "NO" in line_h1 and "pinned" in line_h1
    doc = _json(capsys, ["whatif", str(pinned), "--each-host", "--serial", "--json"], 1)
    rows = {s["scenario"]: s for s in doc["scenarios"]}
    assert not rows["drain=h1"]["feasible"] and "pinned" in rows["drain=h1"]["blockers"][0]["reason"]
    assert rows["drain=h2"]["feasible"] and rows["drain=h2"]["vms_moved"] == 1
    assert rows["drain=h2"]["makespan_s"] > 0
    line_h2 = next(line for line in table.splitlines() if "drain=h2 " in line)
    assert "yes" in line_h2 and f"{rows['drain=h2']['makespan_s']:.1f}" in line_h2


def test_scenarios_compare_in_one_table_and_write_json_and_csv_atomically(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    argv = ["whatif", str(MEDIUM), "--serial", "-s", "drain=r1-h01", "-s", "drain=r1-h01+migration-share=0.25",
            "-s", "fail=r1-h02", "-s", "add-hosts=2:cpus=64,memory_gib=512,rack=r1+drain-label=rack=r1"]
    assert main([*argv, "-o", str(out_json)]) == 1  # fail=r1-h02 strands VMs with local disks
    table = capsys.readouterr().out
    assert "drain=r1-h01+migration-share=0.25" in table and "restarted" in table
    doc = json.loads(out_json.read_text())
    rows = {s["scenario"]: s for s in doc["scenarios"]}
    assert rows["drain=r1-h01+migration-share=0.25"]["makespan_s"] > rows["drain=r1-h01"]["makespan_s"]
    assert rows["fail=r1-h02"]["plan"] is None and rows["fail=r1-h02"]["vms_restarted"] > 0
    assert main([*argv, "--csv", "-o", str(out_csv)]) == 1
    printed = capsys.readouterr().out
    assert out_csv.read_text() == printed and printed.splitlines()[0].startswith("scenario,feasible,")
    assert len(printed.splitlines()) == 5


@pytest.mark.parametrize("argv, needles", [
    (["-s", "bogus=1", "-s", "drain=nohost", "-s", "drain-label=rack=r9"],
     ["--scenario 1 'bogus=1': unknown kind", "--scenario 2 'drain=nohost': drain: unknown host 'nohost'",
      "no host has label rack=r9"]),
    (["--each-host", "--scheduler", "http://127.0.0.1:8786"], ["--scheduler", "not tcp://HOST:PORT"]),
    (["--each-host", "--scheduler", "tcp://127.0.0.1"], ["not tcp://HOST:PORT"]),
    (["--each-host", "--scheduler", "tcp://127.0.0.1:99999"], ["port 99999"]),
    (["--each-host", "--each-label", "rack"], ["exactly one of"]),
    (["--each-label", "nope"], ["no host has label 'nope'"]),
    (["--host-failures", "0"], ["--host-failures: must be from 1", "got 0"]),
    (["--each-host", "--time-limit", "0", "--processes", "0"], ["--time-limit", "--processes"]),
])
def test_bad_input_exits_2_naming_every_problem_and_writes_nothing(
        argv: list[str], needles: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "never.json"
    assert main(["whatif", str(MEDIUM), *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    for needle in needles:
        assert needle in err, (needle, err)
    assert "Traceback" not in err and not out.exists()


def test_output_that_cannot_be_written_is_refused_before_the_sweep(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["whatif", str(MEDIUM), "--each-label", "rack", "--serial", "-o",
                 str(tmp_path / "missing" / "r.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_an_unreachable_scheduler_is_an_environment_problem(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import executor.whatif_runner as runner

    monkeypatch.setattr(runner, "CONNECT_TIMEOUT_S", 1.0)
    assert main(["whatif", str(MEDIUM), "--each-label", "rack", "--scheduler", f"tcp://127.0.0.1:{_free_port()}"]) == 3
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[str]:
    """A real `dask scheduler` and one `dask worker` on 127.0.0.1 (random free ports), torn down after."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the workers import this checkout's planner
    dask = str(Path(sys.executable).with_name("dask"))
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        procs.append(subprocess.Popen([dask, "worker", address, "--no-nanny", "--nthreads", "1",
                                       "--no-dashboard", "--worker-port", str(_free_port())],
                                      cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(address, timeout=5) as client:
                    client.wait_for_workers(1, timeout=60)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield address
    finally:  # the worker first (it says goodbye to the scheduler), then the scheduler
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_a_sweep_on_a_real_dask_scheduler_and_worker_equals_the_serial_sweep(
        dask_cluster: str, pinned: Path, capsys: pytest.CaptureFixture[str]) -> None:
    serial = _json(capsys, ["whatif", str(pinned), "--each-host", "--serial", "--json"], 1)
    remote = _json(capsys, ["whatif", str(pinned), "--each-host", "--scheduler", dask_cluster, "--json"], 1)
    assert remote["mode"] == serial["mode"] == "each-host" and len(remote["scenarios"]) == 2

    def rows(doc: dict) -> list[dict]:  # type: ignore[type-arg]
        return [{k: v for k, v in s.items() if k not in ("solve_s",)} | {"plan": None} for s in doc["scenarios"]]

    assert rows(remote) == rows(serial)
    assert [s["plan"]["migrations"] for s in remote["scenarios"]] == [s["plan"]["migrations"]
                                                                     for s in serial["scenarios"]]
