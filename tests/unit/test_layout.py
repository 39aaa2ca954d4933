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


STAGE_MODULES = {"pipeline", "external"}  # agents that run a stage; each stands alone


def top_level_calls(path: Path) -> list[str]:
    """Names called in a module's top-level statements (not inside functions or classes)."""
    tree = ast.parse(path.read_text())
    calls = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.Call):
                func = inner.func
                calls.append(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return calls


def test_agents_build_nothing_at_import():
    """No Faust app, producer, consumer, settings or runtime is built when an agents module is imported:
    the composition root (agents.app.Runtime, agents.worker.build) builds them when called."""
    forbidden = {"App", "Producer", "Consumer", "make_producer", "Runtime", "from_env", "faust_app", "Settings"}
    for path in python_files("agents"):
        built = set(top_level_calls(path)) & forbidden
        assert not built, f"{path.relative_to(ROOT)} builds {built} at import"


def test_no_stage_module_imports_another():
    for path in python_files("agents"):
        if path.stem not in STAGE_MODULES:
            continue
        tree = ast.parse(path.read_text())
        imported = {node.module.split(".")[1] for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("agents.")}
        assert not imported & (STAGE_MODULES - {path.stem}), f"{path.name} imports {imported & STAGE_MODULES}"


def test_no_pure_module_is_over_400_lines():
    for path in python_files("streams"):
        lines = len(path.read_text().splitlines())
        assert lines <= 400, f"{path.relative_to(ROOT)} has {lines} lines"
