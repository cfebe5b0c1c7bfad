"""Every command that reads a URI or a name applies the same rules (planner.uri_rules, planner.inventory):
`validate`, `plan`, `run --dry-run`, `run --simulate`, `--peer-uri`; and `--dry-run` prints commands a shell
reads back exactly (issue 8, items 3 and 4)."""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from pathlib import Path

import pytest

from executor.cli import run_cmds
from executor.cli.main import main
from planner.inventory import load_inventory
from planner.model import Inventory
from tests.fleet import greedy_plan, make_inventory

pytestmark = pytest.mark.timeout(120)

DANGEROUS_URIS = [
    "qemu+ext:///system",
    "qemu+ssh://h0/system?command=/bin/sh",
    "qemu+tls://h0/system?no_verify=1",
    "qemu+ssh://user:pass@h0/system",
    "qemu+ssh://h0/system?known_hosts_verify=ignore",
    "not a uri at all",
]


def _write(inv: Inventory, path: Path) -> Path:
    path.write_text(json.dumps(inv.to_dict()))
    return path


@pytest.fixture
def good(tmp_path: Path) -> tuple[Path, Path]:
    """A valid inventory whose hosts have safe URIs, and a plan for it."""
    base = make_inventory(3, 2)
    inv = replace(base, hosts=tuple(replace(h, uri=f"qemu+ssh://{h.name}.example.net/system") for h in base.hosts))
    inv_path = _write(inv, tmp_path / "inv.json")
    plan = greedy_plan(load_inventory(inv_path).inventory)
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(plan.to_json())
    return inv_path, plan_path


def _with_uri(inv_path: Path, uri: str, out: Path, host: int = 1) -> Path:
    doc = json.loads(inv_path.read_text())
    doc["hosts"][host]["uri"] = uri
    out.write_text(json.dumps(doc))
    return out


def _commands(inv: Path, plan: Path) -> dict[str, list[str]]:
    return {"validate": ["validate", str(inv)],
            "plan": ["plan", str(inv), "--drain", "h0", "-o", str(plan.with_suffix(".new.json"))],
            "run --dry-run": ["run", str(plan), "--inventory", str(inv), "--dry-run"],
            "run --simulate": ["run", str(plan), "--inventory", str(inv), "--simulate", "--speedup", "500",
                               "--journal", str(plan.with_suffix(".db"))]}


@pytest.mark.parametrize("uri", DANGEROUS_URIS)
def test_a_dangerous_inventory_uri_is_refused_by_every_command(uri: str, good: tuple[Path, Path], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    inv_path, plan_path = good
    bad = _with_uri(inv_path, uri, tmp_path / "bad.json")
    for name, argv in _commands(bad, plan_path).items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        assert "hosts[1].uri" in err and "Traceback" not in err, (name, err)
    assert not plan_path.with_suffix(".new.json").exists() and not plan_path.with_suffix(".db").exists()


@pytest.mark.parametrize("uri", DANGEROUS_URIS)
def test_a_dangerous_peer_uri_is_refused_in_every_mode(uri: str, good: tuple[Path, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    inv_path, plan_path = good
    for mode in ("--dry-run", "--simulate"):
        assert main(["run", str(plan_path), "--inventory", str(inv_path), mode, "--peer-uri", f"h1={uri}",
                     "--journal", str(plan_path.with_suffix(".db"))]) == 2, mode
        err = capsys.readouterr().err
        assert "--peer-uri h1" in err and "Traceback" not in err, err
    assert not plan_path.with_suffix(".db").exists()


def test_a_peer_uri_for_an_unknown_host_is_refused(good: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    inv_path, plan_path = good
    assert main(["run", str(plan_path), "--inventory", str(inv_path), "--dry-run",
                 "--peer-uri", "nosuch=qemu+ssh://x/system"]) == 2
    assert "nosuch" in capsys.readouterr().err


def test_tcp_in_an_inventory_warns_at_validate_and_run_refuses_it_without_the_flag(
        good: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An operator's lab may use qemu+tcp: the inventory is valid (a warning), every mode of `evac run`
    applies the real run's rule (refused unless --allow-insecure-transport in that run)."""
    inv_path, _ = good
    lab = _with_uri(inv_path, "qemu+tcp://10.77.0.12/system", tmp_path / "lab.json")
    plan_path = tmp_path / "lab-plan.json"
    plan_path.write_text(greedy_plan(load_inventory(lab).inventory).to_json())
    assert main(["validate", str(lab)]) == 0
    err = capsys.readouterr().err
    assert "hosts[1].uri" in err and "tcp" in err and "--allow-insecure-transport" in err
    for mode in (["--dry-run"], ["--simulate", "--speedup", "500", "--journal", str(tmp_path / "j.db")]):
        assert main(["run", str(plan_path), "--inventory", str(lab), *mode]) == 2
        err = capsys.readouterr().err
        assert "hosts[1].uri (h1)" in err and "--allow-insecure-transport" in err
        assert not (tmp_path / "j.db").exists()
    assert main(["run", str(plan_path), "--inventory", str(lab), "--dry-run", "--allow-insecure-transport"]) == 0


HOSTILE_NAMES = ["db;rm -rf /", "$(touch x)", "`touch y` && echo 'it''s' \"q\" > /tmp/z", "a b\\c*?[x]{1,2}~",
                 "[bold]db[/bold]"]


def test_dry_run_commands_read_back_as_the_same_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    base = make_inventory(3, len(HOSTILE_NAMES), local_disk_every=2)
    renames = {v.name: HOSTILE_NAMES[i] for i, v in enumerate(v for v in base.vms if v.host == "h0")}
    inv = replace(base, vms=tuple(replace(v, name=renames.get(v.name, v.name)) for v in base.vms))
    inv_path = _write(inv, tmp_path / "inv.json")
    plan = greedy_plan(load_inventory(inv_path).inventory)
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(plan.to_json())
    monkeypatch.setattr(run_cmds, "_hypervisor", lambda *a: pytest.fail("no hypervisor in a dry run"))
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(plan_path), "--inventory", str(inv_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    lines = [line.split(". ", 1)[1] for line in out.splitlines() if ". virsh " in line]
    assert len(lines) == len(plan.migrations) == len(HOSTILE_NAMES)
    seen = set()
    for line in lines:
        words = shlex.split(line)
        assert words.count("&&") == 1, line  # the only unquoted && is evac's own
        cut = words.index("&&")
        setdowntime, migrate = words[:cut], words[cut + 1:]
        assert setdowntime[:2] == ["virsh", "migrate-setmaxdowntime"] and migrate[:2] == ["virsh", "migrate"]
        name = setdowntime[2]
        assert name in HOSTILE_NAMES and migrate[-2] == name, line
        assert len(setdowntime) == 4  # VM name and downtime: nothing split, nothing added
        seen.add(name)
    assert seen == set(HOSTILE_NAMES)
    assert "[bold]db[/bold]" in out.split("the same, as virsh commands:")[0]  # the table shows it, not bold
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists() and not Path("/tmp/z").exists()
