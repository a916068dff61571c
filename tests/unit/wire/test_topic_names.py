"""One source for topic names: the ``Topic`` enum matches ``topics.yaml`` both ways, and no
module of the engine or the simulators spells a topic name as a string literal."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from engine.settings import PROJECT_ROOT, Settings
from engine.wire.topics import Table, Topic, load_topics

SOURCES = [p for d in ("engine", "simulators") for p in sorted((PROJECT_ROOT / d).rglob("*.py"))]
ENUM_MODULE = PROJECT_ROOT / "engine" / "wire" / "topics.py"


def _declared() -> list[dict[str, object]]:
    return yaml.safe_load((PROJECT_ROOT / "topics.yaml").read_text())["topics"]


def test_every_prefixed_topic_in_topics_yaml_is_a_member_and_back():
    declared = {str(e["name"]) for e in _declared() if not e.get("absolute")}
    assert declared == {t.value for t in Topic}


def test_every_absolute_topic_is_a_table_changelog_or_a_faust_leader_topic():
    settings = Settings()
    declared = {str(e["name"]).format(app_id=settings.app_id) for e in _declared() if e.get("absolute")}
    engine_tables = {Table.changelog(t, settings.app_id) for t in Table if t is not Table.PAYER_MEMBERS}
    expected = engine_tables | {
        Table.PAYER_MEMBERS.changelog(settings.payer_app_id),
        f"{settings.app_id}-__assignor-__leader",
        f"{settings.payer_app_id}-__assignor-__leader",
    }
    assert declared == expected


def test_load_topics_knows_every_member():
    specs = load_topics(Settings())
    assert {t.value for t in Topic} <= set(specs)


def test_denial_queue_topics_are_the_routing_file_queues():
    routing = yaml.safe_load((PROJECT_ROOT / "engine" / "reference" / "data" / "denial_routing.yaml").read_text())
    queues = {c["queue"] for c in routing["categories"].values()}
    assert {t.value for t in Topic.denial_queues()} == queues
    assert Topic.DENIALS_CODING.queue_name == "coding"


PRAGMAS = ("# summary keys", "# not a topic")


def _allowed(node: ast.Constant, parents: dict[ast.AST, ast.AST], lines: list[str]) -> bool:
    """A summary key (``summary["remittances"]``, ``{"remittances": n}``, or marked ``# summary
    keys`` / ``# not a topic`` on its line or on its statement's first line) is not a topic."""
    parent = parents.get(node)
    if isinstance(parent, ast.Subscript) and parent.slice is node:
        return True
    if isinstance(parent, ast.Dict) and any(k is node for k in parent.keys):
        return True
    statement: ast.AST = node
    while not isinstance(statement, ast.stmt):
        statement = parents[statement]
    marked = (lines[node.lineno - 1], lines[statement.lineno - 1])
    return any(pragma in line for line in marked for pragma in PRAGMAS)


def _literal_topic_names(path: Path) -> list[str]:
    source = path.read_text()
    tree, lines = ast.parse(source), source.splitlines()
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    names = {t.value for t in Topic}
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
            if not _allowed(node, parents, lines):
                hits.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}: {node.value!r}")
    return hits


def test_no_module_spells_a_topic_name():
    hits = [hit for path in SOURCES if path != ENUM_MODULE for hit in _literal_topic_names(path)]
    assert hits == [], "use engine.wire.topics.Topic:\n" + "\n".join(hits)


def test_the_check_finds_a_literal(tmp_path):
    sample = PROJECT_ROOT / "engine" / "_probe_for_test.py"
    try:
        sample.write_text('emit("claims-submitted")\nsummary["remittances"]\nkeys = ("coded",  # summary keys\n'
                          '        "statements")\nstages = (\n    "payments",\n    "duplicates",  # not a topic\n)\n')
        assert _literal_topic_names(sample) == ["engine/_probe_for_test.py:1: 'claims-submitted'",
                                                "engine/_probe_for_test.py:6: 'payments'"]
    finally:
        sample.unlink()
