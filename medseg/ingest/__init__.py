"""Ingestion: archive → SQLite catalog + one geometry-correct volume store per image series / volume file.

Modules (one concept each): ``headers`` (per-file header dicts, run on Dask; DICOM files are read by
:mod:`medseg.io.dicom`, which also holds the pixel, SEG and RTSTRUCT readers), ``stacks`` (series
assembly + validation + Geometry), ``masks`` (mask image series →
labels), ``volume_files`` (NIfTI/NRRD/dataset.json), ``file_planning`` (NIfTI/NRRD pairs, MSD /
nnU-Net datasets), ``planning`` (links + case jobs), ``build`` (one case → store), ``catalog``
(SQLite), ``run`` (:func:`medseg.ingest.run.ingest`), ``export`` (NIfTI); quarantine codes are in
:mod:`medseg.io.reasons`. Import from the submodules; this package imports nothing heavy.
"""
