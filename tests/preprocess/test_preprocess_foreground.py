"""medseg.preprocess.foreground: sampled foreground locations per class, seeded and capped."""

from __future__ import annotations

import numpy as np

from medseg.preprocess.foreground import sample_foreground_locations


def test_samples_are_of_the_class_capped_sorted_and_seeded() -> None:
    labels = np.zeros((6, 10, 12), np.uint8)
    labels[1:5, 2:8, 2:10] = 1
    labels[3, 4, 5] = 2
    locs = sample_foreground_locations(labels, [0, 1, 2, 3], max_per_class=50, seed=4)
    assert sorted(locs) == [1, 2, 3]  # background skipped, absent class empty
    assert locs[1].shape == (50, 3) and locs[1].dtype == np.int32
    assert np.all(labels[tuple(locs[1].T)] == 1)
    flat = np.ravel_multi_index(tuple(locs[1].T), labels.shape)
    assert np.all(np.diff(flat) > 0)  # sorted in C order, no duplicates
    assert locs[2].tolist() == [[3, 4, 5]] and locs[3].shape == (0, 3)
    assert np.array_equal(locs[1], sample_foreground_locations(labels, [1], max_per_class=50, seed=4)[1])
    assert len(sample_foreground_locations(labels, [1])[1]) == int((labels == 1).sum())  # below the cap: all


def test_empty_labels_give_empty_arrays() -> None:
    locs = sample_foreground_locations(np.zeros((0, 4, 4), np.uint8), [0, 1])
    assert list(locs) == [1] and locs[1].shape == (0, 3)
