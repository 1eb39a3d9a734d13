"""Multi-sequence cases: pick one image series per channel rule in each study (``ingest.channels``).

Pure bookkeeping on assembled stacks (no pixel I/O), called by :func:`medseg.ingest.case_plan.plan_ingest`
when the config has channel rules:

* each valid image stack of a study gets the **first** rule (in config order) whose ``match`` regex is
  found in its SeriesDescription (case-insensitive ``re.search``) and whose ``exclude`` regex is not;
  list specific rules before general ones (``FLAIR`` before ``T2``) or use ``exclude``;
* a study with exactly one series per rule becomes one case: the first rule's series is the reference
  (its grid, its case id, its label sources); the other channels are read and resampled onto its
  grid by :func:`medseg.ingest.build.build_case`; label sources linked to another channel's series move
  to the reference;
* a study lacking a channel (or with two series for one channel) builds no case: each of its matched
  series gets a quarantine row ``missing_channel`` (``channel_ambiguous``) naming the study and the channel;
* series that match no rule are recorded with status ``unused``;
* an MSD dataset's 4D image (``dataset.json`` ``modality`` names its channels) and an nnU-Net v2 case's
  channel files (``channel_names``, ``<case>_0000``, ``_0001`` ...) map their channels onto the rules by
  those names (:func:`plan_file_channels`: a channel named like the rule first, else the first the rule
  matches); a case lacking one is quarantined ``missing_channel``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.geometry import Geometry
from medseg.ingest.build import CaseJob, ChannelSource, LabelSource
from medseg.ingest.stacks import Stack
from medseg.ingest.volume_file_cases import FilePlan
from medseg.io.reasons import Reason

#: ``(name, match, exclude)`` of a channel rule (``medseg.config.ChannelRule``), picklable for workers
RuleTuple = tuple[str, str, str | None]


def channel_of(description: str, rules: Sequence[RuleTuple]) -> str | None:
    """Name of the first rule that matches ``description`` (a SeriesDescription), None when none does."""
    for name, match, exclude in rules:
        if re.search(match, description, re.IGNORECASE) and not (
            exclude and re.search(exclude, description, re.IGNORECASE)
        ):
            return name
    return None


@dataclass
class ChannelPlan:
    """What channel rules made of a group's image stacks.

    Attributes:
        extra: ``id(reference stack)`` -> its non-reference channels (rule order).
        names: ``id(reference stack)`` -> every channel name (rule order, reference first).
        rows: stacks that are no case of their own: ``(stack, status, reason, message)``.
    """

    extra: dict[int, list[ChannelSource]] = field(default_factory=dict)
    names: dict[int, tuple[str, ...]] = field(default_factory=dict)
    rows: list[tuple[Stack, str, Reason | None, str]] = field(default_factory=list)

    @property
    def not_cases(self) -> set[int]:
        return {id(s) for s, _, _, _ in self.rows}


def _describe(stack: Stack) -> str:
    return str(stack.info.get("description") or "")


def plan_channels(
    targets: list[Stack], rules: Sequence[RuleTuple], labels: dict[int, list[LabelSource]]
) -> ChannelPlan:
    """Group ``targets`` (valid, non-mask image stacks) into multi-channel cases study by study.

    ``labels`` (``id(stack)`` -> label sources) is updated in place: the sources of a non-reference
    channel's series move to the reference series.
    """
    out = ChannelPlan()
    names = [r[0] for r in rules]
    by_study: dict[str, list[Stack]] = defaultdict(list)
    for s in targets:
        by_study[str(s.info.get("study_key") or s.series_uid)].append(s)
    for study, stacks in sorted(by_study.items()):
        found: dict[str, list[Stack]] = defaultdict(list)
        unused: list[Stack] = []
        for s in stacks:
            name = channel_of(_describe(s), rules)
            (unused if name is None else found[name]).append(s)
        matched = [s for n in names for s in found.get(n, [])]
        missing = [n for n in names if not found.get(n)]
        ambiguous = [n for n in names if len(found.get(n, [])) > 1]
        if missing or ambiguous:  # a study without any matching series reports all of its series
            _report(out, study, matched or unused, found, missing, ambiguous)
        if matched or not (missing or ambiguous):
            out.rows.extend((s, "unused", None, f"series {_describe(s)!r} matches no ingest.channels rule")
                            for s in unused)
        if missing or ambiguous:
            continue
        ref = found[names[0]][0]
        assert ref.geometry is not None
        out.names[id(ref)] = tuple(names)
        out.extra[id(ref)] = []
        for name in names[1:]:
            s = found[name][0]
            out.extra[id(ref)].append(_source(name, s))
            moved = labels.pop(id(s), [])
            if moved:
                labels.setdefault(id(ref), []).extend(moved)
            out.rows.append((s, "channel_source", None, f"channel {name} of the case of series {_describe(ref)!r}"))
    return out


def _source(name: str, s: Stack) -> ChannelSource:
    geometry = s.geometry
    assert isinstance(geometry, Geometry)
    return ChannelSource(name=name, series_uid=s.series_uid, frames=tuple(s.frames), geometry=geometry)


def _report(out: ChannelPlan, study: str, matched: list[Stack], found: dict[str, list[Stack]],
            missing: list[str], ambiguous: list[str]) -> None:
    """Quarantine rows for the matched series of a study that cannot form a case."""
    present = ", ".join(f"{n}={_describe(s)!r}" for n, ss in found.items() for s in ss) or "none"
    if missing:
        reason = Reason.MISSING_CHANNEL
        msg = (f"study {study}: no series for channel(s) {', '.join(missing)} (ingest.channels; matched: "
               f"{present}); the study is not a case")
    else:
        reason = Reason.CHANNEL_AMBIGUOUS
        msg = (f"study {study}: several series match channel(s) {', '.join(ambiguous)} ({present}); make the "
               "ingest.channels rules more specific (match/exclude)")
    for s in matched:
        out.rows.append((s, "quarantined", reason, msg))


def dataset_channel_names(headers: Sequence[dict[str, Any]]) -> dict[str, dict[int, str]]:
    """``{dataset folder: {channel index: name}}`` of the ``dataset.json`` headers (MSD ``modality``, nnU-Net v2
    ``channel_names``)."""
    return {
        str(Path(h["path"]).parent): {int(k): str(v) for k, v in (h.get("channels") or {}).items()}
        for h in headers
        if h.get("kind") == "dataset"
    }


def pick_channel(names: dict[int, str], rule: RuleTuple) -> int | None:
    """The dataset channel a rule takes: the one named like the rule (case-insensitive), else the first
    whose name the rule matches (as a SeriesDescription); None when none fits."""
    exact = [k for k, n in sorted(names.items()) if n.strip().lower() == rule[0].strip().lower()]
    if exact:
        return exact[0]
    return next((k for k, n in sorted(names.items()) if channel_of(n, [rule]) == rule[0]), None)


def plan_file_channels(
    cases: list[tuple[CaseJob, Stack]],
    datasets: dict[str, dict[int, str]],
    rules: Sequence[RuleTuple],
    channel_files: dict[str, dict[int, dict[str, Any]]] | None = None,
) -> tuple[list[tuple[CaseJob, Stack]], list[tuple[Stack, str, str]]]:
    """Map the channels of dataset cases onto the channel rules by their ``dataset.json`` names.

    Two kinds: an MSD 4D image's channels (``modality``), read from the same file, and an nnU-Net v2 case's
    channel files (``channel_names``; ``<case>_0000``, ``_0001`` ... in ``channel_files``: case_id ->
    {channel: header}), each read from its own file and resampled if its grid differs. Each rule takes
    :func:`pick_channel`; the first rule's channel becomes the case image. Other cases are kept as they are.

    Returns:
        The cases kept (updated in place) and ``(stack, case_id, message)`` of the cases dropped because
        a rule matches no channel of their dataset (or the case lacks that channel's file).
    """
    kept: list[tuple[CaseJob, Stack]] = []
    dropped: list[tuple[Stack, str, str]] = []
    for job, stack in cases:
        names = datasets.get(str(Path(job.image_file).parent.parent)) if job.image_file else None
        files = (channel_files or {}).get(job.case_id, {})
        if not names or (int(job.source.get("n_channels") or 1) < 2 and len(files) < 2):
            kept.append((job, stack))
            continue
        picks = {rule[0]: pick_channel(names, rule) for rule in rules}
        missing = [r for r, k in picks.items() if k is None or (files and k not in files)]
        if missing:
            dropped.append((stack, job.case_id, f"{job.image_file}: no channel of dataset.json {names} "
                            f"{'with a file ' if files else ''}matches channel(s) {', '.join(missing)} "
                            "(ingest.channels)"))
            continue
        order = [(r[0], int(picks[r[0]] or 0)) for r in rules]
        job.channel_names = tuple(n for n, _ in order)
        if files:
            _use_channel_files(job, order, files)
        else:
            job.channel = order[0][1]
            job.extra_channels = [ChannelSource(name=n, series_uid=job.source.get("series_uid", ""), frames=(),
                                                geometry=job.geometry, image_file=job.image_file, channel=k)
                                  for n, k in order[1:]]
        kept.append((job, stack))
    return kept, dropped


def _use_channel_files(job: CaseJob, order: list[tuple[str, int]], files: dict[int, dict[str, Any]]) -> None:
    """nnU-Net v2: the first rule's file becomes the case image, the others its channels (their own grids)."""
    ref = files[order[0][1]]
    job.image_file, job.channel = str(ref["path"]), 0
    job.geometry = Geometry.from_dict(ref["geometry"])
    job.file_shape = _shape(ref)
    job.extra_channels = [
        ChannelSource(name=n, series_uid=job.source.get("series_uid", ""), frames=(),
                      geometry=Geometry.from_dict(files[k]["geometry"]), image_file=str(files[k]["path"]),
                      channel=0, file_shape=_shape(files[k]))
        for n, k in order[1:]
    ]


def _shape(header: dict[str, Any]) -> tuple[int, int, int]:
    z, y, x = (int(v) for v in header["shape"])
    return (z, y, x)


def apply_file_channels(plan: FilePlan, headers: Sequence[dict[str, Any]], rules: Sequence[RuleTuple]
                        ) -> list[tuple[Stack, str, str]]:
    """:func:`plan_file_channels` on a :class:`FilePlan`, in place: the channel files a case now uses lose
    their ``extra_channel`` quarantine rows and point at the case's series. Returns the dropped cases."""
    plan.cases, dropped = plan_file_channels(plan.cases, dataset_channel_names(headers), rules, plan.channel_files)
    used = {c.image_file: job.source.get("series_uid", "") for job, _ in plan.cases for c in job.extra_channels
            if c.image_file and c.image_file != job.image_file}
    used.update({job.image_file: job.source.get("series_uid", "") for job, _ in plan.cases
                 if job.case_id in plan.channel_files and job.channel_names})
    plan.quarantine = [q for q in plan.quarantine if q["path"] not in used]
    plan.file_series.update(used)
    return dropped
