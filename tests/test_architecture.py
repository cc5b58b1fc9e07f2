"""The layering of ``scheduler/`` and the ownership rules of the run loop, checked on the source.

Layers, bottom up (a module may import its own layer and the ones it lists):

* core: what runs when; pure (no asyncio, no I/O, never reads the time)
* clock: the one place that reads real time
* backends: stores and guards behind protocols
* observe: observers and metrics
* runner: the asyncio loop around the decisions
* face: the command line
* testing: public test helpers
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import scheduler
import scheduler._session

PACKAGE = Path(scheduler.__file__).parent

LAYERS: dict[str, set[str]] = {
    "core": {
        "_schedules",
        "_cron",
        "_window",
        "_decide",
        "_time",
        "_errors",
        "_enums",
        "_state",
        "_state_json",
        "_document",
        "_document_json",
        "events",
        "_duration",
        "_jitter",
        "_ledger",
        "_spec",
        "_explain",
        "_slots",
        "_records",
    },
    "clock": {"_clock"},
    "backends": {
        "_store",
        "_guard",
        "_sqlite",
        "_valkey_common",
        "_valkey_keys",
        "_valkey_store",
        "_valkey_guard",
        "_valkey_combined",
        "_valkey_direct",
        "_resilient",
    },
    "observe": {"_observers", "_ping", "prometheus"},
    "runner": {
        "_scheduler",
        "_runner",
        "_session",
        "_steps",
        "_entries",
        "_execution",
        "_loading",
        "_handle",
        "_config",
        "_job",
        "_persist",
        "_leasing",
        "_threads",
        "_sync",
    },
    "face": {
        "_cli",
        "_cli_common",
        "_cli_run",
        "_command",
        "_cli_env",
        "_cli_log",
        "_cli_checks",
        "_health",
        "_cli_ledger",
        "__main__",
    },
    "testing": {"testing"},
}
#: The runner sees backends only through their protocols.
PROTOCOLS = {"_store", "_guard"}
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "clock": {"core", "clock"},
    "backends": {"core", "clock", "backends"},
    "observe": {"core", "observe"},
    "runner": {"core", "clock", "observe", "runner"},
    "face": set(LAYERS),
    "testing": {"core", "clock", "testing"},
}


def _layer(module: str) -> str | None:
    return next((name for name, members in LAYERS.items() if module in members), None)


@functools.cache
def _modules() -> dict[str, ast.Module]:
    """Parsed once per session (the cycle walk asks for it per module); the tests only read the trees."""
    return {path.stem: ast.parse(path.read_text(), str(path)) for path in PACKAGE.glob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(tree: ast.Module) -> set[str]:
    """Package modules imported at run time (lazy imports inside functions included)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("scheduler."):
            found.add(node.module.split(".")[1])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_every_module_has_a_layer() -> None:
    unplaced = {name for name in _modules() if name != "__init__" and _layer(name) is None}
    assert unplaced == set()


def test_no_module_imports_a_layer_above_it() -> None:
    violations = []
    for name, tree in _modules().items():
        layer = _layer(name)
        if layer is None:  # the package root re-exports everything, lazily
            continue
        for target in _imports(tree):
            target_layer = _layer(target)
            if target_layer is None or target_layer in ALLOWED[layer]:
                continue
            if layer in ("runner", "testing") and target in PROTOCOLS:
                continue
            violations.append(f"{name} ({layer}) imports {target} ({target_layer})")
    assert violations == []


def test_no_import_cycles() -> None:
    graph = {name: _imports(tree) & set(_modules()) for name, tree in _modules().items() if name != "__init__"}
    cycles = []

    def walk(node: str, path: list[str]) -> None:
        for target in graph.get(node, ()):
            if target in path:
                cycles.append([*path[path.index(target) :], target])
            elif target not in done:
                walk(target, [*path, target])
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            walk(start, [start])
    assert cycles == []


def test_only_the_loop_touches_the_session() -> None:
    """The session's data is assigned by the run loop alone; no other module even imports it."""
    importers = {name for name, tree in _modules().items() if "_session" in _imports(tree)}
    assert importers == {"_runner"}
    fields = set(scheduler._session.Session.__dataclass_fields__)
    runner = _modules()["_runner"]
    for cls in (node for node in runner.body if isinstance(node, ast.ClassDef) and node.name != "_Loop"):
        for node in ast.walk(cls):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                assert node.attr not in fields, f"{cls.name} assigns session field {node.attr}"


def test_no_class_sets_another_objects_attributes_in_its_init() -> None:
    """An ``__init__`` assigns its own attributes only (no state shared by convention)."""
    offenders = []
    for name, tree in _modules().items():
        for cls in (node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)):
            for init in (n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"):
                for node in ast.walk(init):
                    if (
                        isinstance(node, ast.Attribute)
                        and isinstance(node.ctx, ast.Store)
                        and isinstance(node.value, ast.Name)
                        and node.value.id != "self"
                    ):
                        offenders.append(f"{name}.{cls.name}.__init__ sets {node.value.id}.{node.attr}")
    assert offenders == []
