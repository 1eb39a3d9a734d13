from medseg.config import SplitConfig
from medseg.splits import make_splits


def test_splits_are_disjoint_complete_and_deterministic() -> None:
    ids = [f"case_{i:03d}" for i in range(40)]
    a = make_splits(ids, SplitConfig(test_fraction=0.25, val_fraction=0.2), seed=1)
    b = make_splits(list(reversed(ids)), SplitConfig(test_fraction=0.25, val_fraction=0.2), seed=1)
    assert a == b
    assert sorted(a.train + a.val + a.test) == ids
    assert not set(a.train) & set(a.test) and not set(a.val) & set(a.test)
    assert len(a.test) == 10 and len(a.val) == 6


def test_previous_assignment_is_kept() -> None:
    cfg = SplitConfig(test_fraction=0.25, val_fraction=0.2)
    old = make_splits([f"c{i}" for i in range(12)], cfg, seed=0)
    new = make_splits([f"c{i}" for i in range(20)], cfg, seed=0, previous=old)
    assert set(old.test) <= set(new.test) and set(old.val) <= set(new.val) and set(old.train) <= set(new.train)
    assert sorted(new.train + new.val + new.test) == sorted(f"c{i}" for i in range(20))


def test_new_cases_never_move_existing_cases() -> None:
    cfg = SplitConfig(test_fraction=0.3, val_fraction=0.2)
    old = make_splits([f"c{i}" for i in range(30)], cfg, seed=0)
    new = make_splits([f"c{i}" for i in range(45)], cfg, seed=0, previous=old)
    assert set(old.test) <= set(new.test)


def test_tiny_dataset_still_gets_test_and_val_cases() -> None:
    s = make_splits(["a", "b", "c", "d"], SplitConfig(test_fraction=0.25, val_fraction=0.2), seed=0)
    assert len(s.test) >= 1 and len(s.val) >= 1 and len(s.train) >= 1


def test_folds_partition_the_cases_by_case_and_are_deterministic() -> None:
    import pytest

    from medseg.splits import make_folds

    ids = [f"case_{i:03d}" for i in range(17)]
    folds = make_folds(ids, 5, seed=3)
    assert folds == make_folds(list(reversed(ids)), 5, seed=3)  # same ids and seed: same folds
    assert [f.index for f in folds] == [0, 1, 2, 3, 4]
    assert sorted(c for f in folds for c in f.val) == ids  # every case held out exactly once
    assert sorted(len(f.val) for f in folds) == [3, 3, 3, 4, 4]
    for f in folds:
        assert sorted(f.train + f.val) == ids and not set(f.train) & set(f.val)
    assert make_folds(ids, 5, seed=4) != folds
    with pytest.raises(ValueError, match="at least 2 folds"):
        make_folds(ids, 1, seed=0)
    with pytest.raises(ValueError, match="train.folds=5 needs at least 5 non-test cases, the split has 3"):
        make_folds(ids[:3], 5, seed=0)
