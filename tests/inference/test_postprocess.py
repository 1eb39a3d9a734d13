from __future__ import annotations

import numpy as np
import pytest

from medseg.inference.postprocess import keep_largest_component


def test_keeps_only_the_largest_component_per_class() -> None:
    label = np.zeros((10, 20, 20), dtype=np.uint8)
    label[1:5, 1:8, 1:8] = 1  # big class-1 blob
    label[7:9, 15:18, 15:18] = 1  # small class-1 blob (removed)
    label[6:9, 2:5, 10:13] = 2  # class 2: big
    label[0, 19, 19] = 2  # class 2: single voxel (removed)
    label[5, 8, 8] = 1  # touches the big blob by a corner only: kept with 26-connectivity
    before = label.copy()
    removed = keep_largest_component(label)
    assert removed == {1: 18, 2: 1}
    assert not label[7:9, 15:18, 15:18].any() and label[0, 19, 19] == 0 and label[5, 8, 8] == 1
    assert (label[1:5, 1:8, 1:8] == 1).all() and (label[6:9, 2:5, 10:13] == 2).all()
    assert ((before != label) == ((before != 0) & (label == 0))).all()  # only ever sets background


def test_face_connectivity_and_selected_classes() -> None:
    label = np.zeros((4, 6, 6), dtype=np.uint8)
    label[1, 1:3, 1:3] = 1
    label[2, 3, 3] = 1  # corner contact only
    label[0, 5, 0] = 2
    label[3, 5, 5] = 2
    face = np.zeros((3, 3, 3), bool)
    face[1, 1, :] = face[1, :, 1] = face[:, 1, 1] = True
    removed = keep_largest_component(label, classes=[1], connectivity=face)
    assert removed == {1: 1} and label[2, 3, 3] == 0
    assert label[0, 5, 0] == 2 and label[3, 5, 5] == 2  # class 2 not processed


def test_empty_and_bad_input() -> None:
    label = np.zeros((3, 3, 3), dtype=np.uint8)
    assert keep_largest_component(label, classes=[1, 2]) == {1: 0, 2: 0}
    with pytest.raises(ValueError, match="expects a \\(z, y, x\\) label map"):
        keep_largest_component(np.zeros((3, 3), np.uint8))
