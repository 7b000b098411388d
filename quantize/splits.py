"""Train/test splits: the paper's random stratified 75/25 and a subject-wise split.

* ``random`` -- stratified by class, 25 % of the trials held out (the paper's
  split; the same worker appears on both sides).
* ``subject`` -- k-fold by subject (default 4 folds, so about 25 % of the
  workers are held out): the subjects are shuffled with the seed, cut into
  ``n_folds`` groups, and fold ``k`` is the test set. No test worker is seen in
  training, which is what a hub meets in the field.

A :class:`Split` is saved as ``split.json`` in every run folder:
``{"kind", "seed", "fold", "n_folds", "train": [trial ids], "test": [trial ids],
"data": data dir, "test_subjects": [...]}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from edge.errors import ConfigError, DataError

SPLIT_KINDS = ("random", "subject")
DEFAULT_TEST_FRACTION = 0.25
DEFAULT_SUBJECT_FOLDS = 4


@dataclass
class Split:
    """Indices and trial ids of one train/test split.

    Attributes:
        kind: ``"random"`` or ``"subject"``.
        seed: Seed that produced it.
        fold: Fold index (subject splits; 0 for random).
        n_folds: Number of subject folds (1 for random).
        train_index: Positions of training trials in the loaded data set.
        test_index: Positions of test trials.
        train: Training trial ids.
        test: Test trial ids.
        test_subjects: Subjects held out (subject splits).
        data: Data directory, recorded for later commands.
    """

    kind: str
    seed: int
    fold: int
    n_folds: int
    train_index: np.ndarray
    test_index: np.ndarray
    train: List[str]
    test: List[str]
    test_subjects: List[str] = field(default_factory=list)
    data: str = ""

    def to_dict(self) -> dict:
        """JSON-able form (trial ids, not positions)."""
        return {"kind": self.kind, "seed": int(self.seed), "fold": int(self.fold),
                "n_folds": int(self.n_folds), "train": list(self.train), "test": list(self.test),
                "test_subjects": list(self.test_subjects), "data": str(self.data)}

    def save(self, path: Path) -> None:
        """Write ``split.json``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")


def _check_kind(kind: str) -> None:
    if kind not in SPLIT_KINDS:
        raise ConfigError(f"split {kind!r} is not known; expected one of {', '.join(SPLIT_KINDS)}")


def random_split(labels: Sequence[int], trial_ids: Sequence[str], seed: int,
                 test_fraction: float = DEFAULT_TEST_FRACTION, data: str = "") -> Split:
    """Stratified random split (the paper's 75/25).

    Raises:
        DataError: If a class has fewer than 2 trials (it cannot be on both sides).
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test fraction {test_fraction!r} must be between 0 and 1")
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < 2:
        raise DataError(f"class {int(classes[counts.argmin()])} has {int(counts.min())} trial(s); "
                        f"a stratified split needs at least 2 per class")
    n_test = max(len(classes), int(round(test_fraction * len(labels))))
    positions = np.arange(len(labels))
    try:
        train_idx, test_idx = train_test_split(positions, test_size=n_test, stratify=labels,
                                               random_state=int(seed))
    except ValueError as exc:
        raise DataError(f"cannot split {len(labels)} trials stratified by class: {exc}") from None
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    ids = list(trial_ids)
    return Split("random", int(seed), 0, 1, train_idx, test_idx,
                 [ids[i] for i in train_idx], [ids[i] for i in test_idx], [], str(data))


def subject_folds(subjects: Sequence[str], seed: int, n_folds: int = DEFAULT_SUBJECT_FOLDS) -> List[List[str]]:
    """Shuffle the distinct subjects with ``seed`` and cut them into ``n_folds`` groups.

    Raises:
        DataError: If there are fewer than 2 subjects.
        ConfigError: If ``n_folds`` < 2 or exceeds the number of subjects.
    """
    unique = sorted(set(str(s) for s in subjects))
    if len(unique) < 2:
        raise DataError(f"a subject-wise split needs at least 2 subjects; the data set has {len(unique)}")
    if n_folds < 2 or n_folds > len(unique):
        raise ConfigError(f"{n_folds} subject folds requested; expected 2 to {len(unique)} "
                          f"(the number of subjects)")
    order = np.random.default_rng(int(seed)).permutation(len(unique))
    return [[unique[i] for i in sorted(part)] for part in np.array_split(order, n_folds)]


def subject_split(subjects: Sequence[str], trial_ids: Sequence[str], seed: int, fold: int = 0,
                  n_folds: Optional[int] = None, data: str = "") -> Split:
    """Leave-subjects-out split: fold ``fold`` of :func:`subject_folds` is the test set.

    ``n_folds`` defaults to 4, or the number of subjects when there are fewer.
    """
    subjects = np.asarray([str(s) for s in subjects])
    n_subjects = len(set(subjects.tolist()))
    if n_folds is None:
        n_folds = min(DEFAULT_SUBJECT_FOLDS, max(2, n_subjects))
    folds = subject_folds(subjects, seed, n_folds)
    if not 0 <= fold < len(folds):
        raise ConfigError(f"fold {fold} does not exist; expected 0 to {len(folds) - 1}")
    test_subjects = folds[fold]
    is_test = np.isin(subjects, test_subjects)
    test_idx = np.flatnonzero(is_test)
    train_idx = np.flatnonzero(~is_test)
    ids = list(trial_ids)
    return Split("subject", int(seed), int(fold), int(n_folds), train_idx, test_idx,
                 [ids[i] for i in train_idx], [ids[i] for i in test_idx], list(test_subjects), str(data))


def make_split(kind: str, *, labels: Sequence[int], subjects: Sequence[str], trial_ids: Sequence[str],
               seed: int, fold: int = 0, n_folds: Optional[int] = None, data: str = "") -> Split:
    """Build a split of either kind (the one entry point the CLIs use)."""
    _check_kind(kind)
    if kind == "random":
        if fold:
            raise ConfigError("--fold only applies to --split subject")
        return random_split(labels, trial_ids, seed, data=data)
    return subject_split(subjects, trial_ids, seed, fold=fold, n_folds=n_folds, data=data)


def load_split(path: Path, trial_ids: Sequence[str]) -> Split:
    """Read ``split.json`` and map its trial ids back to positions in ``trial_ids``.

    Raises:
        DataError: If the file is unreadable or names a trial not in the data set.
    """
    path = Path(path)
    try:
        d = json.loads(path.read_text())
        kind, train, test = d["kind"], list(d["train"]), list(d["test"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a split.json ({exc}); expected keys kind, seed, train, test") from None
    where = {t: i for i, t in enumerate(trial_ids)}
    missing = [t for t in train + test if t not in where]
    if missing:
        raise DataError(f"{path}: trial {missing[0]!r} is not in the data set "
                        f"({len(missing)} missing); was the run trained on other data?")
    return Split(kind, int(d.get("seed", 0)), int(d.get("fold", 0)), int(d.get("n_folds", 1)),
                 np.array([where[t] for t in train], dtype=np.int64),
                 np.array([where[t] for t in test], dtype=np.int64),
                 train, test, list(d.get("test_subjects", [])), str(d.get("data", "")))
