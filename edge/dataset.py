"""The LiftGuard data set format: reader, writer, validator and cache.

A data set is a folder with ``index.csv`` and one CSV per trial (see
``docs/dataset.md``)::

    index.csv    trial_id,subject,zone,risk,file,lift_start,lift_end,sample_rate,source
    trials/S01_Z12_R1.csv   Side_A_x,...,Thig_G_z,Time_stp   (36 data columns, then Unix seconds)

The NIOSH authors' original layout is read too, detected automatically: trial
files named like ``Subject_02_P2_Zone12_T1.csv`` (zone from the name) with
lift times in ``metadata/lift_times_untrimmed.csv`` or
``metadata/lift_times_complete.csv`` (columns ``filename``, ``start_stamp`` in
seconds of the day, ``frames_after``).

Parsed trials are cached as compressed ``.npz`` files keyed by the sha256 of
the CSV's bytes, so a second load of 720 trials takes well under a second.
The hub's recorder writes this format with :class:`DatasetWriter`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import math
import os
import re
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import BadCSV, BadIndex, DataError
from .layout import CHANNELS, CLASS_NAMES, CSV_COLUMNS, N_CHANNELS, SAMPLE_RATE_HZ, TIME_COLUMN, ZONE_RISK

PathLike = Union[str, "os.PathLike[str]"]

#: Columns of ``index.csv``, in order.
INDEX_COLUMNS: Tuple[str, ...] = (
    "trial_id", "subject", "zone", "risk", "file", "lift_start", "lift_end", "sample_rate", "source",
)

#: Relative tolerance on the sample interval before a trial is said not to be 25 Hz.
RATE_TOLERANCE = 0.2

_AUTHORS_NAME = re.compile(r"^Subject_(?P<subject>\d+)_(?P<part>P\d+)_Zone(?P<zone>\d+)_T(?P<rep>\d+)\.csv$",
                           re.IGNORECASE)
_AUTHORS_META = ("lift_times_untrimmed.csv", "lift_times_complete.csv")


@dataclasses.dataclass(frozen=True)
class TrialMeta:
    """One row of the index: what a trial is and where its lift is.

    Attributes:
        trial_id: Unique id within the data set.
        subject: Subject id.
        zone: ACGIH zone 1..12.
        risk: ``low``, ``medium`` or ``high`` (Table 1 of the paper).
        file: Path of the trial CSV.
        lift_start: First sample of the lift's movement.
        lift_end: Last sample of the lift's movement (inclusive).
        sample_rate: Sample rate, Hz.
        source: Free text: where the trial came from.
    """

    trial_id: str
    subject: str
    zone: int
    risk: str
    file: Path
    lift_start: int
    lift_end: int
    sample_rate: float = SAMPLE_RATE_HZ
    source: str = ""

    @property
    def label(self) -> int:
        """Index of :attr:`risk` in :data:`edge.layout.CLASS_NAMES`."""
        return CLASS_NAMES.index(self.risk)


@dataclasses.dataclass
class Trial:
    """Samples of one recording.

    Attributes:
        samples: float64 ``(n, 36)`` in :data:`edge.layout.CHANNELS` order.
        timestamps: float64 ``(n,)`` Unix seconds.
    """

    samples: np.ndarray
    timestamps: np.ndarray


@dataclasses.dataclass(frozen=True)
class Problem:
    """One finding of validation.

    Attributes:
        severity: ``"error"`` (the trial or data set cannot be used) or ``"warning"``.
        where: The file, with row and column where known.
        message: What is wrong: the bad value and what was expected.
    """

    severity: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.message}"


# --------------------------------------------------------------------------- cache

def cache_dir() -> Path:
    """Folder of the parsed-trial cache (``$LIFTGUARD_CACHE`` or ``~/.cache/liftguard/trials``)."""
    env = os.environ.get("LIFTGUARD_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "liftguard" / "trials"


def _cache_load(digest: str) -> Optional[Trial]:
    path = cache_dir() / f"{digest}.npz"
    try:
        with np.load(path) as z:
            return Trial(samples=z["samples"], timestamps=z["timestamps"])
    except (OSError, KeyError, ValueError):
        return None


def _cache_store(digest: str, trial: Trial) -> None:
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{digest}.{os.getpid()}.npz"
        np.savez_compressed(tmp, samples=trial.samples, timestamps=trial.timestamps)
        os.replace(tmp, folder / f"{digest}.npz")
    except OSError:
        pass  # a read-only cache only costs speed


# --------------------------------------------------------------------------- one trial

def _check_header(header: List[str], where: str) -> List[Problem]:
    problems = []
    expected = list(CSV_COLUMNS)
    if header == expected:
        return problems
    got = set(header)
    missing = [c for c in expected if c not in got]
    extra = [c for c in header if c not in set(expected)]
    dupes = sorted({c for c in header if header.count(c) > 1})
    if missing:
        problems.append(Problem("error", where, f"missing column(s) {', '.join(repr(c) for c in missing)}"))
    if extra:
        problems.append(Problem("error", where, f"unexpected column(s) {', '.join(repr(c) for c in extra)}; "
                                                f"expected the 36 columns {CHANNELS[0]}..{CHANNELS[-1]} then {TIME_COLUMN}"))
    if dupes:
        problems.append(Problem("error", where, f"duplicated column(s) {', '.join(repr(c) for c in dupes)}"))
    if not (missing or extra or dupes):
        first = next(i for i, (a, b) in enumerate(zip(header, expected)) if a != b)
        problems.append(Problem("error", where, f"column {first + 1} is {header[first]!r}; expected {expected[first]!r} "
                                                f"(columns must be in the authors' order)"))
    return problems


def _check_values(path: Path, text: str, header: List[str]) -> Tuple[Optional[Trial], List[Problem]]:
    """Slow path: walk every cell to report exactly what is wrong."""
    problems: List[Problem] = []
    rows = []
    reader = csv.reader(io.StringIO(text))
    next(reader, None)
    for line_no, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            problems.append(Problem("error", f"{path.name}, row {line_no}",
                                    f"has {len(row)} cells; expected {len(header)}"))
            continue
        values = []
        for col, cell in zip(header, row):
            try:
                v = float(cell)
            except ValueError:
                problems.append(Problem("error", f"{path.name}, row {line_no}, column {col!r}",
                                        f"{cell!r} is not a number"))
                v = math.nan
                values.append(v)
                continue
            if not math.isfinite(v):
                problems.append(Problem("error", f"{path.name}, row {line_no}, column {col!r}",
                                        f"{cell!r} is not a finite number"))
            values.append(v)
        rows.append(values)
        if len(problems) > 50:
            problems.append(Problem("error", path.name, "more than 50 problems; stopped reading"))
            return None, problems
    if not rows:
        problems.append(Problem("error", path.name, "has a header but no data rows; expected samples at 25 Hz"))
    return None, problems


def _check_timestamps(path: Path, ts: np.ndarray, rate: float) -> List[Problem]:
    problems = []
    if ts.size < 2:
        return problems
    dt = np.diff(ts)
    back = np.flatnonzero(dt <= 0)
    if back.size:
        i = int(back[0])
        problems.append(Problem("error", f"{path.name}, row {i + 3}, column {TIME_COLUMN!r}",
                                f"time {ts[i + 1]!r} does not increase after {ts[i]!r} "
                                f"({back.size} such step(s)); expected strictly increasing Unix seconds"))
        return problems
    expected = 1.0 / rate
    median = float(np.median(dt))
    if abs(median - expected) > RATE_TOLERANCE * expected:
        problems.append(Problem("error", f"{path.name}, column {TIME_COLUMN!r}",
                                f"median sample interval {median * 1000:.1f} ms ({1 / median:.2f} Hz); "
                                f"expected {expected * 1000:.0f} ms ({rate:g} Hz)"))
    else:
        gaps = np.flatnonzero(dt > 2.5 * expected)
        if gaps.size:
            i = int(gaps[0])
            problems.append(Problem("warning", f"{path.name}, row {i + 3}, column {TIME_COLUMN!r}",
                                    f"{gaps.size} gap(s) in time, first {dt[i] * 1000:.0f} ms after {ts[i]!r}; "
                                    f"expected {expected * 1000:.0f} ms"))
    return problems


def validate_trial_csv(path: PathLike, rate: float = SAMPLE_RATE_HZ,
                       use_cache: bool = True) -> Tuple[Optional[Trial], List[Problem]]:
    """Parse and validate one trial CSV.

    Args:
        path: The CSV.
        rate: Expected sample rate, Hz.
        use_cache: Use and fill the ``.npz`` cache.

    Returns:
        ``(trial, problems)``; ``trial`` is None when there is an error.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, [Problem("error", str(path), "file not found")]
    except OSError as exc:
        return None, [Problem("error", str(path), f"cannot be read: {exc.strerror or exc}")]
    digest = hashlib.sha256(raw).hexdigest()
    if use_cache:
        cached = _cache_load(digest)
        if cached is not None:
            return cached, _check_timestamps(path, cached.timestamps, rate)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, [Problem("error", path.name, f"is not UTF-8 text (byte {exc.start}); expected a CSV")]
    if not text.strip():
        return None, [Problem("error", path.name, "is empty; expected a header and samples")]
    first_line, _, body = text.partition("\n")
    header = [c.strip() for c in first_line.strip().split(",")]
    problems = _check_header(header, f"{path.name}, header")
    if problems:
        return None, problems
    if not body.strip():
        return None, [Problem("error", path.name, "has a header but no data rows; expected samples at 25 Hz")]
    try:
        data = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2)
        if data.shape[1] != len(header):
            raise ValueError("width")
    except ValueError:
        return _check_values(path, text, header)
    if not np.all(np.isfinite(data)):
        r, c = np.argwhere(~np.isfinite(data))[0]
        n_bad = int(np.count_nonzero(~np.isfinite(data)))
        return None, [Problem("error", f"{path.name}, row {r + 2}, column {header[c]!r}",
                              f"{data[r, c]!r} is not a finite number ({n_bad} such cell(s)); expected finite numbers")]
    trial = Trial(samples=np.ascontiguousarray(data[:, :N_CHANNELS]), timestamps=np.ascontiguousarray(data[:, N_CHANNELS]))
    problems = _check_timestamps(path, trial.timestamps, rate)
    if any(p.severity == "error" for p in problems):
        return None, problems
    if use_cache:
        _cache_store(digest, trial)
    return trial, problems


def read_trial_csv(path: PathLike, rate: float = SAMPLE_RATE_HZ, use_cache: bool = True) -> Trial:
    """Read one trial CSV.

    Raises:
        BadCSV: Naming the file, row, column and bad value, when invalid.
    """
    trial, problems = validate_trial_csv(path, rate, use_cache)
    errors = [p for p in problems if p.severity == "error"]
    if trial is None or errors:
        raise BadCSV("; ".join(f"{p.where}: {p.message}" for p in errors[:5]) or f"{path}: unreadable")
    return trial


def format_trial_csv(samples: np.ndarray, timestamps: np.ndarray) -> str:
    """Render samples and Unix timestamps as the trial CSV text."""
    samples = np.asarray(samples, dtype=np.float64)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if samples.ndim != 2 or samples.shape[1] != N_CHANNELS:
        raise DataError(f"samples have shape {samples.shape}; expected (n, {N_CHANNELS})")
    if timestamps.shape != (samples.shape[0],):
        raise DataError(f"timestamps have shape {timestamps.shape}; expected ({samples.shape[0]},)")
    buf = io.StringIO()
    buf.write(",".join(CSV_COLUMNS) + "\n")
    fmt = ",".join(["%.6f"] * N_CHANNELS + ["%.4f"])
    np.savetxt(buf, np.column_stack([samples, timestamps]), fmt=fmt, delimiter=",")
    return buf.getvalue()


def write_trial_csv(path: PathLike, samples: np.ndarray, timestamps: np.ndarray) -> None:
    """Write one trial CSV atomically (write to a temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(format_trial_csv(samples, timestamps), encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- index

def _parse_index(root: Path) -> Tuple[List[TrialMeta], List[Problem]]:
    path = root / "index.csv"
    problems: List[Problem] = []
    metas: List[TrialMeta] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        return [], [Problem("error", str(path), f"cannot be read: {exc.strerror or exc}")]
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in INDEX_COLUMNS if c not in header]
    if missing:
        return [], [Problem("error", "index.csv, header",
                            f"missing column(s) {', '.join(repr(c) for c in missing)}; expected {', '.join(INDEX_COLUMNS)}")]
    seen = set()
    for line_no, row in enumerate(reader, start=2):
        where = f"index.csv, row {line_no}"
        try:
            zone = int(row["zone"])
        except (TypeError, ValueError):
            problems.append(Problem("error", f"{where}, column 'zone'", f"{row['zone']!r} is not a zone; expected 1 to 12"))
            continue
        if zone not in ZONE_RISK:
            problems.append(Problem("error", f"{where}, column 'zone'", f"unknown zone {zone}; expected 1 to 12"))
            continue
        risk = (row["risk"] or "").strip() or ZONE_RISK[zone]
        if risk != ZONE_RISK[zone]:
            problems.append(Problem("error", f"{where}, column 'risk'",
                                    f"{risk!r} disagrees with zone {zone}; expected {ZONE_RISK[zone]!r} (Table 1)"))
            continue
        try:
            start, end = int(row["lift_start"]), int(row["lift_end"])
            rate = float(row["sample_rate"] or SAMPLE_RATE_HZ)
        except (TypeError, ValueError):
            problems.append(Problem("error", where, f"lift_start {row['lift_start']!r}, lift_end {row['lift_end']!r}, "
                                                    f"sample_rate {row['sample_rate']!r}; expected integers and a number"))
            continue
        if not 0 <= start <= end:
            problems.append(Problem("error", f"{where}, columns 'lift_start'/'lift_end'",
                                    f"{start}..{end}; expected 0 <= lift_start <= lift_end"))
            continue
        tid = (row["trial_id"] or "").strip()
        if not tid or tid in seen:
            problems.append(Problem("error", f"{where}, column 'trial_id'", f"{tid!r} is empty or repeated; expected a unique id"))
            continue
        seen.add(tid)
        file = root / (row["file"] or "").strip()
        if not row["file"] or not file.is_file():
            problems.append(Problem("error", f"{where}, column 'file'", f"{row['file']!r} does not exist in {root}"))
            continue
        metas.append(TrialMeta(tid, str(row["subject"]).strip(), zone, risk, file, start, end, rate,
                               (row.get("source") or "").strip()))
    return metas, problems


def _seconds_of_day(ts: np.ndarray) -> np.ndarray:
    return np.mod(ts, 86400.0)


def _parse_authors(root: Path) -> Tuple[List[TrialMeta], List[Problem]]:
    problems: List[Problem] = []
    lift_rows: Dict[str, Tuple[float, int]] = {}
    for name in _AUTHORS_META:
        meta_path = root / "metadata" / name
        if not meta_path.is_file():
            continue
        with open(meta_path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            need = ("filename", "start_stamp", "frames_after")
            if any(c not in (reader.fieldnames or []) for c in need):
                problems.append(Problem("error", f"metadata/{name}, header",
                                        f"columns {reader.fieldnames}; expected at least {', '.join(need)}"))
                continue
            for line_no, row in enumerate(reader, start=2):
                try:
                    lift_rows.setdefault(Path(row["filename"]).name, (float(row["start_stamp"]), int(float(row["frames_after"]))))
                except (TypeError, ValueError):
                    problems.append(Problem("error", f"metadata/{name}, row {line_no}",
                                            f"start_stamp {row['start_stamp']!r}, frames_after {row['frames_after']!r}; expected numbers"))
    metas: List[TrialMeta] = []
    for file in sorted(root.rglob("*.csv")):
        if file.parent.name == "metadata":
            continue
        m = _AUTHORS_NAME.match(file.name)
        if not m:
            problems.append(Problem("warning", file.name, "name does not match Subject_NN_PN_ZoneNN_TN.csv; skipped"))
            continue
        zone = int(m["zone"])
        if zone not in ZONE_RISK:
            problems.append(Problem("error", file.name, f"unknown zone {zone} in the file name; expected 1 to 12"))
            continue
        trial, tp = validate_trial_csv(file)
        problems.extend(tp)
        if trial is None:
            continue
        n = trial.samples.shape[0]
        start, end = 0, n - 1
        if file.name in lift_rows:
            stamp, after = lift_rows[file.name]
            sod = _seconds_of_day(trial.timestamps)
            idx = np.flatnonzero(sod >= stamp - 1e-6)
            if idx.size:
                start = int(idx[0])
                end = min(n - 1, start + max(after, 0))
            else:
                problems.append(Problem("warning", file.name,
                                        f"start_stamp {stamp} is after the recording's last time of day {sod[-1]:.2f}; "
                                        f"using the whole trial"))
        else:
            problems.append(Problem("warning", file.name, "no row in metadata/lift_times_*.csv; using the whole trial"))
        tid = file.stem
        metas.append(TrialMeta(tid, f"S{int(m['subject']):02d}", zone, ZONE_RISK[zone], file, start, end,
                               SAMPLE_RATE_HZ, "authors"))
    return metas, problems


def detect_layout(root: PathLike) -> str:
    """Return ``"liftguard"`` (has index.csv) or ``"authors"``.

    Raises:
        DataError: If the folder is neither.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data set {str(root)!r} is not a folder; expected a folder with index.csv or the authors' CSVs")
    if (root / "index.csv").is_file():
        return "liftguard"
    if (root / "metadata").is_dir() or any(_AUTHORS_NAME.match(p.name) for p in root.rglob("*.csv")):
        return "authors"
    raise DataError(f"{root}: no index.csv and no Subject_NN_PN_ZoneNN_TN.csv files; expected a LiftGuard or "
                    f"authors' data set")


# --------------------------------------------------------------------------- data set

class Dataset:
    """A loaded data set: its trials' metadata and a cached reader.

    Attributes:
        root: The folder.
        layout: ``"liftguard"`` or ``"authors"``.
        trials: Usable trials.
        problems: Everything validation found (errors of skipped trials too).
        skipped: Trial ids or files skipped because of errors.
    """

    def __init__(self, root: Path, layout: str, trials: List[TrialMeta], problems: List[Problem],
                 skipped: List[str]) -> None:
        self.root = root
        self.layout = layout
        self.trials = trials
        self.problems = problems
        self.skipped = skipped

    def __len__(self) -> int:
        return len(self.trials)

    def __iter__(self) -> Iterator[TrialMeta]:
        return iter(self.trials)

    def read(self, meta: TrialMeta) -> Trial:
        """Read one trial's samples (cached)."""
        return read_trial_csv(meta.file, meta.sample_rate)

    def by_id(self, trial_id: str) -> TrialMeta:
        """Return the trial with id ``trial_id``.

        Raises:
            DataError: If there is none.
        """
        for t in self.trials:
            if t.trial_id == trial_id:
                return t
        raise DataError(f"trial {trial_id!r} is not in {self.root}")


def _scan(root: Path) -> Tuple[str, List[TrialMeta], List[Problem]]:
    layout = detect_layout(root)
    if layout == "authors":
        metas, problems = _parse_authors(root)
        return layout, metas, problems
    metas, problems = _parse_index(root)
    good: List[TrialMeta] = []
    for meta in metas:
        trial, tp = validate_trial_csv(meta.file, meta.sample_rate)
        problems.extend(tp)
        if trial is None:
            continue
        n = trial.samples.shape[0]
        if meta.lift_end >= n:
            problems.append(Problem("error", f"index.csv, trial {meta.trial_id!r}",
                                    f"lift_end {meta.lift_end} is past the file's last sample {n - 1}"))
            continue
        good.append(meta)
    listed = {m.file.resolve() for m in metas}
    for extra in sorted(root.rglob("*.csv")):
        if extra.name == "index.csv" or extra.resolve() in listed or extra.name == "events.csv":
            continue
        problems.append(Problem("warning", str(extra.relative_to(root)), "CSV not listed in index.csv; ignored"))
    # Trials dropped above stay out of `good`; the caller decides whether that is fatal.
    return layout, good, problems


def check_dataset(root: PathLike) -> List[Problem]:
    """Validate a data set; return every problem found (none means clean)."""
    try:
        _, _, problems = _scan(Path(root))
    except DataError as exc:
        return [Problem("error", str(root), str(exc))]
    return problems


def load_dataset(root: PathLike, *, skip_bad: bool = False) -> Dataset:
    """Load a data set's index (either layout), validating every trial.

    Args:
        root: The folder.
        skip_bad: Leave out trials with errors instead of refusing the set.

    Returns:
        The :class:`Dataset`.

    Raises:
        DataError: If there are errors and ``skip_bad`` is False, listing the
            first few, or if no usable trial remains.
    """
    root = Path(root)
    layout, metas, problems = _scan(root)
    errors = [p for p in problems if p.severity == "error"]
    if errors and not skip_bad:
        shown = "\n  ".join(str(p) for p in errors[:10])
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise DataError(f"data set {root} has {len(errors)} error(s) (run `quantize check --data {root}`, "
                        f"or pass --skip-bad to leave those trials out):\n  {shown}{more}")
    skipped = sorted({p.where.split(", column")[0] for p in errors})
    if not metas:
        raise DataError(f"data set {root} has no usable trials")
    return Dataset(root, layout, metas, problems, skipped)


# --------------------------------------------------------------------------- writer

class DatasetWriter:
    """Write a data set: trial CSVs under ``trials/`` and ``index.csv`` on close.

    Use as a context manager::

        with DatasetWriter(out, source="liftsim seed 0") as w:
            w.add_trial("S01_Z12_R1", "S01", 12, samples, timestamps, 60, 240)
    """

    def __init__(self, out_dir: PathLike, source: str = "", trial_folder: str = "trials") -> None:
        self.root = Path(out_dir)
        self.source = source
        self.trial_folder = trial_folder
        self.metas: List[TrialMeta] = []
        (self.root / trial_folder).mkdir(parents=True, exist_ok=True)

    def add_trial(self, trial_id: str, subject: str, zone: int, samples: np.ndarray, timestamps: np.ndarray,
                  lift_start: int, lift_end: int, sample_rate: float = SAMPLE_RATE_HZ,
                  source: Optional[str] = None) -> TrialMeta:
        """Write one trial CSV and remember its index row.

        Raises:
            DataError: On an unknown zone, a repeated id or markers outside the samples.
        """
        if int(zone) not in ZONE_RISK:
            raise DataError(f"trial {trial_id!r}: unknown zone {zone!r}; expected 1 to 12")
        if any(m.trial_id == trial_id for m in self.metas):
            raise DataError(f"trial id {trial_id!r} is repeated; expected unique ids")
        n = np.asarray(samples).shape[0]
        if not 0 <= int(lift_start) <= int(lift_end) < n:
            raise DataError(f"trial {trial_id!r}: lift {lift_start}..{lift_end} outside 0..{n - 1}")
        rel = f"{self.trial_folder}/{trial_id}.csv"
        write_trial_csv(self.root / rel, samples, timestamps)
        meta = TrialMeta(trial_id, str(subject), int(zone), ZONE_RISK[int(zone)], self.root / rel,
                         int(lift_start), int(lift_end), float(sample_rate),
                         self.source if source is None else source)
        self.metas.append(meta)
        return meta

    def close(self) -> Path:
        """Write ``index.csv`` (atomically) and return its path."""
        return write_index(self.root, self.metas)

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_index(root: PathLike, metas: Sequence[TrialMeta]) -> Path:
    """Write ``index.csv`` for ``metas`` (paths stored relative to ``root``)."""
    root = Path(root)
    path = root / "index.csv"
    tmp = root / ".index.csv.tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(INDEX_COLUMNS)
        for m in metas:
            rel = os.path.relpath(m.file, root)
            w.writerow([m.trial_id, m.subject, m.zone, m.risk, Path(rel).as_posix(), m.lift_start, m.lift_end,
                        f"{m.sample_rate:g}", m.source])
    os.replace(tmp, path)
    return path
