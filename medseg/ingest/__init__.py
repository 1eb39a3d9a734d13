"""DICOM ingestion: archive → SQLite catalog + one geometry-correct volume store per image series.

Modules (one concept each): ``headers`` (per-file header dicts, run on Dask), ``stacks`` (series
assembly + validation + Geometry), ``pixels`` (decode + rescale), ``seg`` (DICOM SEG → labels),
``masks`` (mask image series → labels), ``planning`` (links + case jobs), ``build`` (one case → store),
``catalog`` (SQLite), ``run`` (:func:`medseg.ingest.run.ingest`), ``export`` (NIfTI), ``reasons``
(quarantine codes). Import from the submodules; this package imports nothing heavy.
"""
