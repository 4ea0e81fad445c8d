"""The import direction of the house: _lazykit → kernels → nets → compare, never back, and no circles.

Imports are read from the source with ``ast`` (module-level and deferred ones inside functions alike: a circle
through a deferred import is still a circle), so the test needs no GPU, CuPy or data to see every module.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("_lazykit", "kernels", "nets", "compare")
# a package may import only the ones before it in this order
LAYER = {name: i for i, name in enumerate(PACKAGES)}


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _imports(name: str) -> set:
    """The project modules that ``name`` imports (``from pkg import sub`` counts as importing ``pkg.sub`` when
    that is a module, else as importing ``pkg``)."""
    tree = ast.parse(MODULES[name].read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:   # `import a.b.c` of a module: its nearest project module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def test_the_modules_were_found():
    # The walk must see the packages it polices (a wrong ROOT would make every other test pass vacuously).
    assert {"kernels.analytic.networks", "kernels.analytic.rules", "kernels.analytic._cuda", "kernels.validation",
            "nets.models", "compare.cli", "_lazykit.exports"} <= set(MODULES)
    assert "kernels.analytic.rules" in GRAPH["kernels.analytic.networks"] and "kernels.analytic.rules" in GRAPH["kernels.analytic._cuda"]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_import_from_a_lower_package_to_a_higher_one(name):
    package = name.split(".")[0]
    higher = sorted(t for t in GRAPH[name] if LAYER[t.split(".")[0]] > LAYER[package])
    assert not higher, f"{name} imports {higher}: {package} must not import {', '.join(PACKAGES[LAYER[package] + 1:])}"


def _cycle_from(start):
    """A path start → … → start through GRAPH, or None."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for child in sorted(GRAPH[node]):
            if child == start:
                return path + [start]
            if child not in seen:
                seen.add(child)
                stack.append((child, path + [child]))
    return None


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circle_inside_a_package(package):
    for name in sorted(m for m in MODULES if m.split(".")[0] == package):
        cycle = _cycle_from(name)
        assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_analytic_and_its_cuda_path_share_rules_without_a_circle():
    assert "kernels.analytic.networks" not in GRAPH["kernels.analytic._cuda"]
    assert "kernels.analytic.networks" not in GRAPH["kernels.analytic.rules"] and "kernels.analytic._cuda" not in GRAPH["kernels.analytic.rules"]


def _cross_package_imports(name: str):
    """(line, what) of each import in module ``name`` that reaches into another lazykit package below the
    package face: ``from kernels.x import y``, ``import kernels.x``, or ``from kernels import x`` of a module x."""
    package = name.split(".")[0]
    tree = ast.parse(MODULES[name].read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in LAYER and top not in (package, "_lazykit") and alias.name != top:
                    yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            top = node.module.split(".")[0]
            if top not in LAYER or top in (package, "_lazykit"):
                continue
            if node.module != top:
                yield node.lineno, f"from {node.module} import ..."
            for alias in node.names:
                if f"{top}.{alias.name}" in MODULES:
                    yield node.lineno, f"from {top} import {alias.name} (a module)"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if not m.startswith("_lazykit")))
def test_other_packages_are_imported_through_their_face(name):
    # README: other packages import what they use from the package (`from kernels import krr_solve`), never its
    # modules, so a module can move inside its package without breaking another package
    found = [f"line {line}: {what}" for line, what in _cross_package_imports(name)]
    assert not found, f"{name} reaches into another package's modules: {'; '.join(found)}"


def test_the_face_check_sees_a_reach_in():
    # the check must be able to fail: a made-up module reaching into kernels' modules is caught
    source = "from kernels.analytic import rules\nimport kernels.backend\nfrom kernels import backend\n"
    MODULES["compare._probe"] = type("P", (), {"read_text": lambda self: source})()
    try:
        assert [what for _, what in _cross_package_imports("compare._probe")] == [
            "from kernels.analytic import ...", "import kernels.backend", "from kernels import backend (a module)"]
    finally:
        del MODULES["compare._probe"]
