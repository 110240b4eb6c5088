"""Dependencies point one way: components import ``netobs``; ``netobs`` imports none of them.

Only the CLI (``netobs/cli.py`` and its wiring module ``netobs/runtime.py``) may load
components, and only lazily, inside functions. ``alerts`` consumes findings and never
imports detectors (``analytics``).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = {"collectors", "pipeline", "analytics", "dashboards", "alerts"}
LAZY_ALLOWED = {"netobs/cli.py", "netobs/runtime.py", "netobs/cli_scenario.py"}


def imports(path: Path):
    """(module, is_top_level) for every import in a file."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name.split(".")[0], id(node) in top
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0], id(node) in top


def py_files(pkg):
    return sorted((ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", py_files("netobs"), ids=lambda p: str(p.relative_to(ROOT)))
def test_kernel_imports_no_component(path):
    rel = str(path.relative_to(ROOT))
    for mod, top_level in imports(path):
        if mod in COMPONENTS:
            assert rel in LAZY_ALLOWED and not top_level, f"{rel} imports {mod}"


@pytest.mark.parametrize("pkg", sorted(COMPONENTS))
def test_components_do_not_import_each_other_wrongly(pkg):
    allowed = {
        "pipeline": set(),
        "collectors": set(),
        "analytics": set(),
        "dashboards": set(),
        "alerts": set(),
    }
    for path in py_files(pkg):
        for mod, _ in imports(path):
            if mod in COMPONENTS and mod != pkg:
                assert mod in allowed[pkg], f"{path.relative_to(ROOT)} imports {mod}"


def test_every_component_is_a_package_with_all():
    for pkg in sorted(COMPONENTS | {"netobs"}):
        init = ROOT / pkg / "__init__.py"
        assert init.exists(), pkg
        assert "__all__" in init.read_text(), f"{pkg}/__init__.py has no __all__"
