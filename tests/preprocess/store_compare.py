"""Compare two Zarr stores (every array's dtype/shape/chunks/values and every group's attributes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr

#: attribute keys that may legitimately differ between two runs (none are written today).
VOLATILE_KEYS = frozenset({"created_at", "updated_at", "timestamp", "seconds"})


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _walk(group: zarr.Group, prefix: str = "") -> dict[str, zarr.Array | zarr.Group]:
    out: dict[str, zarr.Array | zarr.Group] = {prefix or "/": group}
    for name, member in group.members():
        path = f"{prefix}/{name}" if prefix else name
        if isinstance(member, zarr.Group):
            out.update(_walk(member, path))
        else:
            out[path] = member
    return out


def assert_same_store(a: Path, b: Path) -> None:
    """Assert that stores ``a`` and ``b`` hold the same arrays and attributes (volatile keys ignored)."""
    ta, tb = _walk(zarr.open_group(str(a), mode="r")), _walk(zarr.open_group(str(b), mode="r"))
    assert sorted(ta) == sorted(tb), f"{a} and {b} have different members"
    for key, na in ta.items():
        nb = tb[key]
        assert _strip(dict(na.attrs)) == _strip(dict(nb.attrs)), f"attrs of {key} differ ({a} vs {b})"
        if isinstance(na, zarr.Array):
            assert isinstance(nb, zarr.Array)
            assert (na.dtype, na.shape, na.chunks) == (nb.dtype, nb.shape, nb.chunks), key
            np.testing.assert_array_equal(na[...], nb[...], err_msg=f"{key} of {a} vs {b}")


def assert_same_cases(a_dir: Path, b_dir: Path) -> list[str]:
    """Assert that two ``cases/`` folders hold the same stores; returns the case store names."""
    names = sorted(p.name for p in a_dir.glob("*.zarr"))
    assert names == sorted(p.name for p in b_dir.glob("*.zarr"))
    for name in names:
        assert_same_store(a_dir / name, b_dir / name)
    return names
