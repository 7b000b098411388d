"""The hub's event log: one JSON object per line, rotated by size.

Each classified lift is one line::

    {"type": "lift", "time": "2026-11-26T14:02:03.123+00:00", "t_host": 1234.5,
     "risk": "high", "probs": {"low": 0.02, "medium": 0.08, "high": 0.90},
     "model_id": "...", "model_version": "1.2.0", "latency_ms": 7.9,
     "lift": {"start": 10234, "end": 10391, "samples": 257, "duration_s": 6.3},
     "buzzed": true, "health": {"Back": "live", ...}}

Other lines record the daemon's life: ``start``, ``stop``, ``bundle`` (a new
bundle taken up or refused), ``sensor`` (lost / recovered), ``outage``,
``skipped`` (a window that could not be classified, and why) and
``health``. Raw samples are not kept unless ``keep_raw`` is on, and then
only lift windows (``"window"``: the ``(n, 36)`` raw samples as nested lists,
six decimals) -- never the continuous stream.

Rotation uses the standard library's :class:`logging.handlers.RotatingFileHandler`
(``events.jsonl`` → ``events.jsonl.1`` … ``.N``). Writing is thread-safe.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import logging.handlers
import math
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from .errors import ConfigError


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


class EventLog:
    """Append JSON lines to a size-rotated file.

    Args:
        path: The log file (parent folders are created).
        max_bytes: Rotate when the file would exceed this size.
        backups: How many rotated files to keep.
        keep_raw: Keep the raw samples of each lift window.

    Raises:
        ConfigError: The settings are out of range or the file cannot be opened.
    """

    def __init__(self, path: Any, *, max_bytes: int = 10_000_000, backups: int = 5,
                 keep_raw: bool = False) -> None:
        if max_bytes < 1024:
            raise ConfigError(f"events.max_bytes = {max_bytes!r}; expected at least 1024")
        if backups < 0:
            raise ConfigError(f"events.backups = {backups!r}; expected 0 or more")
        self.path = Path(path)
        self.keep_raw = keep_raw
        self.lines = 0
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handler = logging.handlers.RotatingFileHandler(
                self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"event log {self.path}: cannot open for writing: {exc.strerror or exc}") from None
        self._handler.setFormatter(logging.Formatter("%(message)s"))

    def write(self, kind: str, **fields: Any) -> Dict[str, Any]:
        """Write one line of type ``kind`` with ``fields`` (time added)."""
        record = {"type": kind, "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")}
        record.update(fields)
        if "window" in record and not self.keep_raw:
            del record["window"]
        line = json.dumps(_jsonable(record), separators=(",", ":"))
        rec = logging.LogRecord("liftguard.events", logging.INFO, str(self.path), 0, line, None, None)
        with self._lock:
            self._handler.emit(rec)
            self.lines += 1
        return record

    def lift(self, *, risk: str, probs: Dict[str, float], model_id: str, model_version: str,
             latency_ms: float, lift: Dict[str, Any], health: Dict[str, Any], buzzed: bool,
             window: Optional[np.ndarray] = None, **extra: Any) -> Dict[str, Any]:
        """Write one classified lift (``window`` kept only if ``keep_raw``)."""
        fields: Dict[str, Any] = dict(risk=risk, probs=probs, model_id=model_id, model_version=model_version,
                                      latency_ms=round(float(latency_ms), 3), lift=lift, buzzed=buzzed,
                                      health=health, **extra)
        if self.keep_raw and window is not None:
            fields["window"] = np.round(np.asarray(window, dtype=np.float64), 6)
        return self.write("lift", **fields)

    def close(self) -> None:
        """Flush and close the file."""
        with self._lock:
            self._handler.close()


def read_events(path: Any) -> List[Dict[str, Any]]:
    """Read every line of an event log (oldest rotated file first).

    Raises:
        ConfigError: A line is not JSON (the message names the file and line).
    """
    path = Path(path)
    files = sorted(path.parent.glob(path.name + ".*"), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit()
                   else 0)
    files = [p for p in files if p.suffix[1:].isdigit()] + ([path] if path.exists() else [])
    out = []
    for f in files:
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"event log {f}, line {i}: not JSON ({exc.msg})") from None
    return out
