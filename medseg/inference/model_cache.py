"""The model bundles a worker process has loaded, reused by every case it predicts.

A Dask worker predicts many cases with one bundle: loading it (weights read, checksummed, moved to
the device) once per process instead of once per case. Keyed by the bundle folder and the device;
the :data:`MAX_MODELS` most recently used stay loaded (a nightly run predicts with the CNN, then the
GAN champion, on a standing cluster that also serves the next night's new versions).

Concurrent cases of one worker (several worker threads) share the loaded networks: inference
only reads them (eval mode, no gradients).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from medseg.io.bundle import read_metadata
from medseg.training.bundle import ModelBundle, load_bundle

#: Bundles kept loaded per process (least recently used dropped first).
MAX_MODELS = 2

_lock = threading.Lock()
_loaded: OrderedDict[tuple[str, str], ModelBundle] = OrderedDict()
_loads = 0  # bundles loaded by this process (tests, bench)


@dataclass(frozen=True)
class BundleRef:
    """A bundle named by its folder, family and version, without its networks (what the client of
    a fan-out needs; the workers load the networks)."""

    path: Path
    family: str
    version: str

    @classmethod
    def read(cls, path: Path | str) -> BundleRef:
        """From the bundle's ``metadata.json``.

        Raises:
            BundleError: no readable metadata in ``path``.
        """
        meta = read_metadata(Path(path))
        return cls(Path(path).resolve(), str(meta["family"]), str(meta["version"]))


def cached_bundle(path: Path | str, device: torch.device) -> ModelBundle:
    """The bundle at ``path`` on ``device``, loaded on the first call of this process with that key.

    Raises:
        BundleError: see :func:`medseg.training.bundle.load_bundle` (nothing is cached then).
    """
    global _loads
    key = (str(Path(path).resolve()), str(device))
    with _lock:  # one load per key, even when two worker threads ask at once
        bundle = _loaded.get(key)
        if bundle is None:
            bundle = load_bundle(Path(key[0]), device=device)
            _loads += 1
            _loaded[key] = bundle
            while len(_loaded) > MAX_MODELS:
                _loaded.popitem(last=False)
        _loaded.move_to_end(key)
        return bundle


def loads() -> int:
    """How many bundles this process loaded through :func:`cached_bundle`."""
    return _loads


def clear() -> None:
    """Forget every loaded bundle (tests)."""
    with _lock:
        _loaded.clear()
