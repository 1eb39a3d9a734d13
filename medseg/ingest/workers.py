"""What an ingest worker imports before its first header or volume task (pydicom: ~0.25 s).

Named by the callers that start ingest's workers: the CLI's fork server preload
(:func:`medseg.cli.fork_server.start_fork_server`) and ``dask_client(..., preload=...)``.
Names only: importing this module imports none of them.
"""

from __future__ import annotations

from typing import Final

INGEST_WORKER_MODULES: Final = (
    "pydicom",
    "medseg.ingest.build",
    "medseg.ingest.headers",
    "medseg.ingest.file_index",  # the header tasks' functions live here
    "medseg.ingest.study_groups",  # ... and the volume tasks' here
)
