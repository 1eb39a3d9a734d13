"""Ingestion: archive → SQLite catalog + one geometry-correct volume store per image series / volume file.

Modules (one concept each): ``headers`` (per-file header dicts, run on Dask), ``fast_header``
(struct-based header + pixel-offset scan of classic images), ``stacks`` (series assembly +
validation + Geometry), ``pixels`` (decode + rescale), ``seg`` (DICOM SEG → labels), ``rtstruct``
(RTSTRUCT contours → labels) with ``polygon`` (scanline fill), ``masks`` (mask image series →
labels), ``volume_files`` (NIfTI/NRRD/dataset.json), ``volume_file_cases`` (NIfTI/NRRD pairs, MSD /
nnU-Net datasets), ``case_plan`` (links + case jobs), ``build`` (one case → store), ``catalog``
(SQLite), ``run`` (:func:`medseg.ingest.run.ingest`) with ``file_index`` (scan + headers),
``group_builds`` (study groups on Dask) and ``run_rows`` (the rows stored at its end), ``workers``
(what its workers import), ``export`` (NIfTI), ``reasons`` (quarantine codes). Import from the
submodules; this package imports nothing heavy.
"""
