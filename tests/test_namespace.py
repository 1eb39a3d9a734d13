"""One installed namespace: the folders tasks/, flows/ and cli/ are the packages medseg.tasks, medseg.flows
and medseg.cli (setup.py), so no code imports them by their folder names; the library (medseg/) stays
free of Prefect, and importing medseg loads none of the Prefect layers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_FOLDER_IMPORT = re.compile(r"^\s*(from|import) (tasks|flows|cli)(\.|\s|$)", flags=re.M)


def _sources(*folders: str) -> list[Path]:
    return [p for folder in folders for p in sorted((REPO / folder).rglob("*.py"))]


def test_nothing_imports_the_folder_names() -> None:
    offenders = [f"{p.relative_to(REPO)}: {m.group(0).strip()}"
                 for p in _sources("medseg", "tasks", "flows", "cli", "tests", "deploy", "bench")
                 for m in _FOLDER_IMPORT.finditer(p.read_text())]
    assert not offenders, "import medseg.tasks/.flows/.cli instead:\n" + "\n".join(offenders)


def test_the_library_never_imports_prefect() -> None:
    offenders = [str(p.relative_to(REPO)) for p in _sources("medseg")
                 if re.search(r"^\s*(from|import) prefect\b", p.read_text(), flags=re.M)]
    assert not offenders
    code = "import sys, medseg.config; print(sorted(m for m in sys.modules if m.startswith(('prefect', 'medseg.'))))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "prefect" not in loaded and "medseg.tasks" not in loaded and "medseg.flows" not in loaded
