"""Typed configuration of a medseg run (loaded once at the edge, passed down explicitly)."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_serializer, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelFamily(StrEnum):
    """Trainable model families."""

    CNN = "cnn"
    GAN = "gan"


class DeviceChoice(StrEnum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class DaskConfig(_Strict):
    """Where Dask work runs: an existing scheduler (``address``) or a LocalCluster."""

    address: str | None = Field(None, description="tcp://host:8786 of an existing scheduler; None = LocalCluster")
    n_workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = "4GiB"
    dashboard_address: str | None = Field(
        "127.0.0.1:8787",
        description="where a LocalCluster serves the Dask dashboard (live task stream, progress, worker memory); "
        "when the port is taken, Dask picks a free one and the logged link and the Prefect link artifact say "
        "which. ':8787' serves it on every interface; null: no dashboard",
    )
    worker_profile: bool = Field(
        False,
        description="Dask's statistical profiler in LocalCluster workers (the dashboard's Profile tab). It samples "
        "the running task every 10 ms: ~5 % of the time of header reading. Set it on the workers of an existing "
        "cluster with DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED (deploy/ turns it off)",
    )


class ChannelRule(_Strict):
    """One input channel of a multi-sequence case: the series of a study whose SeriesDescription matches.

    ``match`` (and ``exclude``) are Python regular expressions searched (``re.search``, case-insensitive)
    in the series' SeriesDescription, the only de-identified header field that names the sequence.
    Each image series gets the **first** rule (in config order) that matches it and whose ``exclude``
    does not, so list specific rules first (``FLAIR`` before ``T2``) or exclude (``exclude: FLAIR``).
    """

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.+-]+$", description="channel name, e.g. T1post")
    match: str = Field(min_length=1, description="regex searched in SeriesDescription (case-insensitive)")
    exclude: str | None = Field(None, description="regex: a series whose SeriesDescription matches is not this channel")

    @field_validator("match", "exclude")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{value!r} is not a valid regular expression ({exc})") from exc
        return value


class IngestConfig(_Strict):
    deid_secret: SecretStr | None = Field(
        None, description="key of the patient/study/case hashes (at least 8 characters). Never printed, logged or "
        "stored in Prefect (dumps show '**********'). None: `deid_key_file`, else the workspace's own key file",
    )
    deid_key_file: Path | None = Field(
        None, description="file holding the de-identification key (used when `deid_secret` is not set)"
    )
    files_per_batch: int = Field(
        1024, ge=1, description="files per Dask task when reading headers, and when planning and building "
        "(whole study groups; fewer when needed to keep every worker busy)"
    )
    max_volume_voxels: int = Field(
        2**30, ge=1, description="largest volume ingest decodes, in voxels (slices x rows x columns, from the "
        "headers, checked before any pixel is read); larger ones are quarantined pixel_error",
    )
    volume_files: bool = Field(
        True,
        description="also ingest NIfTI/NRRD files and nnU-Net/MSD dataset folders; false = DICOM only "
        "(e.g. archives where converted NIfTI copies sit next to the DICOM series)",
    )
    channels: list[ChannelRule] = Field(
        default_factory=list,
        description="multi-sequence cases: one rule per input channel, in network channel order; the first "
        "channel's series is the reference grid the others are resampled onto. Empty = one series per case",
    )

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, rules: list[ChannelRule]) -> list[ChannelRule]:
        names = [r.name for r in rules]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"channel names must be unique, {dup} repeat")
        return rules

    @field_validator("deid_secret")
    @classmethod
    def _real_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value()
        if text == REDACTED:
            raise ValueError("is the redacted placeholder '**********', not a key: a config dump was fed back "
                             "(pass the key by config file, MEDSEG_DEID_SECRET or ingest.deid_key_file)")
        if len(text) < 8:
            raise ValueError("must have at least 8 characters")
        return value


#: how pydantic shows a SecretStr in dumps
REDACTED = "**********"
#: how a JSON dump of the config shows each source folder
REDACTED_SOURCE = "<source folder>"


class PreprocessConfig(_Strict):
    target_spacing: tuple[float, float, float] | None = Field(None, description="(z, y, x) mm; None = from data")
    patch_size: tuple[int, int, int] | None = Field(None, description="(z, y, x) voxels; None = from data")
    max_patch_voxels: int = Field(64 * 96 * 96, ge=4096, description="memory budget for the patch")
    anisotropy_threshold: float = Field(3.0, gt=1.0)
    spatial_dims: int | None = Field(
        None, ge=2, le=3, description="3 = 3D U-Net; 2 = slice-wise; None = auto (2D for strongly anisotropic data)"
    )
    freeze_plan: bool = Field(False, description="re-use the saved plan (nightly: new cases don't re-plan)")


class GanConfig(_Strict):
    adversarial_weight: float = Field(0.05, ge=0.0, description="lambda of the adversarial generator loss")
    warmup_epochs: int = Field(2, ge=0, description="epochs before the adversarial term is ramped in")
    discriminator_lr: float = Field(2e-4, gt=0)
    discriminator_channels: int = Field(16, ge=4)


class TrainConfig(_Strict):
    models: list[ModelFamily] = Field(default_factory=lambda: [ModelFamily.CNN, ModelFamily.GAN])
    max_epochs: int = Field(50, ge=1)
    iterations_per_epoch: int = Field(250, ge=1)
    batch_size: int = Field(2, ge=1)
    learning_rate: float = Field(1e-2, gt=0)
    weight_decay: float = Field(3e-5, ge=0)
    momentum: float = Field(0.99, ge=0, lt=1)
    grad_clip: float = Field(12.0, gt=0)
    foreground_oversample: float = Field(0.33, ge=0, le=1)
    filters: list[int] = Field(default_factory=lambda: [32, 64, 128, 256, 320])
    deep_supervision: bool = True
    val_every: int = Field(5, ge=1)
    folds: int = Field(
        1, ge=1, le=20, description="k-fold cross-validation: k > 1 trains k models on k splits of the non-test "
        "cases (train + val; each fold validates on its held-out part) and ships them as one ensemble bundle "
        "whose inference averages the folds' softmax probabilities; 1 = one model on the train split (val split "
        "for validation)",
    )
    max_minutes: float | None = Field(
        None, gt=0, description="safety cap on the wall clock per model (minutes; with folds > 1 for the whole "
        "run, each fold getting the time left divided by the folds left). The budget is max_epochs × "
        "iterations_per_epoch; a run the cap stops is flagged (warning) and not promoted over a champion that "
        "completed its budget, unless promote_capped"
    )
    fit_minutes: float | None = Field(
        None, gt=0, description="plan max_epochs to this many minutes of training on this machine: the step and "
        "validation times are measured first (the measurement leaves no trace in the weights), the planned epochs "
        "are recorded in the bundle (set max_epochs to them to train the same model elsewhere); None = max_epochs"
    )
    promote_capped: bool = Field(
        False, description="allow a run stopped by max_minutes to replace a champion that completed its budget"
    )
    device: DeviceChoice = DeviceChoice.AUTO
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads; None = all cores")
    warm_start: bool = Field(False, description="start from the family's champion (nightly fine-tuning)")
    warm_start_max_epochs: int = Field(10, ge=1, description="epoch budget of a warm-started run")
    amp: bool = Field(
        True, description="bf16 autocast (no GradScaler) on CUDA and on CPUs with AMX/AVX512-BF16; fp32 elsewhere"
    )
    compile_model: bool = Field(False, description="torch.compile the segmenter (CUDA hosts; slow first steps)")
    channels_last: bool = Field(False, description="channels-last(-3d) memory format on CUDA")
    gpu_augmentation: bool = Field(False, description="run patch augmentation on the training device")
    num_workers: int | None = Field(None, ge=0, description="DataLoader workers; None = 0 on CPU, up to 8 on CUDA")
    processes: int = Field(
        1, ge=1, description="data-parallel training processes (DDP over torch.distributed: NCCL on GPUs, one GPU "
        "each; gloo on CPU), started by torchrun from the train stage. batch_size stays the global batch: each "
        "process trains batch_size / processes samples of every step, so the model equals the one-process model "
        "(to float rounding). 1 = train in the stage's own process"
    )
    max_restarts: int = Field(
        2, ge=0, description="with processes > 1: how often torchrun restarts all processes after one of them "
        "fails; they resume from the last checkpoint (end of the last completed epoch)"
    )
    collective_timeout_minutes: float = Field(
        120.0, gt=0, description="with processes > 1: how long a process waits for the others in a collective "
        "(e.g. while rank 0 validates or writes the bundle) before it fails; only bounds a hang, a process that "
        "dies is noticed by torchrun at once"
    )
    gan: GanConfig = Field(default_factory=GanConfig)

    @model_validator(mode="after")
    def _data_parallel_fits(self) -> TrainConfig:
        if self.processes > 1:
            if self.batch_size % self.processes:
                raise ValueError(f"batch_size={self.batch_size} cannot be split over processes={self.processes}: "
                                 "the global batch must be a multiple of the number of processes")
            if self.folds > 1:
                raise ValueError(f"folds={self.folds} cannot train data-parallel yet: set processes=1 or folds=1")
            if self.fit_minutes is not None:
                raise ValueError("fit_minutes cannot plan a data-parallel run yet: set max_epochs (or processes=1)")
        return self


class InferConfig(_Strict):
    overlap: float = Field(0.5, ge=0, lt=1)
    sw_batch_size: int = Field(2, ge=1)
    mirror_tta: bool = False
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="bf16 autocast: auto = on CUDA and on CPUs with AMX/AVX512-BF16 (inference.precision)"
    )
    keep_largest_component: bool | Literal["auto"] = Field(
        "auto",
        description="per class, keep only the largest connected component: auto = the classes where that raised the "
        "validation Dice of the model (bundle metadata `postprocessing`), true = every class, false = none",
    )
    dicom_seg: bool = Field(True, description="also write a DICOM SEG per case (when the source is DICOM)")
    spill_mib: int = Field(
        256, ge=0, description="preprocessed images larger than this (MiB, float32) wait on disk (temporary Zarr)"
    )
    nsd_tolerance_mm: float = Field(2.0, ge=0, description="tolerance of the normalised surface Dice in reports")
    workers: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="Dask workers the cases fan out over (one task per case, one model load per worker): 1 = one "
        "after the other in this process; n > 1 = a LocalCluster of n workers x dask.threads_per_worker threads "
        "(one case per thread, one torch thread each), or on a GPU node one worker per GPU (at most n), each "
        "pinned to its GPU; auto = the cluster at dask.address if set, else one worker per GPU on a node with "
        "several, else on CPU dask.n_workers when they cover every core and have 2 cases each, else in this "
        "process. Outputs are the same files whatever the number of workers (medseg.inference.layout)",
    )


#: bin width of the per-case confidence histogram (:mod:`medseg.qa.confidence`); QA thresholds on it are multiples
CONFIDENCE_BIN = 0.05


class QAConfig(_Strict):
    """Prediction QA: when a case is flagged "look at this" (see docs/ARCHITECTURE.md, prediction QA).

    Each signal is scored against its threshold (score 1.0 = the threshold); a case is flagged when any
    signal reaches 1.0 and ranked by its highest score.
    """

    low_confidence_below: float = Field(
        0.75, gt=0, le=1, description="a predicted-foreground voxel whose winning class has a softmax probability "
        "below this is 'low confidence' (a multiple of 0.05: the stored histogram's bin width)",
    )
    low_confidence_share: float = Field(
        0.5, gt=0, le=1, description="flag a case when more than this share of its predicted-foreground voxels "
        "are low confidence",
    )
    volume_factor: float = Field(
        3.0, gt=1, description="flag a class (and the whole foreground) whose predicted volume is above this times "
        "the largest training label volume, or below the smallest divided by it (an empty mask where every "
        "training case has some)",
    )
    min_model_dice: float = Field(
        0.5, ge=0, lt=1, description="flag a case whose predictions by two models (CNN vs GAN) agree less than "
        "this (foreground-mean Dice)",
    )
    max_overlays: int = Field(20, ge=0, description="overlay PNGs (image + predictions) of the top flagged cases")

    @field_validator("low_confidence_below")
    @classmethod
    def _on_a_bin_edge(cls, value: float) -> float:
        bins = value / CONFIDENCE_BIN
        if abs(bins - round(bins)) > 1e-6:
            raise ValueError(f"{value} is not a multiple of {CONFIDENCE_BIN} (the confidence histogram's bin "
                             f"width): use e.g. {round(bins) * CONFIDENCE_BIN:.2f}")
        return value


class SplitConfig(_Strict):
    test_fraction: float = Field(0.25, ge=0, lt=1, description="held-out cases, never trained on")
    val_fraction: float = Field(0.2, ge=0, lt=1, description="of the remaining training cases")


class NightlyTraining(StrEnum):
    """How the nightly flow trains: fine-tune the champion (``warm``) or train from scratch (``full``)."""

    WARM = "warm"
    FULL = "full"


class DriftCategory(StrEnum):
    """A categorical feature the drift report compares with the training cases (DICOM attribute in brackets)."""

    MODALITY = "modality"  # Modality
    MANUFACTURER = "manufacturer"  # Manufacturer
    MODEL = "model"  # ManufacturerModelName
    PROTOCOL = "protocol"  # ProtocolName


class OpsConfig(_Strict):
    """Unattended operation: schedules, failure notifications, bulk batching (see docs/OPERATIONS.md)."""

    webhook_url: str | None = Field(None, description="POST a JSON message here when a flow run fails")
    webhook_timeout_s: float = Field(10.0, gt=0, description="timeout of one webhook POST (seconds)")
    timezone: str = Field("UTC", min_length=1, description="IANA zone of the schedules, e.g. Europe/Berlin")
    nightly_cron: str = Field("0 2 * * *", min_length=9, description="cron of the nightly retrain (in `timezone`)")
    nightly_training: NightlyTraining = Field(NightlyTraining.WARM, description="warm = fine-tune the champion")
    nightly_train_minutes: float | None = Field(
        None, gt=0, description="time cap per model in the nightly run (None = train.max_minutes)"
    )
    bulk_files_per_task: int = Field(
        50000, ge=1, description="files per Prefect task in the bulk flow (≈10 s of Dask work per task on 2 workers)"
    )
    bulk_tasks_in_flight: int = Field(2, ge=1, description="bulk batch tasks running at once (each fans out on Dask)")
    transient_retries: int = Field(3, ge=0, description="retries of a task failing with a transient error")
    retry_backoff_s: float = Field(10.0, ge=0, description="first retry delay; doubles per retry, with jitter")
    drift_max_share: float | None = Field(
        None, ge=0, le=1, description="nightly: hold promotion when more than this share of the new cases is out "
        "of distribution (drift report); None = report only"
    )
    drift_geometry_factor: float = Field(
        1.5, gt=1, description="drift: spacing and shape may be up to this factor outside the training range"
    )
    drift_intensity_margin: float = Field(
        0.25, ge=0, description="drift: intensity statistics may lie this share of the training intensity range "
        "(median p99 - p1) outside the training range"
    )
    drift_categories: list[DriftCategory] = Field(
        default_factory=lambda: list(DriftCategory),
        description="drift: categorical features flagged when a new case has a value no training case has",
    )


class MedsegConfig(_Strict):
    """Root of the configuration (``configs/*.yaml``)."""

    name: str = "medseg"
    workspace: Path = Path("medseg-workspace")
    sources: list[Path] = Field(default_factory=list, description="DICOM folders to ingest")
    seed: int = 0
    dask: DaskConfig = Field(default_factory=DaskConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    infer: InferConfig = Field(default_factory=InferConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    ops: OpsConfig = Field(default_factory=OpsConfig)
    qa: QAConfig = Field(default_factory=QAConfig)

    @field_serializer("sources", when_used="json")
    def _hide_sources(self, sources: list[Path]) -> list[str]:
        """JSON dumps (what Prefect stores of a flow's config) show no source folder: folder names are
        often patient names or dates. :func:`medseg.config_loader.config_dict` shows them."""
        return [REDACTED_SOURCE] * len(sources)

    @field_validator("sources")
    @classmethod
    def _real_sources(cls, sources: list[Path]) -> list[Path]:
        if any(str(s) == REDACTED_SOURCE for s in sources):
            raise ValueError("holds the redacted placeholder of a config dump; give the source folders")
        return sources
