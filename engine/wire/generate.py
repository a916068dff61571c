"""Writes ``engine/model/events.py`` from the latest version of every schema in
``schemas/registry.json``: the schemas are the one hand-written source of the events.
``python -m engine.wire.generate`` rewrites the file; ``--check`` exits 1 when it is stale."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.settings import PROJECT_ROOT

EVENTS_MODULE = PROJECT_ROOT / "engine" / "model" / "events.py"
#: Behaviour a generated class takes from a hand-written base in ``engine/model/behaviour.py``.
BASES = {"Remittance": "RemittanceBehaviour"}

_PRIMITIVES = {"string": "str", "boolean": "bool", "int": "int", "long": "int", "bytes": "bytes",
               "float": "float", "double": "float"}
_LOGICAL = {"decimal": "Decimal", "date": "date", "timestamp-millis": "datetime"}
_WIDTH = 116


@dataclass
class _Module:
    """The classes found so far, in the order they must be written (a type before its users)."""

    enums: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)


def latest_schemas(schemas_dir: Path) -> list[dict[str, Any]]:
    """The newest version of each event, in the order the registry first names them."""
    index = json.loads((schemas_dir / "registry.json").read_text())["schemas"]
    newest: dict[str, dict[str, Any]] = {}
    for entry in index:
        if entry["name"] not in newest or entry["version"] > newest[entry["name"]]["version"]:
            newest[entry["name"]] = entry
    return [json.loads((schemas_dir / e["file"]).read_text()) for e in newest.values()]


def _hint(schema: Any, module: _Module) -> str:
    if isinstance(schema, list):
        branches = [s for s in schema if s != "null"]
        if len(branches) != 1 or len(schema) != 2:
            raise ValueError(f"only [null, T] unions map to Python: {schema}")
        return f"{_hint(branches[0], module)} | None"
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema]
        if schema in module.enums or schema in module.records:
            return schema
        raise ValueError(f"unknown type {schema!r}")
    kind = schema["type"]
    if "logicalType" in schema:
        return _LOGICAL[schema["logicalType"]]
    if kind == "array":
        return f"list[{_hint(schema['items'], module)}]"
    if kind == "enum":
        module.enums.setdefault(schema["name"], schema)
        return str(schema["name"])
    if kind == "record":
        _collect(schema, module)
        return str(schema["name"])
    if isinstance(kind, (dict, list)) or kind in _PRIMITIVES:
        return _hint(kind, module)
    raise ValueError(f"unsupported schema {schema!r}")


def _collect(record: dict[str, Any], module: _Module) -> None:
    if record["name"] in module.records:
        return
    for f in record["fields"]:
        _hint(f["type"], module)  # nested types first
    module.records[record["name"]] = record


def _default(value: Any, hint: str, module: _Module) -> str:
    if value is None:
        return "None"
    if isinstance(value, list):
        if value:
            raise ValueError("non-empty array defaults are not supported")
        return "field(default_factory=list)"
    base = hint.removesuffix(" | None")
    if base in module.enums:
        return f"{base}.{value}"
    if base == "Decimal":
        raise ValueError("decimal defaults are bytes in Avro; use null")
    return repr(value)


def _comment(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, _WIDTH - len(indent) - 4, initial_indent=f"{indent}#: ",
                         subsequent_indent=f"{indent}#: ")


def _docstring(text: str, indent: str) -> list[str]:
    lines = textwrap.wrap(text, _WIDTH - len(indent) - 6)
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    return [f'{indent}"""{lines[0]}', *(f"{indent}{line}" for line in lines[1:]), f'{indent}"""']


def _enum_source(schema: dict[str, Any]) -> list[str]:
    out = [f"class {schema['name']}(StrEnum):"]
    if schema.get("doc"):
        out += [*_docstring(schema["doc"], "    "), ""]
    out += [f'    {symbol} = "{symbol}"' for symbol in schema["symbols"]]
    return out


def _record_source(record: dict[str, Any], module: _Module, event: bool) -> list[str]:
    base = BASES.get(record["name"])
    out = ["@dataclass(slots=True)", f"class {record['name']}({base}):" if base else f"class {record['name']}:"]
    if record.get("doc"):
        out += [*_docstring(record["doc"], "    "), ""]
    if event:
        out.append(f'    SCHEMA: ClassVar[str] = f"{{NAMESPACE}}.{record["name"]}"')
    fields = record["fields"]
    # A Python default only where every later field has one too (dataclass field order).
    defaulted_from = len(fields)
    while defaulted_from > 0 and "default" in fields[defaulted_from - 1]:
        defaulted_from -= 1
    for i, f in enumerate(fields):
        hint = _hint(f["type"], module)
        if f.get("doc"):
            out += _comment(f["doc"], "    ")
        line = f"    {f['name']}: {hint}"
        if i >= defaulted_from:
            line += f" = {_default(f['default'], hint, module)}"
        out.append(line)
    return out


def render(schemas_dir: Path) -> str:
    module = _Module()
    for schema in latest_schemas(schemas_dir):
        _collect(schema, module)
        module.events.append(schema["name"])
    namespaces = {s.get("namespace") for s in latest_schemas(schemas_dir)}
    if len(namespaces) != 1:
        raise ValueError(f"one namespace expected, found {namespaces}")
    (namespace,) = namespaces
    parts: list[list[str]] = [[
        '"""The events that flow between the stages, as typed dataclasses: GENERATED from the',
        "latest schema of each event in ``schemas/`` by ``python -m engine.wire.generate`` — edit the",
        '``.avsc`` files, not this one (docs/architecture.md: events and their versions)."""',
        "",
        "from __future__ import annotations",
        "",
        "from dataclasses import dataclass, field",
        "from datetime import date, datetime",
        "from decimal import Decimal",
        "from enum import StrEnum",
        "from typing import ClassVar",
        "",
        "from engine.model.behaviour import " + ", ".join(sorted(set(BASES.values()))),
        "",
        f'NAMESPACE = "{namespace}"',
    ]]
    parts += [_enum_source(schema) for schema in module.enums.values()]
    parts += [_record_source(record, module, name in module.events) for name, record in module.records.items()]
    parts.append(["EVENT_TYPES: tuple[type, ...] = (", *(f"    {name}," for name in module.events), ")"])
    return "\n\n\n".join("\n".join(part) for part in parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if engine/model/events.py is stale")
    parser.add_argument("--schemas", type=Path, default=PROJECT_ROOT / "schemas")
    args = parser.parse_args(argv)
    source = render(args.schemas)
    if args.check:
        if EVENTS_MODULE.read_text() != source:
            print(f"{EVENTS_MODULE} is stale: run python -m engine.wire.generate", file=sys.stderr)
            return 1
        return 0
    EVENTS_MODULE.write_text(source)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
