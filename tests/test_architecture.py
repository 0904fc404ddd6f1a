"""The layers of docs/architecture.md, enforced: every .py file is parsed (ast, nothing is
imported or run) and each of its imports, at the top or inside a function, is held against
the rule. The library never imports a program, a trainer or a view; inside the library a
package imports only its own modules and the packages below it."""

from __future__ import annotations

import ast
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
CHECKED = ("fer_core", "trainers", "dashboard", "scripts", "benchmarks")

# The library's floors, ground first: a library module may import its own package and the
# floors below it, never one beside or above it.
LIBRARY_FLOORS = [
    {"fer_core.paths", "fer_core.classes", "fer_core.device", "fer_core.atomic"},
    {"fer_core.data", "fer_core.models"},
    {"fer_core.runs"},
    {"fer_core.inference"},
    {"fer_core.faces", "fer_core.evaluation"},
    {"fer_core"},  # the package's face: `from fer_core import Recognizer`
]
PROGRAMS = "fer_core.programs"
# The dashboard starts training as a subprocess through the job queue; the rest of trainers/
# (the training code itself) is not for it.
VIEWS_MAY_USE = ("trainers.jobs",)


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def library_place(module: str) -> tuple[int, str] | None:
    """(floor, package) of a library module; None outside the library."""
    if within(module, PROGRAMS) or not within(module, "fer_core"):
        return None
    if module == "fer_core":
        return len(LIBRARY_FLOORS) - 1, "fer_core"
    for floor, packages in enumerate(LIBRARY_FLOORS[:-1]):
        for package in packages:
            if within(module, package):
                return floor, package
    raise AssertionError(f"{module}: a library module on no floor; add its package to LIBRARY_FLOORS")


def layer(module: str) -> str:
    if within(module, PROGRAMS):
        return "programs"
    if within(module, "fer_core"):
        return "library"
    return {"trainers": "trainers", "dashboard": "views"}.get(module.split(".")[0], "tools")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(root: Path, path: Path, mine: set[str]) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file, relative ones resolved; `from X
    import name` counts as X.name where that is one of `mine` (a module), else as X."""
    module = module_name(root, path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = {f"{base}.{alias.name}" for alias in node.names}
            found += [(node.lineno, name if name in mine else base) for name in sorted(names)]
    return found


def own_modules(root: Path) -> set[str]:
    return {module_name(root, p) for d in CHECKED if (root / d).is_dir() for p in (root / d).rglob("*.py")}


def refusal(importer: str, imported: str) -> str | None:
    """Why `importer` may not import `imported` (both modules of the project), or None."""
    here, there = layer(importer), layer(imported)
    if there == "tools" and here != "tools":
        return "scripts/ and benchmarks/ are run, never imported by the project"
    if here == "library":
        if there != "library":
            return f"the library imports no {there}"
        (floor, package), (their_floor, their_package) = library_place(importer), library_place(imported)
        if package != their_package and their_floor >= floor:
            return f"{package} (floor {floor}) imports only floors below it, not {their_package} ({their_floor})"
    if here == "programs" and there in ("trainers", "views"):
        return f"a program imports no {there}"
    if here == "trainers" and there in ("programs", "views"):
        return f"a trainer imports no {there}"
    if here == "views" and (there == "programs" or there == "trainers" and not imported.startswith(VIEWS_MAY_USE)):
        return f"a view imports the library (and the job queue), not {imported}"
    return None


def violations(root: Path) -> list[str]:
    mine = own_modules(root)
    found = []
    for directory in CHECKED:
        for path in sorted((root / directory).rglob("*.py")) if (root / directory).is_dir() else []:
            importer = module_name(root, path)
            for line, imported in imported_modules(root, path, mine):
                why = refusal(importer, imported) if imported in mine and imported != importer else None
                if why:
                    found.append(f"{path.relative_to(root)}:{line} imports {imported}: {why}")
    return found


def test_every_import_keeps_the_layers():
    assert violations(PROJECT) == []


def test_every_library_module_stands_on_a_floor():
    for module in own_modules(PROJECT):
        if layer(module) == "library":
            library_place(module)  # raises for a package the floors do not name


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_check_finds_each_kind_of_violation(tmp_path):
    """The checker itself, on a small tree that breaks each rule once (and keeps it once)."""
    root = write(
        tmp_path,
        {
            "fer_core/__init__.py": "from .faces import recognizer\n",
            "fer_core/classes.py": "",
            "fer_core/runs/__init__.py": "",
            "fer_core/runs/runstore.py": "from ..classes import X\n",
            "fer_core/inference/__init__.py": "",
            "fer_core/inference/registry.py": "from ..runs.runstore import RunStore\n",
            "fer_core/faces/__init__.py": "",
            "fer_core/faces/recognizer.py": "from ..inference import registry\n",
            "fer_core/data/__init__.py": "",
            "fer_core/data/fer2013.py": "from .. import classes\ndef f():\n    import fer_core.inference.registry\n",
            "fer_core/evaluation/__init__.py": "",
            "fer_core/evaluation/metrics.py": "from ..faces.recognizer import Recognizer\n",
            "fer_core/programs/__init__.py": "",
            "fer_core/programs/serve.py": "import dashboard.common\nfrom ..faces.recognizer import R\n",
            "fer_core/models/__init__.py": "from fer_core.programs import serve\n",
            "trainers/__init__.py": "",
            "trainers/jobs.py": "",
            "trainers/train.py": "from dashboard import common\nfrom fer_core.runs.runstore import RunStore\n",
            "dashboard/__init__.py": "",
            "dashboard/common.py": "from trainers.jobs import JobQueue\nimport trainers.train\n",
            "scripts/ship_model.py": "import trainers.train\n",
            "benchmarks/serve_load.py": "import benchmarks.faces_dev\n",
            "benchmarks/faces_dev.py": "",
            "fer_core/atomic.py": "import benchmarks.serve_load\n",
        },
    )
    found = violations(root)
    expected = [
        "fer_core/atomic.py:1 imports benchmarks.serve_load",
        "fer_core/data/fer2013.py:3 imports fer_core.inference.registry",  # up a floor, inside a function
        "fer_core/evaluation/metrics.py:1 imports fer_core.faces.recognizer",  # beside it, same floor
        "fer_core/models/__init__.py:1 imports fer_core.programs",  # the library never imports a program
        "fer_core/programs/serve.py:1 imports dashboard.common",
        "trainers/train.py:1 imports dashboard",
        "dashboard/common.py:2 imports trainers.train",
    ]
    for start in expected:
        assert any(v.startswith(start) for v in found), (start, found)
    kept = ["fer_core/__init__.py", "runstore.py", "registry.py", "recognizer.py", "serve.py:2", "train.py:2"]
    kept += ["common.py:1", "fer2013.py:1", "scripts/", "benchmarks/"]
    wrongly = [
        v for v in found for where in [v.split()[0]] if any(where.startswith(k) or f"/{k}" in where for k in kept)
    ]
    assert not wrongly, wrongly


# A reader holds a file or a function at a time: docs/architecture.md's limits, with a little
# slack for a docstring (trainers/cli.py, the two commands fer-train and fer-eval, is 409 lines).
MAX_FILE_LINES, MAX_FUNCTION_LINES = 410, 80
SIZED = ("fer_core", "trainers", "dashboard")


def oversized(root: Path) -> list[str]:
    found = []
    for folder in SIZED:
        for path in sorted((root / folder).rglob("*.py")):
            text = path.read_text()
            where = path.relative_to(root)
            if len(text.splitlines()) > MAX_FILE_LINES:
                found.append(f"{where}: {len(text.splitlines())} lines")
            functions = [n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
            for node in functions:
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{where}: {node.name} is {length} lines")
    return found


def test_no_file_or_function_outgrows_a_reader():
    assert oversized(PROJECT) == []


def test_the_size_check_finds_a_long_file_and_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    write(tmp_path, {"fer_core/long.py": f"def long():\n{body}\n", "trainers/big.py": "x = 1\n" * (MAX_FILE_LINES + 1)})
    assert oversized(tmp_path) == ["fer_core/long.py: long is 81 lines", f"trainers/big.py: {MAX_FILE_LINES + 1} lines"]
