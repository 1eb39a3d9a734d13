"""Training curves figure (loss and validation Dice per epoch), rendered with the Agg canvas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_curves(history: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Write a PNG with the train loss (and GAN D/adv losses when present) and val Dice per epoch.

    Args:
        history: one dict per epoch with ``epoch``, ``loss`` and, on validated epochs, ``val_mean_dice``
            and ``val_dice`` (``{class name: dice}``); GAN epochs may add ``d_loss``, ``g_adv``, ``d_acc``.
        path: output ``.png`` path.
        title: figure title.
    """
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax_loss, ax_dice = fig.subplots(1, 2)
    epochs = [h["epoch"] + 1 for h in history]
    for key, label in (("loss", "train loss"), ("d_loss", "D loss"), ("g_adv", "G adversarial")):
        points = [(e, h[key]) for e, h in zip(epochs, history, strict=True) if h.get(key) is not None]
        if points:
            ax_loss.plot(*zip(*points, strict=True), marker=".", label=label)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    if ax_loss.get_legend_handles_labels()[0]:
        ax_loss.legend(loc="best")
    ax_loss.grid(alpha=0.3)
    val = [(e, h) for e, h in zip(epochs, history, strict=True) if h.get("val_mean_dice") is not None]
    if val:
        ax_dice.plot([e for e, _ in val], [h["val_mean_dice"] for _, h in val], marker="o", lw=2, label="mean")
        names = sorted({n for _, h in val for n in (h.get("val_dice") or {})})
        for name in names:
            pts = [(e, h["val_dice"][name]) for e, h in val if (h.get("val_dice") or {}).get(name) is not None]
            if pts:
                ax_dice.plot(*zip(*pts, strict=True), marker=".", ls="--", label=name)
    ax_dice.set_ylim(0, 1)
    ax_dice.set_xlabel("epoch")
    ax_dice.set_ylabel("validation Dice")
    if ax_dice.get_legend_handles_labels()[0]:
        ax_dice.legend(loc="lower right")
    ax_dice.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
