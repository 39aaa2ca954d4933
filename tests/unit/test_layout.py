"""The folder tree is the data flow; this keeps the dependency direction honest."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KAFKA_OR_FAUST = {"faust", "aiokafka", "confluent_kafka", "mode"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_streams_is_pure():
    for path in python_files("streams"):
        bad = imports_of(path) & (KAFKA_OR_FAUST | {"agents", "connectors", "cli"})
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_schemas_and_connectors_do_not_import_agents_or_faust():
    for package in ("schemas", "connectors"):
        for path in python_files(package):
            bad = imports_of(path) & {"agents", "cli", "faust"}
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_only_entry_points_import_agents():
    allowed = {"agents", "cli", "tests", "bench"}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in allowed or rel.parts[0].startswith("."):
            continue
        assert "agents" not in imports_of(path), f"{rel} imports agents"


def test_required_top_level_layout():
    for name in ("streams", "agents", "schemas", "connectors", "tests", "docker-compose.yml", "pyproject.toml",
                 "README.md"):
        assert (ROOT / name).exists(), name
