"""Shared pieces of the hostile-input suite (tests/test_hostile_*.py): generated mutations of valid evac
documents, and the properties every refusal must have.

Properties (docs/failure-modes.md, "Bad input and journals"):
* the exit code is 2, or the mutation happened to be valid and the command did its job (0, or 1 where the
  command says "ran but not fully successful", e.g. `check` listing violations);
* a refusal names where: the file (or the option) and, for a document, the place in it;
* never a traceback: `main()` returns; an exception escaping it fails the test;
* never a partial or replaced output file.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from executor.cli.main import main

CASES: Counter[str] = Counter()  # generated cases run, by kind: printed at the end of each module (pytest -s)


def count(name: str) -> None:
    CASES[name] += 1


def hostile_settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.filter_too_much, HealthCheck.data_too_large])


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


_PROBLEM_LINE = re.compile(r"^\s+- (\S[^\n]*?): ", re.M)


def assert_refusal_names(err: str, *places: str) -> None:
    """A refusal says where: one of `places` (a file, an option) appears, and nothing looks like a crash."""
    assert "Traceback" not in err, err
    assert any(p in err for p in places), f"none of {places} named in:\n{err}"


def has_located_problem(err: str) -> bool:
    return bool(_PROBLEM_LINE.search(err))


# ------------------------------------------------------------------------------------------------ values

HUGE_INTS = st.sampled_from([10**18, 10**19, -(10**30), 2**63, 2**64 + 1, 10**300])
HOSTILE_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), HUGE_INTS,
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, -1, 0.0, -0.0, 1e-300, 1e308, 1e-6]),
    st.text(max_size=12), st.sampled_from(["", " ", "25G", "8GiB", "NaN", "null", "\x00", "\u202e", "é" * 3,
                                           "a\nb", "$(touch x)", "h0", "h1", "vm0", "running", "up"]))
# Containers from a fixed set: a recursive strategy costs more to draw than the CLI takes to refuse.
CONTAINERS: tuple[Any, ...] = ([], {}, [None], [1, "a"], {"": 1}, {"name": 1}, [[[]]], {"a": {"b": []}}, ["h0", "h0"])
HOSTILE_VALUES = st.one_of(HOSTILE_SCALARS, st.sampled_from(CONTAINERS).map(copy.deepcopy))


def paths(doc: Any) -> Iterator[tuple[Any, ...]]:
    """Every node of a JSON document, as the keys and indices leading to it (the root is ())."""
    stack: list[tuple[tuple[Any, ...], Any]] = [((), doc)]
    while stack:
        path, node = stack.pop()
        yield path
        if isinstance(node, dict):
            stack.extend(((*path, k), v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend(((*path, i), v) for i, v in enumerate(node))


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def mutated_document(draw: st.DrawFn, doc: Any, max_edits: int = 3) -> Any:
    """`doc` with 1..max_edits structural edits: a value replaced, a key deleted or added, a list emptied,
    duplicated or reordered, a subtree moved elsewhere."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, max_edits))):
        all_paths = list(paths(doc))
        path = all_paths[draw(st.integers(0, len(all_paths) - 1))]
        op = draw(st.sampled_from(["replace", "replace", "delete", "add_key", "list_edit", "copy_subtree"]))
        if not path:
            if op == "replace":
                doc = draw(HOSTILE_VALUES)
            continue
        parent, key = _at(doc, path[:-1]), path[-1]
        if op == "replace":
            parent[key] = draw(HOSTILE_VALUES)
        elif op == "delete":
            del parent[key]
        elif op == "add_key" and isinstance(parent[key], dict):
            parent[key][draw(st.text(max_size=8))] = draw(HOSTILE_VALUES)
        elif op == "list_edit" and isinstance(parent[key], list) and parent[key]:
            items = parent[key]
            how = draw(st.sampled_from(["empty", "dup", "reverse", "drop_first"]))
            parent[key] = [] if how == "empty" else items + items[:1] if how == "dup" else \
                items[::-1] if how == "reverse" else items[1:]
        elif op == "copy_subtree":
            source = _at(doc, all_paths[draw(st.integers(0, len(all_paths) - 1))])
            parent[key] = copy.deepcopy(source)
    return doc


def dumps(doc: Any) -> str:
    """JSON as a careless tool writes it: NaN and Infinity as bare words, huge integers in full."""
    try:
        return json.dumps(doc)
    except (ValueError, RecursionError):  # an integer beyond Python's int-str limit: write its digits anyway
        return json.dumps(doc, default=str)


DAMAGE = ("bom", "utf16", "utf32", "latin1", "truncate", "insert", "delete", "nest", "long_int", "dup_key", "nul",
          "crlf", "plain")
# Damage the document reader must catch alone: no stray character that could leave valid JSON with other words.
READER_DAMAGE = tuple(d for d in DAMAGE if d not in ("insert", "delete"))


@st.composite
def mangled_bytes(draw: st.DrawFn, text: str, kinds: tuple[str, ...] = DAMAGE) -> bytes:
    """Text-level damage a file suffers: encodings, BOMs, truncation, stray bytes, nesting, long numbers,
    repeated keys."""
    how = draw(st.sampled_from(kinds))
    if how == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    if how in ("utf16", "utf32"):
        return text.encode("utf-16" if how == "utf16" else "utf-32")
    if how == "latin1":
        return (text[:len(text) // 2] + "é" + text[len(text) // 2:]).encode("latin-1", "replace")
    if how == "truncate":
        return text.encode()[:draw(st.integers(0, max(0, len(text) - 1)))]
    if how == "insert":
        at = draw(st.integers(0, len(text)))
        return (text[:at] + draw(st.sampled_from(['"', ",", "{", "]", ":", "\\", "\n", "- ", "&a", "*a", "!!",
                                                  "\t", "#", "'", "%"])) + text[at:]).encode()
    if how == "delete":
        at = draw(st.integers(0, max(0, len(text) - 1)))
        return (text[:at] + text[at + draw(st.integers(1, 20)):]).encode()
    if how == "nest":
        depth = draw(st.sampled_from([50, 1_000, 100_000]))
        return ("[" * depth + text + "]" * depth).encode()
    if how == "long_int":
        digits = draw(st.sampled_from([19, 400, 4_300, 4_301, 10_000]))
        return re.sub(r"(?<=: )\d+", "9" * digits, text, count=1).encode()
    if how == "dup_key":
        return re.sub(r'"(\w+)": ', r'"\1": 1, "\1": ', text, count=1).encode()
    if how == "nul":
        at = draw(st.integers(0, len(text)))
        return (text[:at] + "\x00" + text[at:]).encode()
    if how == "crlf":
        return text.replace("\n", "\r\n").encode()
    return text.encode()


@pytest.fixture(scope="module", autouse=True)
def report_cases(request: pytest.FixtureRequest) -> Iterator[None]:
    """Prints how many generated cases each test of the module ran (pytest -s shows it)."""
    before = dict(CASES)
    yield
    ran = {k: v - before.get(k, 0) for k, v in CASES.items() if v - before.get(k, 0)}
    print(f"\nhostile cases, {request.module.__name__}: {sum(ran.values())} "
          + ", ".join(f"{k} {v}" for k, v in sorted(ran.items())))


@pytest.fixture
def fast_tmp(tmp_path: Path) -> Iterator[Path]:
    """A scratch folder in memory (/dev/shm) when there is one: the journal tests fsync on every commit."""
    import shutil
    import tempfile

    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="evac-hostile-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
