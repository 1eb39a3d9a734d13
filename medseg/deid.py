"""De-identification helpers: keyed (HMAC-SHA256) pseudonyms for patients, studies and series.

The same ``secret`` always maps the same value to the same key, so pseudonyms are stable across
ingestion runs, while nobody without the secret can recompute them from a PatientID or UID.
"""

from __future__ import annotations

import hashlib
import hmac


def keyed_hash(secret: str, value: str, prefix: str = "", length: int = 16) -> str:
    """Return ``prefix`` + the first ``length`` hex characters of HMAC-SHA256(secret, value).

    Args:
        secret: Key of the hash (``IngestConfig.deid_secret``); must not be empty.
        value: Identifier to pseudonymise (PatientID, StudyInstanceUID, SeriesInstanceUID ...).
        prefix: Human-readable prefix such as ``"case_"``.
        length: Number of hex characters kept (1..64).

    Raises:
        ValueError: If ``secret`` is empty or ``length`` is outside 1..64.
    """
    if not secret:
        raise ValueError("keyed_hash needs a non-empty secret (set ingest.deid_secret in the config)")
    if not 1 <= length <= 64:
        raise ValueError(f"keyed_hash length must be within 1..64, got {length}")
    digest = hmac.new(secret.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{prefix}{digest[:length]}"
