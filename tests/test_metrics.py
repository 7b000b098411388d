"""Tests of quantize.metrics (RK == Matthews, per-class figures) and quantize.splits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, matthews_corrcoef, precision_recall_fscore_support

from edge.errors import ConfigError, DataError
from quantize.metrics import compute_metrics, confusion_matrix, per_class, rk, rk_from_labels, row_normalize
from quantize.splits import load_split, make_split, random_split, subject_folds, subject_split

pytestmark = pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")

labels_pairs = st.integers(min_value=1, max_value=80).flatmap(
    lambda n: st.tuples(st.lists(st.integers(0, 2), min_size=n, max_size=n),
                        st.lists(st.integers(0, 2), min_size=n, max_size=n)))


@settings(max_examples=300, deadline=None)
@given(labels_pairs)
def test_rk_equals_sklearn_matthews_on_random_labels(pair):
    y_true, y_pred = pair
    assert rk_from_labels(y_true, y_pred) == pytest.approx(matthews_corrcoef(y_true, y_pred), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=9, max_size=9))
def test_rk_equals_sklearn_on_random_confusion_matrices(cells):
    c = np.array(cells).reshape(3, 3)
    if c.sum() == 0:
        return
    y_true = np.repeat(np.repeat(np.arange(3), 3), c.ravel())
    y_pred = np.repeat(np.tile(np.arange(3), 3), c.ravel())
    assert np.array_equal(confusion_matrix(y_true, y_pred), c)
    assert rk(c) == pytest.approx(matthews_corrcoef(y_true, y_pred), abs=1e-12)


def test_rk_known_values():
    assert rk(np.diag([10, 20, 30])) == pytest.approx(1.0)
    assert rk(np.array([[5, 0, 0], [5, 0, 0], [5, 0, 0]])) == 0.0  # one predicted class: undefined -> 0
    # perfectly anti-correlated two-class case inside a 3x3 matrix
    assert rk(np.array([[0, 7, 0], [7, 0, 0], [0, 0, 0]])) == pytest.approx(-1.0)


@settings(max_examples=100, deadline=None)
@given(labels_pairs)
def test_per_class_matches_sklearn(pair):
    y_true, y_pred = pair
    m = compute_metrics(y_true, y_pred)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=[0, 1, 2], zero_division=0)
    for i, name in enumerate(("low", "medium", "high")):
        assert m[name]["precision"] == pytest.approx(p[i])
        assert m[name]["recall"] == pytest.approx(r[i])
        assert m[name]["f1"] == pytest.approx(f[i])
        assert m[name]["support"] == s[i]
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    json.dumps(m)  # JSON-able


def test_confusion_rows_true_columns_predicted_and_bad_input():
    c = confusion_matrix([0, 0, 2], [1, 1, 2])
    assert c[0, 1] == 2 and c[2, 2] == 1 and c.sum() == 3
    with pytest.raises(DataError, match="prediction 3 is not a class index"):
        confusion_matrix([0], [3])
    with pytest.raises(DataError, match="2 true labels but 1 predictions"):
        confusion_matrix([0, 1], [1])
    assert np.allclose(row_normalize(np.array([[2, 2, 0], [0, 0, 0], [0, 1, 3]])).sum(axis=1), [1, 0, 1])
    assert per_class(np.zeros((3, 3)))["f1"].tolist() == [0, 0, 0]


def _toy(n_subjects=8, per_subject=12):
    subjects = np.repeat([f"S{i:02d}" for i in range(n_subjects)], per_subject)
    labels = np.tile([0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2], n_subjects)
    ids = [f"t{i:03d}" for i in range(len(labels))]
    return labels, subjects, ids


def test_random_split_is_stratified_75_25_and_seeded():
    labels, subjects, ids = _toy()
    a = random_split(labels, ids, seed=3)
    b = random_split(labels, ids, seed=3)
    c = random_split(labels, ids, seed=4)
    assert a.test == b.test and a.test != c.test
    assert len(a.test) == 24 and len(a.train) == 72
    assert not set(a.train) & set(a.test)
    assert np.bincount(labels[a.test_index]).tolist() == [4, 8, 12]


def test_subject_split_holds_out_whole_subjects(tmp_path):
    labels, subjects, ids = _toy()
    folds = subject_folds(subjects, seed=1, n_folds=4)
    assert sorted(sum(folds, [])) == sorted(set(subjects.tolist()))
    seen = set()
    for k in range(4):
        s = subject_split(subjects, ids, seed=1, fold=k, n_folds=4)
        train_subj = set(subjects[s.train_index].tolist())
        test_subj = set(subjects[s.test_index].tolist())
        assert not train_subj & test_subj
        assert test_subj == set(s.test_subjects)
        seen |= test_subj
    assert seen == set(subjects.tolist())  # every subject is tested once across folds
    s.save(tmp_path / "split.json")
    back = load_split(tmp_path / "split.json", ids)
    assert back.test == s.test and np.array_equal(back.test_index, s.test_index)


def test_split_errors_are_clear(tmp_path):
    labels, subjects, ids = _toy(n_subjects=1)
    with pytest.raises(DataError, match="at least 2 subjects"):
        subject_split(subjects, ids, seed=0)
    with pytest.raises(ConfigError, match="split 'loso' is not known"):
        make_split("loso", labels=labels, subjects=subjects, trial_ids=ids, seed=0)
    with pytest.raises(DataError, match="class 0 has 1 trial"):
        random_split([0, 1, 1, 2, 2], list("abcde"), seed=0)
    labels, subjects, ids = _toy()
    with pytest.raises(ConfigError, match="fold 9 does not exist"):
        subject_split(subjects, ids, seed=0, fold=9)
    (tmp_path / "split.json").write_text(json.dumps({"kind": "random", "train": ["nope"], "test": []}))
    with pytest.raises(DataError, match="trial 'nope' is not in the data set"):
        load_split(tmp_path / "split.json", ids)
