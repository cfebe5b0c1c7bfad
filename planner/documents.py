"""Bytes to plain data, the same way for every document evac reads: inventories (JSON and YAML), plans,
and the JSON cells of a run journal.

`read_document(raw, source, error=...)` returns the data and its warnings, or raises `error` (an
`InputError` subclass, exit code 2) naming where the document is wrong. One reader, so that the
loaders cannot disagree:

* text: UTF-8, with or without a byte-order mark; UTF-16/32 and other bytes are refused by name.
* duplicate keys: JSON and Python both keep the last value silently; evac names the key's path
  (`vms[1].vcpus`) or, in YAML, its line, as a warning (`duplicates="warn"`) or an error.
* depth: a document nested deeper than Python's recursion allows is refused, not a RecursionError.
* integers: beyond 64 bits (or beyond Python's 4,300-digit conversion limit) is refused with its
  line and column: no evac field takes such a number, and `float()` of one raises OverflowError.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import yaml

from planner.errors import InputError, Problem

MAX_INT_DIGITS = 18  # every evac number fits in 64 bits; |x| < 10**18 keeps the check a length test
_YAML_BASE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML has it: ~10x faster
# Only to locate a too-large integer after the parse refused it: strings are skipped, numbers found.
_STRING_OR_LONG_INT = re.compile(r'"(?:[^"\\]|\\.)*"|(-?[0-9]{' + str(MAX_INT_DIGITS + 1) + r',})')
_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"),
         (b"\xfe\xff", "UTF-16"))

Duplicates = Literal["warn", "error"]


def decode_text(raw: bytes, source: str, error: type[InputError] = InputError) -> str:
    """UTF-8 text (a leading BOM dropped, as editors on Windows write it), or `error` saying what it is."""
    for bom, name in _BOMS:
        if raw.startswith(bom):
            raise error(source, [Problem("byte 0", f"{name} text: evac reads UTF-8 (save the file as UTF-8)")])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise error(source, [Problem(f"line {line} (byte {e.start})",
                                     "not UTF-8 text (is this the right file?)")]) from None


def read_document(raw: bytes | str, source: str, *, yaml_syntax: bool = False, error: type[InputError] = InputError,
                  duplicates: Duplicates = "warn") -> tuple[object, list[Problem]]:
    """Plain data (dicts, lists, str, int, float, bool, None) and warnings, or `error` with the location."""
    text = decode_text(raw, source, error) if isinstance(raw, bytes) else raw.removeprefix("\ufeff")
    found: list[Problem] = []
    severity = "warning" if duplicates == "warn" else "error"
    try:
        doc = _read_yaml(text, found, severity) if yaml_syntax else _read_json(text, found, severity)
    except RecursionError:
        raise error(source, [Problem("", "nested too deeply (lists or objects inside each other beyond "
                                         "what any evac document needs)")]) from None
    except _Located as e:
        raise error(source, [Problem(e.where, e.message)]) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise error(source, [Problem(where, f"malformed YAML: {e.problem or e.context}")]) from None
    except yaml.YAMLError as e:
        raise error(source, [Problem("", f"malformed YAML: {e}")]) from None
    except json.JSONDecodeError as e:
        raise error(source, [Problem(f"line {e.lineno} column {e.colno}", f"malformed JSON: {e.msg}")]) from None
    except ValueError as e:  # int() of more than 4,300 digits, raised inside json's scanner
        raise error(source, [Problem(_long_int_location(text), f"malformed number: {str(e).split(';')[0]}")]) \
            from None
    errors = [p for p in found if p.severity == "error"]
    if errors:
        raise error(source, errors)
    return doc, found


def read_json_value(text: str, source: str, error: type[InputError] = InputError) -> object:
    """One JSON value that evac itself wrote (a journal cell): duplicate keys are an error."""
    doc, _ = read_document(text, source, error=error, duplicates="error")
    return doc


# ------------------------------------------------------------------------------------------------ JSON


class _Located(Exception):
    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


class _WithDuplicates(dict[str, Any]):
    """An object that had a key twice; the repeats are kept to be named with their path afterwards."""

    repeated: list[str]


def _read_json(text: str, found: list[Problem], severity: str) -> object:
    seen_repeat = False

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal seen_repeat
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj
        seen_repeat = True
        marked = _WithDuplicates(obj)
        seen: set[str] = set()
        marked.repeated = []
        for key, _ in pairs:
            if key in seen:
                marked.repeated.append(key)
            seen.add(key)
        return marked

    def parse_int(digits: str) -> int:
        if len(digits.lstrip("-")) > MAX_INT_DIGITS:
            raise _Located(_long_int_location(text), f"integer with {len(digits.lstrip('-'))} digits: no evac "
                                                      f"field takes a number this large")
        return int(digits)

    doc = json.loads(text, object_pairs_hook=pairs_hook, parse_int=parse_int)
    if seen_repeat:
        found.extend(_json_duplicates(doc, severity))
    return doc


def _json_duplicates(doc: object, severity: str) -> list[Problem]:
    """Every repeated key with its path (`vms[1].vcpus`), walking without recursion (depth is unbounded)."""
    out: list[Problem] = []
    stack: list[tuple[str, object]] = [("", doc)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node, _WithDuplicates):
                owner = f" (in {node['name']!r})" if isinstance(node.get("name"), str) else ""
                for key in dict.fromkeys(node.repeated):
                    out.append(Problem(f"{path}.{key}" if path else key,
                                       f"key given twice{owner}; the last value, {_short(node[key])}, is used"
                                       if severity == "warning" else f"key given twice{owner}", severity))
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(node))))
    return out


def _long_int_location(text: str) -> str:
    for m in _STRING_OR_LONG_INT.finditer(text):
        if m.group(1):
            line = text.count("\n", 0, m.start(1)) + 1
            return f"line {line} column {m.start(1) - (text.rfind(chr(10), 0, m.start(1)) + 1) + 1}"
    return ""


def _short(value: object) -> str:
    if isinstance(value, dict | list):
        return "an object" if isinstance(value, dict) else "a list"
    text = json.dumps(value) if isinstance(value, str | int | float | bool) or value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ------------------------------------------------------------------------------------------------ YAML


def _read_yaml(text: str, found: list[Problem], severity: str) -> object:
    loader = _Loader(text)
    loader.found = found
    loader.severity = severity
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


class _Loader(_YAML_BASE):  # type: ignore[misc, valid-type]
    """A safe YAML loader that names duplicate keys with their line and refuses integers beyond 64 bits."""

    found: list[Problem]
    severity: str

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if isinstance(key_node, yaml.ScalarNode):
                key: Any = (key_node.tag, key_node.value)  # resolved tag and text: no need to build the key
            else:
                try:
                    key = self.construct_object(key_node, deep=True)
                    hash(key)
                except TypeError:
                    continue  # an unhashable key: the base constructor reports it with its mark
            line = key_node.start_mark.line + 1
            if key in first_line:
                suffix = "; the last value is used" if self.severity == "warning" else ""
                shown = key[1] if isinstance(key_node, yaml.ScalarNode) else key
                self.found.append(Problem(f"line {line} column {key_node.start_mark.column + 1}",
                                          f"key {shown!r} given twice (first on line {first_line[key]}){suffix}",
                                          self.severity))
            else:
                first_line[key] = line
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = str(node.value).replace("_", "").lstrip("+-")
        if len(digits) > MAX_INT_DIGITS + 2:  # room for 0x/0o prefixes; int() below checks the rest
            mark = node.start_mark
            raise _Located(f"line {mark.line + 1} column {mark.column + 1}",
                            f"integer with {len(digits)} digits: no evac field takes a number this large")
        value: int = super().construct_yaml_int(node)
        if abs(value) >= 2**63:
            mark = node.start_mark
            raise _Located(f"line {mark.line + 1} column {mark.column + 1}",
                            "integer beyond 64 bits: no evac field takes a number this large")
        return value

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as e:  # a date like 2024-13-45, a float() beyond range
            mark = node.start_mark
            raise _Located(f"line {mark.line + 1} column {mark.column + 1}", f"malformed YAML value: {e}") from None


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
