"""Hostile plan files, generated: plan documents edited at random (`evac check`) and damaged bytes (`evac run
--dry-run`), in-process.

Always: exit 0, 1 (`check` listing the rules broken) or 2 naming the plan file; never a traceback; a dry run
never writes a journal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner.documents import read_document
from planner.errors import InputError
from planner.inventory import load_inventory
from tests.fleet import greedy_plan, make_inventory
from tests.hostile import (
    assert_refusal_names,
    count,
    dumps,
    hostile_settings,
    mangled_bytes,
    mutated_document,
    report_cases,
    run_cli,
)

__all__ = ["report_cases"]
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("fleet")
    inv = folder / "inventory.json"
    inv.write_text(json.dumps(make_inventory(3, 2, local_disk_every=3).to_dict()))
    plan = greedy_plan(load_inventory(inv).inventory)
    return inv, plan.to_dict()


PLAN_DOC = greedy_plan(make_inventory(3, 2, local_disk_every=3)).to_dict()


@hostile_settings(1500)
@given(doc=mutated_document(PLAN_DOC))
def test_edited_plans_are_checked_or_refused(doc: Any, fleet: tuple[Path, dict[str, Any]], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    count("plan edited (check)")
    inv, _ = fleet
    path = tmp_path / "plan.json"
    path.write_text(dumps(doc))
    code, out, err = run_cli(["check", str(inv), str(path)], capsys)
    assert code in (0, 1, 2), err
    if code == 2:
        assert_refusal_names(err, str(path), str(inv))
    elif code == 1:
        assert "violations" in out and "Traceback" not in err
    else:
        assert out.startswith("ok:")


@hostile_settings(900)
@given(data=st.data())
def test_damaged_plan_bytes_in_a_dry_run(data: st.DataObject, fleet: tuple[Path, dict[str, Any]], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    count("plan bytes (run --dry-run)")
    inv, doc = fleet
    path = tmp_path / "plan.json"
    # Every kind of damage, stray characters that leave valid JSON naming other hosts included: run checks the
    # plan on load, so those are refused like any other bad plan.
    text = json.dumps(doc, indent=data.draw(st.sampled_from([None, 1])))
    path.write_bytes(data.draw(mangled_bytes(text)))
    code, out, err = run_cli(["run", str(path), "-i", str(inv), "--dry-run"], capsys)
    assert code in (0, 2), err
    if code == 2:
        assert_refusal_names(err, str(path))
    else:
        assert "virsh migrate" in out
    assert not Path(f"{path}.journal").exists()


@hostile_settings(1300)
@given(raw=st.one_of(st.binary(max_size=300), st.text(alphabet='{}[]:,"0123456789.eE-+ntrufals\\ \n\t&*!-#|>\'a',
                                                      max_size=200).map(str.encode)),
       yaml_syntax=st.booleans())
def test_the_one_reader_raises_only_input_errors(raw: bytes, yaml_syntax: bool) -> None:
    """Any bytes at all, as JSON or YAML: plain data or an InputError naming a problem, nothing else."""
    count("reader bytes")
    try:
        doc, _ = read_document(raw, "doc", yaml_syntax=yaml_syntax)
    except InputError as e:
        assert e.problems and all(str(p) for p in e.problems)
        return
    json.dumps(doc, default=str)  # plain data: dicts, lists and scalars


def test_a_path_outside_the_topology_is_refused_by_run(fleet: tuple[Path, dict[str, Any]], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    inv, doc = fleet
    doc = json.loads(json.dumps(doc))
    doc["migrations"][0]["path"] = ["nowhere", "x"]
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc))
    code, _, err = run_cli(["run", str(path), "-i", str(inv), "--dry-run"], capsys)
    # refused by the checker before anything runs, naming the VM and the path that is not the topology's
    assert code == 2 and "vm0" in err and "['nowhere', 'x']" in err and "Traceback" not in err
