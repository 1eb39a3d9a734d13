"""Tables and the RESULT line of ``bench/quality.py``.

Every metric row is one (fold, seed, test case, tool, class) with the keys of
``medseg.evaluation.metrics.binary_metrics``. A tool's **mean Dice** of one repeat is the mean over its
test cases of the mean Dice over the foreground classes (nnU-Net's convention); the tables show the mean
over repeats and, with ``--repeats`` > 1, the standard deviation between repeats.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np

TOOL_NAMES = {"cnn": "medseg CNN", "gan": "medseg GAN"}
RESULT_KEYS = {"cnn": "medseg_dice", "gan": "gan_dice"}


def tool_name(tool: str) -> str:
    return TOOL_NAMES.get(tool, tool.replace("nnunet_", "nnU-Net "))


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def repeat_dice(rows: list[dict[str, Any]], tool: str) -> list[float]:
    """Mean Dice (cases × classes) of each repeat (seed) of a tool."""
    out = []
    for seed in sorted({r["seed"] for r in rows if r["tool"] == tool}):
        by_case: dict[tuple[int, str], list[float]] = {}
        for r in rows:
            if r["tool"] == tool and r["seed"] == seed:
                by_case.setdefault((r["fold"], r["case"]), []).append(r["Dice"])
        out.append(_nanmean([_nanmean(v) for v in by_case.values()]))
    return out


def summary(rows: list[dict[str, Any]], tool: str, classes: list[str]) -> dict[str, float]:
    """A tool's means: per-class Dice, mean Dice and its sd over repeats, HD95, precision, recall, lesion F1."""
    mine = [r for r in rows if r["tool"] == tool]
    dice = repeat_dice(rows, tool)
    out = {f"Dice {c}": _nanmean([r["Dice"] for r in mine if r["class"] == c]) for c in classes}
    out["mean Dice"] = float(np.mean(dice))
    out["sd"] = float(np.std(dice, ddof=1)) if len(dice) > 1 else float("nan")
    for key in ("HD95", "Precision", "Recall", "Lesion_F1"):
        out[key] = _nanmean([r[key] for r in mine if math.isfinite(r[key])])
    return out


def print_report(rows: list[dict[str, Any]], runs: list[dict[str, Any]], args: argparse.Namespace,
                 folds: list[Any]) -> None:
    """Print the quality table, the per-fold table (several folds), the training runs and the RESULT line."""
    from medseg.hardware import cpu_model, cpu_precision

    tools = list(dict.fromkeys(r["tool"] for r in rows))
    classes = list(dict.fromkeys(r["class"] for r in rows))
    n_cases = len({(r["fold"], r["case"]) for r in rows})
    import torch

    where = (f"GPU {torch.cuda.get_device_name()}" if args.device != "cpu" and torch.cuda.is_available()
             else f"CPU {cpu_model()}, {args.threads} threads, medseg precision {cpu_precision()}")
    print(f"\nData: {'; '.join(f.name for f in folds)}; {n_cases} test case(s) in {len(folds)} fold(s)")
    print(f"Budget: {args.minutes} min of training per model, {args.repeats} repeat(s); {where}")
    means = {t: summary(rows, t, classes) for t in tools}
    cols = [*(f"Dice {c}" for c in classes), "mean Dice", "sd", "HD95", "Precision", "Recall", "Lesion_F1"]
    print("\n| tool | " + " | ".join(c.replace("HD95", "HD95 mm") for c in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for t in tools:
        print(f"| {tool_name(t)} | " + " | ".join(_fmt(means[t][c]) for c in cols) + " |")
    if len(folds) > 1:
        print("\nPer fold (mean Dice of its test cases, first repeat):")
        print("| fold | test | " + " | ".join(tool_name(t) for t in tools) + " |")
        print("|---|---|" + "---|" * len(tools))
        for fold in folds:
            sub = [r for r in rows if r["fold"] == fold.index and r["seed"] == args.seed]
            print(f"| {fold.index} | {fold.name} | " + " | ".join(_fmt(repeat_dice(sub, t)[0]) if any(
                r["tool"] == t for r in sub) else "" for t in tools) + " |")
    print("\nTraining runs: epochs / iterations / training s / prediction s / patch / batch / stopped by")
    for r in runs:
        if r["tool"] == "prepare":
            print(f"fold {r['fold']}: medseg ingest {_fmt(r['ingest_s'])} s, medseg preprocess "
                  f"{_fmt(r['medseg_preprocess_s'])} s, nnU-Net plan+preprocess {_fmt(r['nnunet_preprocess_s'])} s")
            continue
        print(f"fold {r['fold']} seed {r['seed']} {tool_name(r['tool']):<20} {r.get('epochs')} / "
              f"{r.get('iterations')} / {_fmt(r.get('train_s'))} / {_fmt(r.get('predict_s'))} / "
              f"{r.get('patch_size')} / {r.get('batch_size')} / {r.get('stopped', 'budget')}")
    result = {RESULT_KEYS.get(t, f"{t}_dice"): means[t]["mean Dice"] for t in tools}
    nnunet = [means[t]["mean Dice"] for t in tools if t.startswith("nnunet_")]
    result["nnunet_dice"] = max(nnunet) if nnunet else float("nan")
    result.setdefault("medseg_dice", float("nan"))
    result.setdefault("gan_dice", float("nan"))
    for t in ("cnn", "gan"):
        if t in means:
            result[f"{RESULT_KEYS[t].split('_')[0]}_lesion_f1"] = means[t]["Lesion_F1"]
    print("RESULT " + " ".join(f"{k}={v:.4f}" for k, v in result.items())
          + f" minutes={args.minutes:g} repeats={args.repeats} precision={cpu_precision()}")
