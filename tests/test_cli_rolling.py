"""`evac rolling`: the rounds table, the plans written to DIR (each checked, each runnable), bad input (exit 2,
nothing written), every file written atomically."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
from pathlib import Path

import pytest

from executor.cli.main import main
from planner.inventory import load_inventory
from tests.test_rolling import racks

EXPECTED = ["rolling.json", *(f"round-0{i}-{k}" for i in (1, 2)
                              for k in ("drain.json", "drained.inventory.json", "return.json"))]


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    p = tmp_path / "fleet.json"
    p.write_text(json.dumps(racks().to_dict()))
    return p


def test_by_rack_writes_each_rounds_plans_and_each_passes_evac_check(fleet: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "roll"
    assert main(["rolling", str(fleet), "--group-by", "rack", "--maintenance-min", "20", "-o", str(out)]) == 0
    table = capsys.readouterr().out
    assert "rolling maintenance (group-by rack): 2 rounds" in table and "total" in table
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPECTED)
    doc = json.loads((out / "rolling.json").read_text())
    assert doc["format"] == "evac-rolling/1" and doc["feasible"] and len(doc["rounds"]) == 2
    assert doc["total_s"] == pytest.approx(sum(r["drain_s"] + 1200 + r["return_s"] for r in doc["rounds"]), abs=0.01)
    for r in doc["rounds"]:
        drained = load_inventory(out / f"round-0{r['round']}-drained.inventory.json").inventory
        back = json.loads((out / r["return_plan"]).read_text())
        assert back["inventory_sha256"] == drained.sha256  # the predicted inventory reloads to the same digest
        assert json.loads((out / r["drain_plan"]).read_text())["inventory_path"] == str(fleet.absolute())
        for plan in (r["drain_plan"], r["return_plan"]):
            assert main(["check", str(out / plan)]) == 0, plan  # through its recorded inventory_path
    capsys.readouterr()


def test_the_plans_run_round_by_round_with_evac_run(fleet: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "roll"
    assert main(["rolling", str(fleet), "--group-by", "rack", "-o", str(out), "--json"]) == 0
    capsys.readouterr()
    for name in ("round-01-drain.json", "round-01-return.json"):
        assert main(["run", str(out / name), "--simulate", "--speedup", "500",
                     "--journal", str(tmp_path / f"{name}.db")]) == 0, name
    assert "done" in capsys.readouterr().out


def test_json_prints_the_roll_and_a_pinned_vm_makes_its_host_unrollable(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    inv = racks()
    inv = dataclasses.replace(inv, vms=tuple(dataclasses.replace(v, pinned=v.name == "b1-v1") for v in inv.vms))
    path = tmp_path / "pinned.json"
    path.write_text(json.dumps(inv.to_dict()))
    assert main(["rolling", str(path), "--max-hosts", "3"]) == 1
    text = capsys.readouterr().out
    line = next(x for x in text.splitlines() if x.startswith("cannot be emptied"))
    assert "b1" in line and "pinned" in line and "b1-v1" in line
    assert main(["rolling", str(path), "--max-hosts", "3", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert [u["host"] for u in doc["unrollable"]] == ["b1"] and not doc["feasible"]
    assert all(len(r["hosts"]) <= 3 for r in doc["rounds"])


@pytest.mark.parametrize("args, needle", [
    ([], "--group-by/--max-hosts"),
    (["--group-by", "row"], "no host has label 'row'"),
    (["--group-by", ""], "--group-by"),
    (["--max-hosts", "0"], "--max-hosts"),
    (["--max-hosts", "-3", "--maintenance-min", "nan"], "--maintenance-min"),
    (["--group-by", "rack", "--maintenance-min", "-1"], "--maintenance-min"),
    (["--group-by", "rack", "--maintenance-min", "1e9"], "--maintenance-min"),
    (["--max-hosts", "abc"], "--max-hosts"),
])
def test_bad_input_is_exit_2_and_writes_nothing(args: list[str], needle: str, fleet: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "roll"
    assert main(["rolling", str(fleet), *args, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err
    assert not out.exists()


def test_bad_files_are_exit_2_and_write_nothing(fleet: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "roll"
    assert main(["rolling", str(tmp_path / "nope.json"), "--group-by", "rack", "-o", str(out)]) == 2
    assert "nope.json" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text('{"version": 1, "hosts": [{"name": "h1"}], "vms": []}')
    assert main(["rolling", str(broken), "--group-by", "rack", "-o", str(out)]) == 2
    assert "hosts[0]" in capsys.readouterr().err
    assert not out.exists()
    a_file = tmp_path / "file"
    a_file.write_text("keep")
    assert main(["rolling", str(fleet), "--group-by", "rack", "-o", str(a_file)]) == 2
    assert "not a directory" in capsys.readouterr().err and a_file.read_text() == "keep"


def test_each_file_is_written_atomically(fleet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A write that fails leaves the previous file whole and no temporary file; rolling.json (the summary
    that says the folder is complete) comes last, so a failed write never leaves a summary of new plans."""
    out = tmp_path / "roll"
    out.mkdir()
    (out / "round-01-drain.json").write_text("old plan")
    (out / "rolling.json").write_text("old summary")
    real = os.replace

    def failing(src: str, dst: str) -> None:
        if Path(dst).name == "round-01-drained.inventory.json":
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    assert main(["rolling", str(fleet), "--group-by", "rack", "-o", str(out)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert json.loads((out / "round-01-drain.json").read_text())["kind"] == "drain"  # replaced whole, before
    assert (out / "rolling.json").read_text() == "old summary"
    assert sorted(p.name for p in out.iterdir()) == ["rolling.json", "round-01-drain.json"]  # no temp files
    monkeypatch.setattr(os, "replace", real)
    assert main(["rolling", str(fleet), "--group-by", "rack", "-o", str(out)]) == 0
    assert json.loads((out / "rolling.json").read_text())["format"] == "evac-rolling/1"


def test_report_of_a_roll_loads_in_chromium_and_shows_its_timeline(fleet: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np
    from PIL import Image

    from tests.browser import load
    from tests.test_cli_report import ARTIFACTS, _busy_tiles, _pixels_near

    out, page = tmp_path / "roll", tmp_path / "roll.html"
    assert main(["rolling", str(fleet), "--group-by", "rack", "--maintenance-min", "2", "-o", str(out)]) == 0
    assert main(["report", str(out / "rolling.json"), "--html", str(page)]) == 0
    text = page.read_text()
    for section in ("Rounds", "Timeline", "Migrations in flight", "Not rolled"):
        assert f"<h2>{section}</h2>" in text, section
    loaded = load(page, ARTIFACTS / "rolling-report.png", tmp_path / "profile")
    assert loaded.console == []
    img = np.asarray(Image.open(loaded.screenshot).convert("RGB"))
    assert _pixels_near(img, (31, 119, 180)) > 1000 and _pixels_near(img, (44, 160, 44)) > 1000  # drain, return bars
    assert _busy_tiles(img) > 15
    with capsys.disabled():
        print(f"\nrolling report screenshot: {loaded.screenshot}")


def test_report_refuses_a_damaged_roll_with_exit_2(fleet: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out, page = tmp_path / "roll", tmp_path / "roll.html"
    assert main(["rolling", str(fleet), "--group-by", "rack", "-o", str(out), "--json"]) == 0
    doc = json.loads((out / "rolling.json").read_text())
    doc["rounds"][1]["drain_s"] = "soon"
    del doc["rounds"][0]["phases"][1]["end_s"]
    (out / "rolling.json").write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["report", str(out / "rolling.json"), "--html", str(page)]) == 2
    err = capsys.readouterr().err
    assert "rounds[1].drain_s" in err and "rounds[0].phases[1]" in err and "Traceback" not in err
    assert not page.exists()


def test_the_printed_commands_are_quoted_for_a_shell(fleet: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "roll; touch pwned"  # a folder name a shell would split and run
    assert main(["rolling", str(fleet), "--group-by", "rack", "-o", str(out)]) == 0
    text = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    commands = [c for c in text.split("`") if c.startswith("evac run ")]
    assert len(commands) == 2
    for c in commands:
        argv = shlex.split(c)
        assert argv[:2] == ["evac", "run"] and len(argv) == 3 and Path(argv[2]).parent == out
