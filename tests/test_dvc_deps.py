"""Every project module a stage's flow can import is one of that stage's DVC deps.

DVC re-runs a stage only when a declared dep changes, so a module the flow imports but the
stage does not declare (say ``s6damon/salad/backbone.py``, which the finetune loop calls)
could change the stage's output while ``dvc repro`` reports it up to date. The imports are
read statically (``ast``), including imports inside functions: a lazily imported backend is
code the stage may run.

One deliberate exemption: ``s6damon.config`` is followed no further than itself. Every flow
loads the whole params file, so ``s6damon/config/__init__.py`` imports every section's
schema, and validating a section may call into its package (the prepare section checks voice
names against ``s6damon.corpus``). Those imports can only reject a params file, never change
a stage's output; each stage declares ``s6damon/config/schema.py`` and the schema modules of
the sections it reads.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("s6damon", "flows", "tasks")
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
CONFIG = REPO / "s6damon" / "config"  # followed no further; see the module docstring


def _module_file(name: str) -> Path | None:
    """The file of project module ``name`` (a package's ``__init__.py``), None outside the project."""
    path = REPO.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def _imported_names(tree: ast.AST, package: str) -> list[str]:
    """Project modules named by the import statements anywhere in ``tree``.

    ``from m import x`` yields ``m`` and ``m.x`` (kept only if ``m.x`` is a module);
    relative imports are resolved against ``package``.
    """
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(parts + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.append(module)
            names += [f"{module}.{alias.name}" for alias in node.names]
    return [n for n in names if n.split(".")[0] in PACKAGES]


def import_closure(module: str) -> set[Path]:
    """Files of every project module ``module`` can import, directly or transitively
    (parent packages included: importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py``)."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if path is None or path in seen:
            continue
        seen.add(path)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        if path.is_relative_to(CONFIG):
            continue
        package = name if path.name == "__init__.py" else ".".join(parts[:-1])
        todo += _imported_names(ast.parse(path.read_text(), filename=str(path)), package)
    return seen


def _declared(rel: str, deps: list[str]) -> bool:
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


def test_imports_inside_functions_and_relative_imports_are_read():
    source = "import numpy\nfrom .data import Batch\ndef f():\n    from s6damon.salad import backbone\n"
    names = _imported_names(ast.parse(source), package="s6damon.train")
    assert names == ["s6damon.train.data", "s6damon.train.data.Batch", "s6damon.salad", "s6damon.salad.backbone"]


def test_the_closure_is_transitive():
    files = {str(p.relative_to(REPO)) for p in import_closure("flows.finetune")}
    # finetune -> s6damon.train.finetune -> s6damon.salad.backbone -> s6damon.pruning.model_parts
    assert {"s6damon/train/finetune.py", "s6damon/salad/backbone.py", "s6damon/pruning/model_parts.py",
            "s6damon/salad/__init__.py"} <= files
    assert not any(f.startswith("s6damon/safari/") for f in files)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_imported_module_is_a_declared_dep(stage):
    spec = STAGES[stage]
    cmd = spec["cmd"].split()
    assert cmd[:2] == ["python", "-m"] and cmd[2].startswith("flows."), spec["cmd"]
    deps = [d if isinstance(d, str) else next(iter(d)) for d in spec["deps"]]
    code = [d for d in deps if d.split("/")[0] in PACKAGES]
    assert [d for d in code if not (REPO / d).exists()] == [], "dvc.yaml names code that does not exist"
    files = sorted(str(p.relative_to(REPO)) for p in import_closure(cmd[2]) if not p.is_relative_to(CONFIG))
    missing = [f for f in files if not _declared(f, deps)]
    assert missing == [], f"stage {stage!r} imports modules dvc.yaml does not list as its deps: {missing}"
