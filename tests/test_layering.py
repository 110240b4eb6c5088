"""Dependencies point one way: root → components → kernel, and never back.

* the kernel (``netobs``) imports no component and not the root, not even lazily;
* components import the kernel, never the root (``netobs_app``), and never each other
  (``alerts`` reads findings by SQL, it does not import detectors);
* no package imports the root: it is the top of the house. The one program that names it
  is a ``__main__.py`` (run by ``python -m``, never imported);
* no module takes part in an import circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KERNEL = "netobs"
APP = "netobs_app"
COMPONENTS = {"collectors", "pipeline", "analytics", "dashboards", "alerts"}
PACKAGES = sorted(COMPONENTS | {KERNEL, APP})


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, absolute, at top level or inside functions."""
    tree = ast.parse(path.read_text())
    here = module_name(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            for a in node.names:  # `from pkg import module` imports the module, else pkg's names
                sub = f"{module}.{a.name}"
                out.add(sub if is_module(sub) else module)
    return out


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def py_files(pkg: str) -> list[Path]:
    return sorted((ROOT / pkg).rglob("*.py"))


def _ids(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", py_files(KERNEL), ids=_ids)
def test_kernel_imports_no_component(path):
    for mod in imported_modules(path):
        top = mod.split(".")[0]
        assert top not in COMPONENTS, f"{_ids(path)} imports {mod}"
        if top == APP:
            assert path.name == "__main__.py", f"{_ids(path)} imports the root ({mod})"


@pytest.mark.parametrize("pkg", sorted(COMPONENTS))
def test_components_import_only_the_kernel(pkg):
    for path in py_files(pkg):
        for mod in imported_modules(path):
            top = mod.split(".")[0]
            assert top != APP, f"{_ids(path)} imports the root ({mod})"
            assert top not in COMPONENTS or top == pkg, f"{_ids(path)} imports {mod}"


def test_no_import_circles():
    """Tarjan's strongly connected components over the modules of every package."""
    files = {module_name(p): p for pkg in PACKAGES for p in py_files(pkg)}
    graph = {m: sorted(d for d in imported_modules(p) if d in files and d != m) for m, p in files.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                circles.append(sorted(scc))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert circles == []


def test_every_package_has_all():
    for pkg in PACKAGES:
        init = ROOT / pkg / "__init__.py"
        assert init.exists(), pkg
        assert "__all__" in init.read_text(), f"{pkg}/__init__.py has no __all__"
