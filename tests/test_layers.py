"""Import direction: every module under ``ecse/`` and ``backbones/`` imports only from its
own layer or the layers before it (parsed with ``ast``, imports inside functions included).

Layers, in order: geometry -> frames -> outputs -> ensembles -> testing (core only) ->
backbones -> atomistic -> apps (``ecse.demos``, ``ecse.cli``, ``ecse.__main__``).
Extra rules: ``ecse/__init__.py`` sits with the ensembles; backbones and atomistic never
import the test kit ``ecse.testing``; only the apps import ``ecse.demos`` / ``ecse.cli``;
nothing imports a top-level ``backbones`` (it is installed as ``ecse.backbones``).  A
module that is in no layer fails the test: place new modules in ``LAYERS``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("geometry", ("ecse.neighbors", "ecse.point_ops", "ecse._point_search", "ecse.rotations", "ecse.elements",
                  "ecse._pairs", "ecse._validation", "ecse._memory")),
    ("frames", ("ecse.switching", "ecse.cutoff", "ecse.frames", "ecse.pruning", "ecse.frameset",
                "ecse.frame_views")),
    ("outputs", ("ecse._voigt", "ecse.wigner", "ecse.covariant", "ecse.axial")),
    ("ensembles", ("ecse.local", "ecse.pyg.*", "ecse.auxiliary", "ecse.replicate", "ecse._ensemble_bookkeeping",
                   "ecse.ensemble", "ecse")),
    ("testing", ("ecse.testing.*",)),
    ("backbones", ("ecse.backbones.*",)),
    ("atomistic", ("ecse.atomistic.*",)),
    ("apps", ("ecse.demos.*", "ecse.cli", "ecse._cli_errors", "ecse.__main__")),
]
CORE = ("geometry", "frames", "outputs", "ensembles")
APPS = ("ecse.demos", "ecse.cli")


def layer_of(module: str) -> str | None:
    """The layer of a module name (``pkg.*`` covers the package and everything under it)."""
    for layer, names in LAYERS:
        for name in names:
            if module == name or (name.endswith(".*") and (module + ".").startswith(name[:-1])):
                return layer
    return None


def _rank(layer: str) -> int:
    return [name for name, _ in LAYERS].index(layer)


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """``{module name: file}`` of ``ecse/**.py`` and ``backbones/**.py`` (as ``ecse.backbones``)."""
    out = {}
    for folder, prefix in (("ecse", "ecse"), ("backbones", "ecse.backbones")):
        for path in sorted((root / folder).rglob("*.py")):
            parts = list(path.relative_to(root / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix, *parts])] = path
    return out


def imports_of(module: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """``(imported module, line)`` of every import in ``path`` (relative ones resolved;
    ``from pkg import sub`` counts as ``pkg.sub`` when that is a module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.append((full if full in known else base, node.lineno))
    return out


def violation(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported`` (``None`` when it may)."""
    top = imported.split(".")[0]
    if top == "backbones":
        return "imports the top-level 'backbones' (use ecse.backbones)"
    if top != "ecse":
        return None  # third-party or standard library
    here, there = layer_of(importer), layer_of(imported)
    if there is None:
        return f"imports {imported}, which is in no layer"
    if any(imported == a or imported.startswith(a + ".") for a in APPS) and here != "apps":
        return f"imports the application module {imported}"
    if there == "testing" and here in ("backbones", "atomistic"):
        return f"production code imports the test kit {imported}"
    if here == "testing" and there not in CORE + ("testing",):
        return f"the test kit imports {imported} ({there}); it may use core layers only"
    if _rank(there) > _rank(here):
        return f"upward import of {imported} ({there}) from the {here} layer"
    return None


def check_layers(root: Path = ROOT) -> list[str]:
    files = module_files(root)
    known = set(files)
    problems = [f"{m} ({p.relative_to(root)}) is in no layer: add it to LAYERS in tests/test_layers.py"
                for m, p in files.items() if layer_of(m) is None]
    for module, path in files.items():
        if layer_of(module) is None:
            continue
        for imported, line in imports_of(module, path, known):
            why = violation(module, imported)
            if why:
                problems.append(f"{path.relative_to(root)}:{line} ({module}): {why}")
    return problems


def test_every_module_is_in_a_layer_and_imports_downwards():
    problems = check_layers()
    assert not problems, "import-direction violations:\n" + "\n".join(problems)


def test_the_checker_sees_upward_and_forbidden_imports(tmp_path):
    """A copy of the tree with injected violations fails, naming module and import."""
    for folder in ("ecse", "backbones"):
        for path in (ROOT / folder).rglob("*.py"):
            target = tmp_path / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    cov = tmp_path / "ecse" / "covariant.py"
    cov.write_text(cov.read_text(encoding="utf-8") + "\n\ndef _f():\n    from .ensemble import ECSE\n")
    calc = tmp_path / "ecse" / "atomistic" / "calculator.py"
    calc.write_text(calc.read_text(encoding="utf-8") + "\nfrom ..testing import transform_output\n")
    pet = tmp_path / "backbones" / "pet.py"
    pet.write_text(pet.read_text(encoding="utf-8") + "\nfrom .. import cli\nimport backbones\n")
    (tmp_path / "ecse" / "new_module.py").write_text("import torch\n")
    problems = "\n".join(check_layers(tmp_path))
    assert "(ecse.covariant): upward import of ecse.ensemble (ensembles) from the outputs layer" in problems
    assert "(ecse.atomistic.calculator): production code imports the test kit ecse.testing" in problems
    assert "(ecse.backbones.pet): imports the application module ecse.cli" in problems
    assert "(ecse.backbones.pet): imports the top-level 'backbones'" in problems
    assert "ecse.new_module (ecse/new_module.py) is in no layer" in problems


@pytest.mark.parametrize("module, imported, ok", [
    ("ecse.frames", "ecse.point_ops", True),
    ("ecse.point_ops", "ecse.frames", False),
    ("ecse", "ecse.ensemble", True),
    ("ecse", "ecse.testing", False),
    ("ecse.testing.equivariance", "ecse.ensemble", True),
    ("ecse.testing.equivariance", "ecse.backbones.pet", False),
    ("ecse.backbones.pet", "ecse.covariant", True),
    ("ecse.atomistic.training", "ecse.backbones", True),
    ("ecse.atomistic.evaluation", "ecse.testing", False),
    ("ecse.demos.methane", "ecse.atomistic.training", True),
    ("ecse.cli", "ecse.demos.methane", True),
    ("ecse.__main__", "ecse.cli", True),
    ("ecse.atomistic.training", "ecse.cli", False),
])
def test_rules(module, imported, ok):
    assert (violation(module, imported) is None) == ok
