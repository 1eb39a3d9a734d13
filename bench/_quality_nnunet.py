"""nnU-Net v2 side of ``bench/quality.py``: export the raw dataset, plan/preprocess, train with a budget, predict.

nnU-Net runs from its own venv (``--nnunet-venv``; create it with ``python3 -m venv /tmp/nnunet-venv &&
/tmp/nnunet-venv/bin/pip install torch==2.13.0 && /tmp/nnunet-venv/bin/pip install -c constraints.txt
nnunetv2``). Each configuration (``2d``, ``3d_fullres``, ...) trains nnU-Net's default ``nnUNetTrainer``
on fold ``all`` through a subclass written to the work folder (:data:`DRIVER`) that only adds the
wall-clock budget: it stops mid-epoch when the budget is spent, anneals its poly LR over the budget
instead of 1000 epochs, and runs 5 instead of 50 pseudo-validation batches per epoch (they only feed
nnU-Net's logging). Prediction: Gaussian sliding window, step 0.5, mirroring as ``--tta`` says (nnU-Net's default: on).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

DRIVER = r'''
"""nnU-Net v2, fold "all", one configuration, a wall-clock training budget; then predicts the test images."""
import json, os, sys, time
import torch
from batchgenerators.utilities.file_and_folder_operations import join, load_json
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.paths import nnUNet_preprocessed
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

dataset, configuration, budget_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
device_name, test_dir, out_dir = sys.argv[4:7]
reuse = "reuse" in sys.argv[7:]
mirror = "tta" in sys.argv[7:]  # nnUNetv2_predict mirrors by default


class nnUNetTrainerTimeBudget(nnUNetTrainer):
    """nnUNetTrainer that stops after ``budget_s`` seconds of training (mid-epoch) and anneals its poly LR
    over that budget; 5 pseudo-validation batches per epoch instead of 50 (logging only)."""

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_val_iterations_per_epoch = 5
        self.budget_s = budget_s
        self.iterations_done = 0

    def _fraction(self):
        return min(1.0, (time.time() - self._t0) / self.budget_s)

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        lr = self.initial_lr * (1 - self._fraction()) ** 0.9
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def run_training(self):
        self._t0 = time.time()
        self.on_train_start()
        while self.current_epoch < self.num_epochs and time.time() - self._t0 < self.budget_s:
            self.on_epoch_start()
            self.on_train_epoch_start()
            outputs = []
            for _ in range(self.num_iterations_per_epoch):
                if time.time() - self._t0 >= self.budget_s:
                    break
                outputs.append(self.train_step(next(self.dataloader_train)))
            self.iterations_done += len(outputs)
            if not outputs:
                break
            self.on_train_epoch_end(outputs)
            with torch.no_grad():
                self.on_validation_epoch_start()
                val = [self.validation_step(next(self.dataloader_val))
                       for _ in range(self.num_val_iterations_per_epoch)]
                self.on_validation_epoch_end(val)
            self.on_epoch_end()
        self.train_seconds = time.time() - self._t0
        self.on_train_end()


device = torch.device(device_name)
pre = join(nnUNet_preprocessed, dataset)
plans = load_json(join(pre, "nnUNetPlans.json"))
plans["continue_training"] = False  # what nnunetv2.run.run_training adds (nnU-Net >= 2.7)
trainer = nnUNetTrainerTimeBudget(plans=plans, configuration=configuration,
                                  fold="all", dataset_json=load_json(join(pre, "dataset.json")), device=device)
final = join(trainer.output_folder, "checkpoint_final.pth")
if reuse and os.path.isfile(final):  # --reuse: predict only
    trainer.initialize()
    trainer.load_checkpoint(final)
    trainer.train_seconds = float("nan")
else:
    trainer.run_training()
t0 = time.time()
trainer.set_deep_supervision_enabled(False)  # as nnUNetTrainer.perform_actual_validation
trainer.network.eval()
predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirror,
                            perform_everything_on_device=device.type == "cuda", device=device, allow_tqdm=False)
predictor.manual_initialization(trainer.network, trainer.plans_manager, trainer.configuration_manager,
                                [trainer.network.state_dict()], trainer.dataset_json, type(trainer).__name__,
                                trainer.inference_allowed_mirroring_axes)
n_channels = len(trainer.dataset_json["channel_names"])
cases = sorted(f[: -len("_0000.nii.gz")] for f in os.listdir(test_dir) if f.endswith("_0000.nii.gz"))
predictor.predict_from_files_sequential([[join(test_dir, f"{c}_{k:04d}.nii.gz") for k in range(n_channels)]
                                         for c in cases],
                                        [join(out_dir, c) for c in cases],
                                        save_probabilities=False, overwrite=True)
info = {"epochs": trainer.current_epoch, "iterations": trainer.iterations_done, "train_s": trainer.train_seconds,
        "predict_s": time.time() - t0, "patch_size": list(trainer.configuration_manager.patch_size),
        "batch_size": trainer.configuration_manager.batch_size, "spacing": list(trainer.configuration_manager.spacing)}
print("BENCHJSON " + json.dumps(info), flush=True)
'''


def export_raw(prep: dict[str, Any], raw: Path, dataset: str) -> dict[str, str]:
    """Write the nnU-Net raw dataset of the medseg-ingested train/test cases (medseg's own writer,
    :func:`medseg.io.nnunet_dataset.write_nnunet_dataset`, as ``medseg export-dataset --format nnunet``).

    Returns ``{test case_id: nnU-Net test name}``.
    """
    from medseg.io.case_arrays import channel_names
    from medseg.io.nnunet_dataset import DatasetCase, write_nnunet_dataset

    first = prep["train"][0]
    channels = channel_names(first.volume_path) or ["CT" if str(first.modality).upper() == "CT" else "MRI"]
    training = [DatasetCase(f"case_{i:03d}", c.volume_path) for i, c in enumerate(prep["train"])]
    test = [DatasetCase(f"test_{i:03d}", c.volume_path) for i, c in enumerate(prep["test"])]
    write_nnunet_dataset(raw / dataset, training, test, channels, overwrite=True)
    return {c.case_id: t.name for c, t in zip(prep["test"], test, strict=True)}


def environment(work: Path, threads: int, workers: int, processes: int) -> dict[str, str]:
    """nnU-Net's environment: its three folders under ``work``, thread and process counts, no torch.compile."""
    return {
        **os.environ,
        "nnUNet_raw": str(work / "nnUNet_raw"),
        "nnUNet_preprocessed": str(work / "nnUNet_preprocessed"),
        "nnUNet_results": str(work / "nnUNet_results"),
        "nnUNet_compile": "f",
        "nnUNet_n_proc_DA": str(max(1, workers)),
        "nnUNet_def_n_proc": str(processes),
        "OMP_NUM_THREADS": str(threads),
        "PYTHONPATH": "",
    }


def planned_configurations(preprocessed: Path) -> set[str]:
    """The configurations nnU-Net planned for a dataset (e.g. no ``3d_fullres`` for 2D data)."""
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    return set(plans.get("configurations", {}))


def read_prediction(path: Path) -> np.ndarray:
    """An nnU-Net prediction (NIfTI, ``(x, y, z)``) as a ``(z, y, x)`` array, medseg's order."""
    import nibabel as nib

    return np.asarray(nib.load(str(path)).dataobj).transpose(2, 1, 0)  # type: ignore[attr-defined]
