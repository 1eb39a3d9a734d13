"""Preprocessing stage: fingerprint -> plan -> preprocessed per-case stores (nnU-Net style).

Modules: :mod:`.fingerprint` (dataset fingerprint), :mod:`.planner` (plan), :mod:`.topology`
(patch size, kernels, strides), :mod:`.resample`, :mod:`.normalize`, :mod:`.crop`,
:mod:`.case` (per-case transform and its inverse, shared with inference), :mod:`.foreground`
(sampled foreground locations for training), :mod:`.run` (the Dask-parallel stage).
"""
