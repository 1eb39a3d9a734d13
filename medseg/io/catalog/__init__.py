"""SQLite catalog of an ingested archive (``<workspace>/catalog.sqlite``).

Tables (schema version in ``PRAGMA user_version``):

* ``files``       every file seen: path, size, mtime_ns, status, header summary (JSON), UIDs, keys
* ``series``      every image stack / NIfTI-NRRD image (``kind="image"``) and label source
                  (``"seg"``, ``"rtstruct"``, ``"mask"``, ``"label_file"``): case_id, geometry,
                  status, reason, content hash ... (NIfTI/NRRD series_uid = ``"file:<path key>"``)
* ``studies``     study_key → patient_key, number of series
* ``quarantine``  path, series, reason code, message (rebuilt by every ingest run)
* ``ingest_runs`` run_id, times, sources, summary

De-identification: no PatientName/PatientID/BirthDate/AccessionNumber/dates are stored; patients
and studies appear only as keyed hashes. SeriesInstanceUID and SOPInstanceUID *are* stored (needed
to resolve SEG references and to write DICOM SEG results back): treat the catalog file as
confidential and do not ship it with models or reports.

Modules: ``connection`` (schema, version check, this process's shared connection), ``files`` (the
``files`` table, header dict <-> row), ``series`` (run state and case queries: :class:`Catalog`).
All SQL of medseg lives in this package.
"""


from medseg.io.catalog.connection import SCHEMA_VERSION, CatalogSchemaError
from medseg.io.catalog.files import FILE_COLUMNS, HeaderRow, file_row, header_of_row
from medseg.io.catalog.series import QUARANTINE_COLUMNS, SERIES_COLUMNS, CaseRecord, Catalog

__all__ = [
    "FILE_COLUMNS",
    "QUARANTINE_COLUMNS",
    "SCHEMA_VERSION",
    "SERIES_COLUMNS",
    "CaseRecord",
    "Catalog",
    "CatalogSchemaError",
    "HeaderRow",
    "file_row",
    "header_of_row",
]
