"""Run in the validators' venv (``.venv-validators``, made by ``deploy/install.sh --dev``; ome-zarr-models pins
another pydantic than medseg's): validate each Zarr store given on the command line as an OME-Zarr 0.5 image
with ``ome-zarr-models``, each of its labels as an image-label, and read it with ``ome-zarr-py``'s reader.

Prints one JSON object: ``{path: {"valid": bool, "error": str, "labels": {name: {...}}, "read": [...]}}``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr_models.v05.image import Image
from ome_zarr_models.v05.image_label import ImageLabel
from ome_zarr_models.v05.labels import Labels


def check(path: str) -> dict[str, Any]:
    out: dict[str, Any] = {"valid": False, "error": "", "labels": {}, "read": []}
    try:
        group = zarr.open_group(path, mode="r")
        image = Image.from_zarr(group)
        out["axes"] = [axis.name for axis in image.attributes.ome.multiscales[0].axes]
        if "labels" in group:
            Labels.from_zarr(group["labels"])
            for name in group["labels"].attrs["ome"]["labels"]:
                label = ImageLabel.from_zarr(group["labels"][name]).attributes.ome.image_label
                out["labels"][name] = {
                    "names": {p.label_value: p.model_extra.get("name") for p in label.properties or ()},
                    "colors": {c.label_value: list(c.rgba or ()) for c in label.colors or ()},
                }
        out["valid"] = True
    except Exception as exc:  # noqa: BLE001 - reported to the test, which names the store
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    for node in Reader(parse_url(path))():  # what napari's ome-zarr plugin does
        out["read"].append({"spec": type(node.specs[0]).__name__, "shapes": [list(d.shape) for d in node.data]})
    return out


if __name__ == "__main__":
    print(json.dumps({path: check(path) for path in sys.argv[1:]}))
