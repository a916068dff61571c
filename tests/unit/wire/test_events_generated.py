"""``engine/model/events.py`` is generated from ``schemas/``: the checked-in file is what the
generator writes now, and the generator follows the schema, not a copy of it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.settings import PROJECT_ROOT
from engine.wire import generate


def test_the_checked_in_events_module_is_the_generated_one():
    assert generate.EVENTS_MODULE.read_text() == generate.render(PROJECT_ROOT / "schemas"), (
        "engine/model/events.py is stale: run python -m engine.wire.generate")


def test_check_mode_exits_1_on_a_stale_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    stale = tmp_path / "events.py"
    stale.write_text(generate.EVENTS_MODULE.read_text() + "# edited by hand\n")
    monkeypatch.setattr(generate, "EVENTS_MODULE", stale)
    assert generate.main(["--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert generate.main([]) == 0 and generate.main(["--check"]) == 0


def test_a_new_schema_version_changes_the_generated_class(tmp_path: Path):
    schemas = tmp_path / "schemas"
    shutil.copytree(PROJECT_ROOT / "schemas", schemas)
    registry = json.loads((schemas / "registry.json").read_text())
    versions = [e for e in registry["schemas"] if e["name"].endswith(".DuplicateDropped")]
    latest = max(versions, key=lambda e: e["version"])
    raw = json.loads((schemas / latest["file"]).read_text())
    raw["fields"].append({"name": "dropped_by", "type": ["null", "string"], "default": None, "doc": "Who dropped it."})
    (schemas / "duplicate_dropped.v9.avsc").write_text(json.dumps(raw))
    registry["schemas"].append({"id": 999, "name": latest["name"], "version": latest["version"] + 1,
                                "file": "duplicate_dropped.v9.avsc"})
    (schemas / "registry.json").write_text(json.dumps(registry))
    source = generate.render(schemas)
    cls = source[source.index("class DuplicateDropped:"):]
    cls = cls[:cls.index("\n\n\n")]
    assert "    #: Who dropped it.\n    dropped_by: str | None = None" in cls


def test_unions_other_than_optional_are_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="only \\[null, T\\] unions"):
        generate._hint(["null", "string", "int"], generate._Module())
