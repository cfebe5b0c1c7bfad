"""planner.errors: a problem is one printable line, whatever the input it quotes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executor.cli.main import main
from planner.errors import Problem
from tests.test_inventory import valid_doc


def test_control_characters_in_a_problem_are_escaped() -> None:
    assert str(Problem("hosts[1].labels.a\nb", "got '\x1b[2J'\x00")) == "hosts[1].labels.a\\nb: got '\\x1b[2J'\\x00"
    assert str(Problem("", "café")) == "café"


def test_a_hostile_key_reaches_the_terminal_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = valid_doc()
    doc["hosts"][1]["labels"] = {"\x1b[2J\n": None}
    f = tmp_path / "inventory.json"
    f.write_text(json.dumps(doc))
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err
    # refused for the control character itself (the null value is a consequence), and shown escaped
    assert "\x1b" not in err and "hosts[1].labels.'\\x1b[2J\\n': key contains a control character" in err
