"""The import rules that keep the layout honest (issue 17), checked on the source so a break fails at once:

* a test module never imports another test module (shared helpers live in tests/support, fixtures in conftest);
* bench/ imports nothing from tests/ (benchmarks must run from a checkout without the test suite);
* nothing imports a bare layer name (``import models``, ``from tasks.x import``): that loads a second copy of
  the layer beside ``ticketlens.<layer>`` (two settings caches, two engines, pickles naming the wrong module);
* every test module sits in one of the folders that say what it needs, and the flow tests' ``env`` fixture
  is defined once (tests/flows/conftest.py), not copied into modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
LAYERS = {"models", "tasks", "flows", "adapters", "helpdesk_sim", "services"}
FOLDERS = {"unit", "warehouse", "flows", "e2e"}
SKIP_DIRS = {".venv", "venv", ".git", "__pycache__", "node_modules", "var", "mlruns", "mlartifacts", "build", "dist"}


def python_files(top: Path) -> Iterator[Path]:
    for path in sorted(top.rglob("*.py")):
        if not SKIP_DIRS.intersection(path.relative_to(ROOT).parts) and not any(
                part.startswith(".") for part in path.relative_to(ROOT).parts[:-1]):
            yield path


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def imported_modules(path: Path, source: str | None = None) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, inside functions too; relative imports are
    resolved against the file's package; ``from pkg import name`` also yields ``pkg.name`` (it may be a
    module); ``importlib.import_module("...")`` with a literal counts as an import."""
    package = module_name(path).rsplit(".", 1)[0]
    source = path.read_text(encoding="utf-8") if source is None else source
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            yield node.lineno, node.args[0].value


def is_test_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "tests" and (parts[-1].startswith("test_") or parts[-1] == "conftest")


def test_no_test_module_imports_another_test_module():
    found = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for path in python_files(TESTS) for line, name in imported_modules(path)
             if is_test_module(name) and name != module_name(path)]
    assert not found, "move shared helpers to tests/support and fixtures to a conftest.py:\n" + "\n".join(found)


def test_bench_imports_nothing_from_tests():
    found = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for path in python_files(ROOT / "bench") for line, name in imported_modules(path)
             if name.split(".")[0] == "tests"]
    assert not found, "move what bench needs out of tests/ (e.g. ticketlens.helpdesk_sim.*):\n" + "\n".join(found)


def test_no_module_imports_a_bare_layer_name():
    found = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for path in python_files(ROOT) for line, name in imported_modules(path)
             if name.split(".")[0] in LAYERS]
    assert not found, "import the layer as ticketlens.<layer>:\n" + "\n".join(found)


def test_the_rule_checks_see_the_imports_they_look_for():
    """The checks above only protect if they parse every import form: plain, from, relative, in a function,
    and import_module with a literal."""
    sample = TESTS / "unit" / "test_sample_layout.py"  # only names the package relative imports resolve in
    source = ("import models.text\nfrom tasks import ingest\nfrom .test_records import ticket\n"
              "def f():\n    from tests.unit import test_records\n    importlib.import_module('flows.ingest')\n")
    names = {name for _, name in imported_modules(sample, source)}
    assert {"models.text", "tasks", "tasks.ingest", "tests.unit.test_records", "tests.unit.test_records.ticket",
            "flows.ingest"} <= names
    assert is_test_module("tests.unit.test_records") and is_test_module("tests.conftest")
    assert not is_test_module("tests.support.warehouse")


def test_every_test_module_lives_in_a_folder_that_says_what_it_needs():
    stray = [str(path.relative_to(ROOT)) for path in TESTS.rglob("test_*.py")
             if path.relative_to(TESTS).parts[0] not in FOLDERS]
    assert not stray, (f"move each into tests/unit, tests/warehouse, tests/flows or tests/e2e "
                       f"(see tests/conftest.py): {stray}")


def test_the_env_fixture_is_defined_once():
    defined = [str(path.relative_to(ROOT)) for path in python_files(TESTS)
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
               if isinstance(node, ast.FunctionDef) and node.name == "env"]
    assert defined == ["tests/flows/conftest.py"], defined
