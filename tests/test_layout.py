"""The house rules of the code layout (docs/ARCHITECTURE.md, "Layers"), checked on the source tree:
small modules, no private name reached across modules, file formats and runtime plumbing below the
stages (the import direction), zarr and SQL only behind ``medseg/io``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 450
#: the installed package of every repository folder (setup.py's package_dir)
PACKAGES = {"medseg": "medseg", "tasks": "medseg.tasks", "flows": "medseg.flows", "cli": "medseg.cli"}
#: packages of medseg/ that are stages or build on them; nothing below them imports them
STAGE_PACKAGES = ("ingest", "preprocess", "training", "inference", "evaluation", "report", "drift", "qa", "stages",
                  "ops", "demo")


def _modules(*folders: str) -> list[Path]:
    return [p for folder in folders for p in sorted((REPO / folder).rglob("*.py"))]


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = [PACKAGES[rel.parts[0]], *rel.parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, str | None]]:
    """``(module, name)`` of every ``import module`` (name None) and ``from module import name``."""
    out: list[tuple[str, str | None]] = []
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.extend((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.extend((base, alias.name) for alias in node.names)
    return out


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_library_module_is_over_the_line_limit() -> None:
    long = {str(p.relative_to(REPO)): n for p in _modules("medseg")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules (at most {MAX_LINES} lines): {long}"


def test_no_private_name_is_imported_from_another_module() -> None:
    """``from medseg.x import _name`` couples a module to another's internals. A private *submodule*
    imported by its own package (``medseg.io.dicom._walk`` from ``medseg.io.dicom.*``) is the exception."""
    offenders = []
    for path in _modules("medseg", "tasks", "flows", "cli"):
        package = _module_name(path).rpartition(".")[0] if path.name != "__init__.py" else _module_name(path)
        for module, name in _imports(path):
            if not module.startswith("medseg"):
                continue
            parts = module.split(".") + ([name] if name else [])
            for i, part in enumerate(parts):
                if _is_private(part) and ".".join(parts[:i]) != package:
                    offenders.append(f"{path.relative_to(REPO)}: {module} {name or ''}".strip())
                    break
    assert not offenders, "private names imported across modules:\n" + "\n".join(offenders)


@pytest.mark.parametrize("lower", ["medseg.io", "medseg.runtime", "medseg.geometry", "medseg.config"])
def test_formats_and_runtime_never_import_the_stages(lower: str) -> None:
    """The import direction: stages -> io/runtime -> geometry/config, never back up."""
    folder = REPO / Path(*lower.split("."))
    files = sorted(folder.rglob("*.py")) if folder.is_dir() else [folder.with_suffix(".py")]
    assert files and files[0].exists(), f"{lower} not found"
    upward = tuple(f"medseg.{p}" for p in STAGE_PACKAGES)
    offenders = [f"{p.relative_to(REPO)}: {m}" for p in files for m, _ in _imports(p)
                 if m == "medseg.tasks" or m.startswith(("medseg.tasks.", "medseg.flows", "medseg.cli"))
                 or any(m == u or m.startswith(u + ".") for u in upward)]
    assert not offenders, f"{lower} imports a layer above it:\n" + "\n".join(offenders)


@pytest.mark.parametrize("library", ["zarr", "sqlite3"])
def test_storage_libraries_are_used_behind_medseg_io_only(library: str) -> None:
    """Every on-disk format has one reader and one writer in ``medseg/io``; sqlite3's exception types
    may be named elsewhere (error classification), its connections may not."""
    offenders = []
    for path in _modules("medseg", "tasks", "flows", "cli"):
        if path.is_relative_to(REPO / "medseg" / "io"):
            continue
        for module, name in _imports(path):
            if module == library and (library != "sqlite3" or name is None):
                text = path.read_text()
                if library == "sqlite3" and "sqlite3.connect" not in text:
                    continue  # `import sqlite3` for sqlite3.Error / OperationalError checks
                offenders.append(str(path.relative_to(REPO)))
    assert not offenders, f"{library} used outside medseg/io: {sorted(set(offenders))}"
