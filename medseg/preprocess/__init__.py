"""Preprocessing stage: fingerprint -> plan -> preprocessed per-case stores (nnU-Net style).

Modules: :mod:`.fingerprint` (dataset fingerprint), :mod:`.planner` (plan), :mod:`.topology`
(patch size, kernels, strides), :mod:`.resample` (whole-array resampling), :mod:`.separable`
(1D cubic / linear operators), :mod:`.stream` (slab-wise crop -> normalise -> resample with
bounded memory), :mod:`.normalize`, :mod:`.crop`, :mod:`.case` (per-case transform and its
inverse, shared with inference), :mod:`.foreground` (sampled foreground locations for training),
:mod:`.fanout` (per-item Dask fan-out), :mod:`.run` (the Dask-parallel stage).
"""
