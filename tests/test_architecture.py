"""The architecture (DESIGN.md) as checks.

Import direction: `pipeline` imports no stage; `labelgen` imports neither `student` nor
`evaluation`; `student` never imports `labelgen` (what "never load a teacher at train time" means
in code) or `evaluation`. Checked by importing every module of the package in a fresh process.

No import cycles: the graph of explicit imports between the project's modules (every `import`
and `from ... import`, lazy ones inside functions and `TYPE_CHECKING` ones included) is acyclic.
`from package import name` counts as an import of `package.name` when that is a module.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "labelgen", "student", "evaluation")

CHECK = """
import importlib, pkgutil, sys
package = importlib.import_module("{package}")
for mod in pkgutil.walk_packages(package.__path__, "{package}."):
    if mod.name.endswith("__main__"):
        continue
    importlib.import_module(mod.name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in {forbidden})
print(bad)
sys.exit(1 if bad else 0)
"""


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("pipeline", {"labelgen", "student", "evaluation"}),
        ("labelgen", {"student", "evaluation"}),
        ("student", {"labelgen", "evaluation"}),
    ],
)
def test_import_direction(package, forbidden):
    code = CHECK.format(package=package, forbidden=sorted(forbidden))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, f"{package} imports {done.stdout.strip()} {done.stderr[-2000:]}"


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    modules = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that module `name` imports anywhere in its file."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if full in modules else base)
    return (out & set(modules)) - {name}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_module_takes_part_in_an_import_cycle():
    modules = project_modules()
    graph = {name: imported_modules(name, path, modules) for name, path in modules.items()}
    assert find_cycles(graph) == []


def test_the_cycle_check_finds_a_cycle(tmp_path):
    """The check itself: a lazy import back into a module is a cycle, TYPE_CHECKING too."""
    pkg = tmp_path / "pipeline"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pipeline import b\n")
    (pkg / "b.py").write_text("def f():\n    from pipeline.c import g\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pipeline.a\n"
    )
    (pkg / "d.py").write_text("from .a import x\n")
    modules = project_modules(tmp_path)
    graph = {name: imported_modules(name, path, modules) for name, path in modules.items()}
    assert graph["pipeline.d"] == {"pipeline.a"}
    assert find_cycles(graph) == [["pipeline.a", "pipeline.b", "pipeline.c"]]


MAX_LINES = 400
FMT_SKIP = re.compile(r"\s*# fmt: skip\s*$", re.MULTILINE)


def formatted_lengths(files: dict[str, Path], workdir: Path) -> dict[str, int]:
    """Lines of each file as the formatter writes it with every `# fmt: skip` removed: a marker
    may align a table, but cannot hold a module under the cap."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name, path in files.items():
        copy = workdir / f"{name}.py"
        copy.write_text(FMT_SKIP.sub("", path.read_text()))
    config = ["--config", str(ROOT / "pyproject.toml")]
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--quiet", *config, str(workdir)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return {name: len((workdir / f"{name}.py").read_text().splitlines()) for name in files}


def test_no_project_module_is_over_400_lines_as_formatted(tmp_path):
    lengths = formatted_lengths(project_modules(), tmp_path)
    long = {name: n for name, n in lengths.items() if n > MAX_LINES}
    assert long == {}


def test_the_line_cap_counts_what_a_fmt_skip_marker_packs(tmp_path):
    packed = "x = f(\n    1, 2,\n    3,\n)  # fmt: skip\n"
    (tmp_path / "packed.py").write_text(packed)
    lengths = formatted_lengths({"packed": tmp_path / "packed.py"}, tmp_path / "out")
    assert lengths == {"packed": 5}  # the formatter puts each argument on its own line
