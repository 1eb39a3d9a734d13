"""A float32 ``(z, y, x)`` volume kept in a raw file on disk, read and written by whole z-slabs.

Used for preprocessed images too large to keep in RAM during inference: slabs go straight
between the file and the caller's numpy buffers (``os.pwrite`` / ``readinto``), so no copy beyond
the slab itself is made (a Zarr array would decode whole chunks through extra buffers).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray


class SpillVolume:
    """C-ordered float32 volume of ``shape`` in the file ``path`` (created, zero-filled lazily).

    Supports ``vol[a:b] = slab`` / ``vol[...] = whole`` and ``vol[a:b]`` / ``vol[...]`` (z-slices with
    step 1 only), which is all the slab-wise preprocessing and :func:`stream_logits` need.
    """

    def __init__(self, path: Path, shape: tuple[int, int, int]) -> None:
        self.path = Path(path)
        self.shape = (int(shape[0]), int(shape[1]), int(shape[2]))
        self.dtype = np.dtype(np.float32)
        self._plane = self.shape[1] * self.shape[2] * 4
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(self._fd, self._plane * self.shape[0])

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _range(self, key: Any) -> tuple[int, int]:
        if key is Ellipsis:
            return 0, self.shape[0]
        if isinstance(key, tuple) and len(key) == 1:
            key = key[0]
        if isinstance(key, slice) and key.step in (None, 1):
            start, stop, _ = key.indices(self.shape[0])
            return start, max(start, stop)
        raise TypeError(f"SpillVolume supports z-slices [a:b] and [...] only, got {key!r}")

    def __setitem__(self, key: Any, value: Any) -> None:
        a, b = self._range(key)
        data = np.ascontiguousarray(np.broadcast_to(np.asarray(value, dtype=np.float32), (b - a, *self.shape[1:])))
        view = data.data.cast("B")
        offset, done = a * self._plane, 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], offset + done)

    def __getitem__(self, key: Any) -> NDArray[np.float32]:
        a, b = self._range(key)
        out = np.empty((b - a, *self.shape[1:]), dtype=np.float32)
        view = out.data.cast("B")
        offset, done = a * self._plane, 0
        while done < len(view):
            n = os.preadv(self._fd, [view[done:]], offset + done)
            if n <= 0:
                raise OSError(f"{self.path}: short read at byte {offset + done}")
            done += n
        return out
