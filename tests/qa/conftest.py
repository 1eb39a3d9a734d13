"""QA fixtures (the data: :mod:`qa_cases`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from qa_cases import QAWorkspace, qa_config, write_cases

from medseg.workspace import Workspace


@pytest.fixture(scope="module")
def predicted_cnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace whose five cases the oracle "cnn" predicted (``predictions/cnn/v1``); copy it before changing it."""
    torch.set_num_threads(2)
    ws = Workspace.at(tmp_path_factory.mktemp("qa") / "ws").ensure()
    write_cases(ws)
    QAWorkspace(ws, qa_config(ws)).predict("cnn")
    return ws.root


@pytest.fixture()
def qa_workspace(predicted_cnn: Path, tmp_path: Path) -> QAWorkspace:
    """A fresh copy of :func:`predicted_cnn` (the cases, fingerprint and the cnn predictions)."""
    torch.set_num_threads(2)
    root = tmp_path / "ws"
    shutil.copytree(predicted_cnn, root)
    ws = Workspace.at(root)
    return QAWorkspace(ws, qa_config(ws))
