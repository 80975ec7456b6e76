"""The package's floors and the direction of their imports (the README's Layout section).

Every ``import`` of every module under ``s3/`` is read from its source (function-level imports
included), so a rule broken anywhere fails here, naming the file and the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "s3"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """Every module ``name`` imports: s3 modules resolved to files (``from pkg import module`` names the
    module), third-party ones by their top-level name."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
    return {m if m.startswith("s3.") or m == "s3" else m.split(".")[0] for m in found}


GRAPH = {name: imports_of(name) for name in MODULES}


def s3_imports(name: str) -> set[str]:
    return {m for m in GRAPH[name] if m in MODULES}


def floor(name: str) -> str:
    return ".".join(name.split(".")[:2])


def violations(source_floor: str, allowed: set[str]) -> list[str]:
    return [
        f"{MODULES[name].relative_to(REPO_ROOT)} imports {target}"
        for name in MODULES
        if floor(name) == source_floor
        for target in sorted(s3_imports(name))
        if floor(target) not in allowed | {source_floor}
    ]


def test_config_imports_nothing_else_of_s3() -> None:
    assert violations("s3.config", set()) == []


def test_model_imports_only_config() -> None:
    assert violations("s3.model", {"s3.config"}) == []


@pytest.mark.parametrize("lower", ["s3.data", "s3.eval"])
def test_data_and_scoring_never_reach_up(lower: str) -> None:
    assert violations(lower, {"s3.config", "s3.data"}) == []


@pytest.mark.parametrize("layer", ["s3.train", "s3.inference"])
def test_training_and_inference_build_on_the_lower_floors_only(layer: str) -> None:
    assert violations(layer, {"s3.config", "s3.data", "s3.model"}) == []


def test_the_second_model_sits_between_the_engines_and_the_jobs() -> None:
    """s3.stma (STMA) builds on every lower floor; only the jobs layer plugs it in."""
    assert violations("s3.stma", {"s3.config", "s3.data", "s3.model", "s3.train", "s3.inference"}) == []
    offenders = [
        f"{MODULES[name].relative_to(REPO_ROOT)} imports {target}"
        for name in MODULES
        if floor(name) not in ("s3.stma", "s3.run")
        for target in s3_imports(name)
        if floor(target) == "s3.stma"
    ]
    assert offenders == []


def test_only_the_jobs_layer_imports_the_jobs_layer() -> None:
    offenders = [
        f"{MODULES[name].relative_to(REPO_ROOT)} imports {target}"
        for name in MODULES
        if floor(name) != "s3.run"
        for target in s3_imports(name)
        if floor(target) == "s3.run"
    ]
    assert offenders == []


def test_the_scorer_package_never_loads_torch() -> None:
    """Follow every s3 import from s3.eval (with the packages Python runs on the way) to the
    third-party modules it loads."""
    seen: set[str] = set()
    todo = [name for name in MODULES if floor(name) == "s3.eval"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        todo.extend(p for p in parents if p in MODULES)
        todo.extend(s3_imports(name))
    loading_torch = sorted(n for n in seen if {"torch", "torchvision"} & GRAPH[n])
    assert loading_torch == []


def test_no_import_cycle_between_files() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(s3_imports(name)):
            if target == name:
                continue
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for module in MODULES:
        if module not in state:
            visit(module)


def test_every_script_is_a_one_call_shell_over_the_jobs_layer() -> None:
    """Scripts import only the jobs layer, the config registration and the command-line plumbing,
    and hold no function but ``main``."""
    allowed = {"__future__", "sys", "hydra", "omegaconf", "s3.config", "s3.run"}
    for script in sorted((REPO_ROOT / "scripts").glob("*.py")):
        tree = ast.parse(script.read_text())
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        outside = sorted(m for m in modules if not any(m == a or m.startswith(a + ".") for a in allowed))
        assert outside == [], f"{script.name} imports {outside}"
        functions = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        assert functions in ([], ["main"]), f"{script.name} defines {functions}"
