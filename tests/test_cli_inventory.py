"""`evac validate`, `evac inventory show`, `evac generate`, `evac schema` through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from executor.cli.main import main
from tests.test_inventory import DATA, valid_doc

REPO = Path(__file__).resolve().parent.parent


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("name", ["small.json", "medium.json", "hard.json", "small-csv"])
def test_every_sample_fleet_validates(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "validate", str(DATA / name))
    assert code == 0, err
    assert out.startswith("ok: ") and " hosts, " in out and err == ""


def test_csv_sample_is_the_json_sample() -> None:
    from planner.inventory import load_inventory

    assert load_inventory(DATA / "small-csv").inventory.sha256 == load_inventory(DATA / "small.json").inventory.sha256


def test_validate_lists_every_problem_and_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = valid_doc()
    doc["vms"][1]["memory_mib"] = -4
    doc["hosts"][0]["nic_gbps"] = "25G"
    doc["vms"][0]["memroy"] = 3
    path = tmp_path / "inv.json"
    path.write_text(json.dumps(doc))
    code, out, err = run(capsys, "validate", str(path))
    assert code == 2 and out == ""
    assert f"{path}: 2 problems" in err
    assert "vms[1].memory_mib: must be a positive integer, got -4" in err
    assert "hosts[0].nic_gbps: must be a number of Gbit/s, got the string '25G'" in err
    assert "vms[0].memroy: unknown key, ignored" in err
    assert "Traceback" not in err


def test_validate_prints_warnings_but_succeeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = valid_doc()
    doc["colour"] = "blue"
    path = tmp_path / "inv.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    code, out, err = run(capsys, "validate", str(path))
    assert code == 0 and out.startswith("ok: 3 hosts, 3 VMs")
    assert "warning: colour: unknown key, ignored" in err


def test_validate_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "validate", "/nonexistent/inv.json")
    assert code == 2 and "cannot read the file" in err


def test_inventory_show_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "inventory", "show", str(DATA / "small.json"))
    assert code == 0
    for text in ("r1-h01", "maintenance", "tor-r2", "total", "VMs"):
        assert text in out
    code, out, _ = run(capsys, "inventory", "show", str(DATA / "small.json"), "--json")
    doc = json.loads(out)
    assert code == 0 and len(doc["hosts"]) == 6 and len(doc["vms"]) == 40
    assert sum(h["vm_count"] for h in doc["hosts"]) == 40
    assert {"name", "memory_free_mib", "vcpus_used", "local_disk_free_gib", "state", "switch"} <= set(doc["hosts"][0])


def test_unreachable_hosts_are_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads((DATA / "small.json").read_text())
    doc["missing_hosts"] = [{"name": "r3-h01", "uri": "qemu+ssh://r3-h01/system", "reason": "timed out"}]
    path = tmp_path / "inv.json"
    path.write_text(json.dumps(doc))
    code, out, _ = run(capsys, "validate", str(path))
    assert code == 0 and "1 unreachable hosts" in out
    code, out, _ = run(capsys, "inventory", "show", str(path))
    assert code == 0 and "unreachable: r3-h01 (qemu+ssh://r3-h01/system): timed out" in out


def test_generate_to_stdout_and_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "generate", "--hosts", "8", "--vms", "30", "--racks", "2", "--seed", "5")
    assert code == 0
    doc = json.loads(out)
    assert len(doc["hosts"]) == 8 and len(doc["vms"]) == 30
    target = tmp_path / "fleet.json"
    code, out2, err = run(capsys, "generate", "--hosts", "8", "--vms", "30", "--racks", "2", "--seed", "5",
                          "--maintenance", "r1-h02", "-o", str(target))
    assert code == 0 and out2 == "" and "wrote" in err
    written = json.loads(target.read_text())
    assert [h["state"] for h in written["hosts"]].count("maintenance") == 1
    assert run(capsys, "validate", str(target))[0] == 0


def test_generate_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "generate", "--hosts", "2", "--racks", "3")
    assert code == 2 and "--racks" in err
    code, _, err = run(capsys, "generate", "--hosts", "4", "--racks", "2", "--maintenance", "h9")
    assert code == 2 and "no host named 'h9'" in err
    code, _, _ = run(capsys, "generate", "--hosts", "0")
    assert code == 2


def test_schema_prints_the_published_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "schema")
    schema = json.loads(out)
    assert code == 0 and schema == json.loads((REPO / "planner" / "inventory_schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)


def test_help_texts(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["validate", "--help"], ["inventory", "show", "--help"], ["generate", "--help"]):
        code, out, _ = run(capsys, *argv)
        assert code == 0 and "Usage" in out


@pytest.mark.parametrize("text", ['{"version": 1, "hosts": [{"name": "a"}], "vms": []}', "\x00\x01garbage"])
def test_subprocess_exit_2_no_traceback(tmp_path: Path, text: str) -> None:
    path = tmp_path / "inv.json"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "executor.cli.main", "validate", str(path)], capture_output=True,
                          text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and str(path) in proc.stderr


def test_subprocess_valid_file_exit_0() -> None:
    proc = subprocess.run([sys.executable, "-m", "executor.cli.main", "validate", str(DATA / "small.json")],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("ok: 6 hosts, 40 VMs")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "version")
    assert code == 0 and out.strip()
