"""medseg.deid: keyed pseudonyms, stable per secret, different across secrets."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from medseg.deid import keyed_hash


def test_keyed_hash_is_the_truncated_hmac() -> None:
    full = hmac.new(b"s3cret", b"PAT-1", hashlib.sha256).hexdigest()
    assert keyed_hash("s3cret", "PAT-1") == full[:16]
    assert keyed_hash("s3cret", "PAT-1", prefix="case_", length=8) == "case_" + full[:8]
    assert keyed_hash("other", "PAT-1") != keyed_hash("s3cret", "PAT-1")
    with pytest.raises(ValueError, match="non-empty secret"):
        keyed_hash("", "PAT-1")
    with pytest.raises(ValueError, match="1..64"):
        keyed_hash("s3cret", "PAT-1", length=65)
