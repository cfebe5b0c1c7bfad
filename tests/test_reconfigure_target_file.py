"""Target placement files: JSON or CSV, every problem named with its location."""

from __future__ import annotations

from pathlib import Path

import pytest

from planner.reconfigure.target_file import TargetFileError, load_target, parse_target
from tests._planner_fixtures import flat, host, vm

INV = flat([host("h1"), host("h2")], [vm("a", "h1"), vm("b", "h1")])


def test_json_and_csv_give_the_same_target() -> None:
    assert parse_target('{"a": "h2", "b": "h9"}', "t.json", INV) == {"a": "h2", "b": "h9"}
    assert parse_target("vm,host\n# comment\na,h2\n\nb , h9\n", "t.csv", INV) == {"a": "h2", "b": "h9"}


@pytest.mark.parametrize(("text", "name", "needles"), [
    ('{"a": "h2", "a": "h1", "b": 3}', "t.json", ['"a": VM \'a\' is named more than once', '"b": the host must be']),
    ("a,h2\nb\nzz,h1\n", "t.csv", ["line 2: expected two cells", "line 3: the inventory has no VM 'zz'"]),
    ('{"a": ', "t.json", ["line 1 column 7: invalid JSON"]),
    ('["a", "h2"]', "t.json", ["must be a JSON object"]),
    ("", "t.csv", ["names no VM"]),
])
def test_every_problem_is_named_with_its_location(text: str, name: str, needles: list[str]) -> None:
    with pytest.raises(TargetFileError) as e:
        parse_target(text, name, INV)
    assert e.value.exit_code == 2
    for needle in needles:
        assert needle in str(e.value), str(e.value)


def test_an_unreadable_file_is_exit_2(tmp_path: Path) -> None:
    with pytest.raises(TargetFileError, match="cannot read"):
        load_target(tmp_path / "missing.json", INV)
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TargetFileError, match="cannot read"):
        load_target(tmp_path / "bin.csv", INV)
