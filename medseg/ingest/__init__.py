"""Ingestion: archive → SQLite catalog + one geometry-correct volume store per image series / volume file.

Modules (one concept each): ``headers`` (per-file header dicts, run on Dask; DICOM files are read by
:mod:`medseg.io.dicom`, which also holds the pixel, SEG and RTSTRUCT readers; NIfTI/NRRD/dataset.json
by :mod:`medseg.io.volume_files`), ``source_walk`` (the one walk of the sources), ``stacks`` (series
assembly + validation + Geometry), ``masks`` (mask image series → labels), ``volume_file_cases``
(NIfTI/NRRD pairs, MSD / nnU-Net datasets), ``case_plan`` (links + case jobs), ``build`` (one case →
store), ``run`` (:func:`medseg.ingest.run.ingest`) with ``file_index`` (scan + headers), ``group_builds``
(study groups on Dask) and ``run_rows`` (the rows stored at its end), ``workers`` (what its workers
import), ``export`` (NIfTI). The catalog is :mod:`medseg.io.catalog`, quarantine codes are in
:mod:`medseg.io.reasons`. Import from the submodules; this package imports nothing heavy.
"""
