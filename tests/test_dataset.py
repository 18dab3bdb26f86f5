"""The dataset file: optional patient ids and measured mask round-trip; shapes are checked."""

import numpy as np
import pytest

from icurt.dataset import Dataset, load_dataset, save_dataset, scaling_range


def test_round_trip_with_and_without_the_optional_arrays(tmp_path):
    x = np.random.default_rng(0).random((3, 4, 2)).astype(np.float32)
    measured = np.zeros((3, 4, 2), bool)
    measured[1, 2, 0] = True
    full = Dataset(x, np.array([0, 1, 0]), np.array([7, 8, 9]), ["a", "b"], {"a": {"p_low": 1, "p_high": 2}},
                   subject_ids=np.array([70, 70, 90]), hadm_ids=np.array([1, 2, 3]), measured=measured)
    save_dataset(tmp_path, full)
    back = load_dataset(tmp_path)
    assert back.subject_ids.tolist() == [70, 70, 90] and back.hadm_ids.tolist() == [1, 2, 3]
    assert back.measured.dtype == bool and back.measured.sum() == 1 and back.measured[1, 2, 0]
    assert back.normalisation == {"a": {"p_low": 1, "p_high": 2}} and back.feature_names == ["a", "b"]
    (tmp_path / "bare").mkdir()
    save_dataset(tmp_path / "bare", Dataset(x, np.array([0, 1, 0]), np.array([7, 8, 9]), ["a", "b"], {}))
    bare = load_dataset(tmp_path / "bare")
    assert bare.subject_ids is None and bare.hadm_ids is None and bare.measured is None


def test_shapes_are_checked():
    x = np.zeros((3, 4, 2), np.float32)
    with pytest.raises(ValueError, match="measured"):
        Dataset(x, np.zeros(3), np.zeros(3), ["a", "b"], {}, measured=np.zeros((3, 4, 3), bool))
    with pytest.raises(ValueError, match="subject_ids"):
        Dataset(x, np.zeros(3), np.zeros(3), ["a", "b"], {}, subject_ids=np.zeros(2))


def test_one_scaled_unit_is_p_high_minus_p_low():
    assert scaling_range({"k": {"p_low": 3.5, "p_high": 5.0}}, "k") == (3.5, 5.0)
    assert scaling_range({"k": {"p_low": 3.5}}, "k") is None
