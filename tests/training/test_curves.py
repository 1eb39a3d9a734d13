"""medseg.training.curves: the training-curves PNG."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from medseg.training.curves import plot_curves


def test_plot_curves_writes_a_png(tmp_path: Path) -> None:
    history = [
        {"epoch": 0, "loss": 1.0},
        {"epoch": 1, "loss": 0.8, "d_loss": 0.3, "g_adv": 0.2, "val_mean_dice": 0.4, "val_dice": {"organ": 0.5}},
        {"epoch": 2, "loss": 0.6, "val_mean_dice": 0.6, "val_dice": {"organ": 0.7, "lesion": None}},
    ]
    out = plot_curves(history, tmp_path / "sub" / "curves.png", title="run")
    assert out == tmp_path / "sub" / "curves.png"
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (1000, 400)
