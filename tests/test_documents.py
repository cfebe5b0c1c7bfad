"""The one reader of evac documents: inventories (JSON, YAML), plans and journal cells agree on BOMs,
encodings, duplicate keys, depth and huge numbers, and always fail as an InputError naming a location."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from executor.cli.main import main
from planner.documents import read_document
from planner.errors import InputError, InventoryError, PlanFileError
from planner.inventory import load_inventory
from planner.plan import load_plan
from tests.fleet import greedy_plan, make_inventory
from tests.test_inventory import valid_doc


@pytest.fixture
def plan_text() -> str:
    return greedy_plan(make_inventory(3, 2)).to_json()


def _problems(e: pytest.ExceptionInfo[InputError]) -> list[str]:
    return [str(p) for p in e.value.problems]


# ------------------------------------------------------------------ plans read like inventories


def test_plan_with_utf8_bom_is_read_like_an_inventory(tmp_path: Path, plan_text: str) -> None:
    f = tmp_path / "plan.json"
    f.write_bytes(b"\xef\xbb\xbf" + plan_text.encode())
    assert len(load_plan(f).migrations) == len(json.loads(plan_text)["migrations"])
    inv = tmp_path / "inv.json"
    inv.write_bytes(b"\xef\xbb\xbf" + json.dumps(valid_doc()).encode())
    assert load_inventory(inv).inventory.hosts


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_utf16_plan_and_inventory_are_refused_by_name(tmp_path: Path, plan_text: str, encoding: str) -> None:
    f = tmp_path / "plan.json"
    f.write_bytes(plan_text.encode(encoding))
    with pytest.raises(PlanFileError) as e:
        load_plan(f)
    assert _problems(e) == [f"byte 0: {encoding.upper()} text: evac reads UTF-8 (save the file as UTF-8)"]
    inv = tmp_path / "inv.yaml"
    inv.write_bytes(yaml.safe_dump(valid_doc()).encode(encoding))
    with pytest.raises(InventoryError, match=f"{encoding.upper()} text"):
        load_inventory(inv)


def test_latin1_plan_names_the_line(tmp_path: Path) -> None:
    f = tmp_path / "plan.json"
    f.write_bytes(b'{\n"solver": "caf\xe9"}')
    with pytest.raises(PlanFileError) as e:
        load_plan(f)
    assert _problems(e) == ["line 2 (byte 16): not UTF-8 text (is this the right file?)"]


def test_plan_nested_100k_deep_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "plan.json"
    f.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(PlanFileError, match="nested too deeply"):
        load_plan(f)
    inv = tmp_path / "inv.yaml"
    inv.write_text("a: " + "[" * 100_000 + "]" * 100_000)
    with pytest.raises(InventoryError, match="nest"):  # libyaml's own limit says "maximum nesting depth"
        load_inventory(inv)


@pytest.mark.parametrize("digits", [4301, 400, 19])
def test_huge_integer_in_a_plan_names_line_and_column(tmp_path: Path, plan_text: str, digits: int) -> None:
    doc = json.loads(plan_text)
    text = json.dumps(doc, indent=1).replace('"wave": 0', '"wave": ' + "7" * digits, 1)
    line, column = next((i, t.index("7" * digits) + 1) for i, t in enumerate(text.splitlines(), 1)
                        if "7" * digits in t)
    f = tmp_path / "plan.json"
    f.write_text(text)
    with pytest.raises(PlanFileError) as e:
        load_plan(f)
    assert _problems(e) == [f"line {line} column {column}: integer with {digits} digits: no evac field takes a number "
                            f"this large"]


def test_huge_integer_in_inventories_json_and_yaml(tmp_path: Path) -> None:
    doc = valid_doc()
    doc["hosts"][0]["memory_mib"] = 10**4400  # beyond Python's int-str limit in both directions
    f = tmp_path / "inv.json"
    with pytest.raises(ValueError):
        json.dumps(doc)
    f.write_text(json.dumps(valid_doc()).replace('"memory_mib": 262144', '"memory_mib": ' + "9" * 4301, 1))
    with pytest.raises(InventoryError, match=r"line 1 column .*: integer with 4301 digits"):
        load_inventory(f)
    y = tmp_path / "inv.yaml"
    y.write_text("version: 1\nhosts:\n- name: h1\n  memory_mib: " + "9" * 5000 + "\n")
    with pytest.raises(InventoryError) as e:
        load_inventory(y)
    assert _problems(e) == ["line 4 column 15: integer with 5000 digits: no evac field takes a number this large"]


def test_big_but_parseable_number_gives_no_overflow(tmp_path: Path, plan_text: str) -> None:
    """1e400 is Infinity to json: the plan reader says so, with the field."""
    f = tmp_path / "plan.json"
    f.write_text(plan_text.replace('"start_s": 0.0', '"start_s": 1e400', 1))
    with pytest.raises(PlanFileError, match=r"migrations\[\d+\]\.start_s: must be a finite number"):
        load_plan(f)


# ------------------------------------------------------------------ duplicate keys


def test_duplicate_key_in_a_plan_is_refused_with_its_path(tmp_path: Path, plan_text: str) -> None:
    doc = json.loads(plan_text)
    text = json.dumps(doc).replace('"destination":', '"destination": "h9", "destination":', 1)
    f = tmp_path / "plan.json"
    f.write_text(text)
    with pytest.raises(PlanFileError) as e:
        load_plan(f)
    assert _problems(e) == ["migrations[0].destination: key given twice"]


def test_duplicate_yaml_keys_are_warned_with_their_line(tmp_path: Path) -> None:
    text = yaml.safe_dump(valid_doc(), sort_keys=False)
    lines = text.splitlines()
    at = next(i for i, t in enumerate(lines) if t.strip().startswith("cpus:"))
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    lines.insert(at + 1, f"{indent}cpus: 64")
    f = tmp_path / "dup.yaml"
    f.write_text("\n".join(lines) + "\n")
    loaded = load_inventory(f)
    assert loaded.inventory.hosts[0].cpus == 64
    assert [str(w) for w in loaded.warnings] == [
        f"line {at + 2} column {len(indent) + 1}: key 'cpus' given twice (first on line {at + 1}); the last value "
        f"is used"]


def test_yaml_bad_date_names_its_line(tmp_path: Path) -> None:
    f = tmp_path / "inv.yaml"
    f.write_text("version: 1\nhosts: []\nvms: []\nwhen: 2024-13-45\n")
    with pytest.raises(InventoryError) as e:
        load_inventory(f)
    assert _problems(e)[0].startswith("line 4 column 7: malformed YAML value")


def test_journal_cells_refuse_duplicates() -> None:
    with pytest.raises(InputError, match="a: key given twice"):
        read_document('{"a": 1, "a": 2}', "cell", duplicates="error")
    assert read_document('{"a": [1, {"b": 2}]}', "cell") == ({"a": [1, {"b": 2}]}, [])


def test_cli_shows_the_location_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = tmp_path / "inv.json"
    inv.write_text(json.dumps(make_inventory(3, 2).to_dict()))
    f = tmp_path / "plan.json"
    f.write_bytes("{}".encode("utf-16"))
    assert main(["run", str(f), "-i", str(inv), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "UTF-16 text" in err and "Traceback" not in err


def test_a_plan_parsed_just_below_the_recursion_limit(tmp_path: Path, plan_text: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A list nested ~990 deep parses, then repr() in a message goes a few frames deeper: still a PlanFileError."""
    import planner.plan

    def too_deep(doc: object, source: str = "plan") -> None:
        raise RecursionError

    monkeypatch.setattr(planner.plan, "plan_from_dict", too_deep)
    f = tmp_path / "plan.json"
    f.write_text(plan_text)
    with pytest.raises(PlanFileError, match="nested too deeply"):
        load_plan(f)


def test_yaml_keys_of_different_types_are_not_duplicates() -> None:
    doc, warnings = read_document("labels:\n  1: a\n  '1': b\n  x: c\n  x: d\n", "doc", yaml_syntax=True)
    assert doc == {"labels": {1: "a", "1": "b", "x": "d"}}
    assert [str(w) for w in warnings] == ["line 5 column 3: key 'x' given twice (first on line 4); the last value "
                                          "is used"]
