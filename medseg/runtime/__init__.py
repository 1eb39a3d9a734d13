"""Runtime plumbing of the stages: Dask clients and LocalCluster workers (``cluster``), the record of
the workers' fork server (``fork_server``; entry points start it: :mod:`medseg.cli.fork_server`),
bounded task maps (``batching``), a per-workspace process lock (``locks``), run ids (``run_id``).

The stage and format modules use these; nothing here knows about DICOM, ingest or preprocessing.
"""
