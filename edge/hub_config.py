"""The hub's configuration: ``hub.toml`` with defaults, every setting checked.

Example (every key optional; shown with its default where it has one)::

    [hub]
    source = "serial:///dev/ttyACM0?baud=921600"   # required here or --source
    bundle = ""                  # a .lgb file ... (--bundle)
    bundle_store = ""            # ... or a BundleStore folder (--bundle-store)
    trust = []                   # trusted public keys; default: <bundle_store>/trust/*.pub (--trust)
    events = "events.jsonl"      # JSON-lines event log (--events)
    manage_port = ""             # serial URL of the management link (--manage-port)
    health_file = ""             # where SIGUSR1 writes health JSON; default: <events>.health.json
    reload_check_s = 1.0         # how often a new bundle is looked for
    threads = 1                  # interpreter threads
    use_gate = true              # apply the bundle's lift gate, if it has one (--no-gate)

    [alerts]
    outputs = ["log"]            # gpio:PIN[?pwm=1&freq=HZ&duty=D&mock=1], hub, log (--alert, repeatable)
    levels = ["high"]            # levels that buzz; others are logged only

    [alerts.patterns]            # on/off milliseconds per level
    low = []
    medium = [120]
    high = [400, 150, 400, 150, 400]

    [events]
    max_bytes = 10000000         # rotate at this size
    backups = 5
    keep_raw = false             # keep each lift window's raw samples (never the stream)

    [aligner]                    # see edge.aligner.AlignerSettings
    max_delay_s = 0.2
    lost_after_s = 1.0
    gap_policy = "hold"          # or "nan"

    [detector]                   # see edge.lift_detector.DetectorSettings
    on_threshold = 90.0          # deg/s, summed gyroscope magnitude
    off_threshold = 40.0
    min_duration_s = 4.0
    ...

Relative paths in the file are relative to the file's folder. Unknown
sections or keys, wrong types and impossible values raise
:class:`edge.errors.ConfigError` naming the file, the key, the value and
what was expected.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from .aligner import AlignerSettings
from .alerts import DEFAULT_LEVELS, DEFAULT_PATTERNS, validate_levels, validate_patterns
from .errors import ConfigError
from .lift_detector import DetectorSettings


@dataclasses.dataclass
class HubConfig:
    """Every setting of ``edge run``.

    Attributes mirror the TOML keys (see the module docstring).
    """

    source: str = ""
    bundle: Optional[Path] = None
    bundle_store: Optional[Path] = None
    trust: List[Path] = dataclasses.field(default_factory=list)
    events: Path = Path("events.jsonl")
    manage_port: str = ""
    health_file: Optional[Path] = None
    reload_check_s: float = 1.0
    threads: int = 1
    alert_outputs: List[str] = dataclasses.field(default_factory=lambda: ["log"])
    alert_levels: List[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_LEVELS))
    alert_patterns: Dict[str, List[int]] = dataclasses.field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_PATTERNS.items()})
    events_max_bytes: int = 10_000_000
    events_backups: int = 5
    keep_raw: bool = False
    use_gate: bool = True
    aligner: AlignerSettings = dataclasses.field(default_factory=AlignerSettings)
    detector: DetectorSettings = dataclasses.field(default_factory=DetectorSettings)

    def health_path(self) -> Path:
        """Where SIGUSR1 writes the health JSON."""
        return self.health_file or self.events.with_name(self.events.name + ".health.json")

    def check_complete(self) -> None:
        """Check that the settings needed to run are present.

        Raises:
            ConfigError: No source, or neither/both of bundle and bundle store.
        """
        if not self.source:
            raise ConfigError("no source: set [hub] source in the config or pass --source URL "
                              "(e.g. serial:///dev/ttyACM0, replay:///path/trial.csv)")
        if self.bundle is None and self.bundle_store is None:
            raise ConfigError("no model: set [hub] bundle or bundle_store in the config, or pass --bundle FILE "
                              "or --bundle-store DIR")
        if self.bundle is not None and self.bundle_store is not None:
            raise ConfigError(f"both bundle ({self.bundle}) and bundle_store ({self.bundle_store}) are set; "
                              f"expected one of them")
        if self.bundle is not None and not self.trust:
            raise ConfigError(f"bundle {self.bundle} given without a trusted key: set [hub] trust or pass "
                              f"--trust KEY.pub")

    def to_dict(self) -> Dict[str, Any]:
        """JSON-able view (for health and the start event)."""
        d = dataclasses.asdict(self)
        for k, v in list(d.items()):
            if isinstance(v, Path):
                d[k] = str(v)
            elif isinstance(v, list):
                d[k] = [str(x) if isinstance(x, Path) else x for x in v]
        d["detector"]["sensors"] = list(self.detector.sensors)
        return d


_HUB_KEYS = {"source": str, "bundle": "path", "bundle_store": "path", "trust": "paths", "events": "path",
             "manage_port": str, "health_file": "path", "reload_check_s": float, "threads": int,
             "use_gate": bool}
_ALERT_KEYS = {"outputs", "levels", "patterns"}
_EVENT_KEYS = {"max_bytes": int, "backups": int, "keep_raw": bool}


def _type_name(kind: Any) -> str:
    return {str: "a string", float: "a number", int: "an integer", bool: "true or false",
            "path": "a path (string)", "paths": "a list of paths"}.get(kind, str(kind))


def _check(value: Any, kind: Any, where: str) -> Any:
    ok = {
        str: isinstance(value, str),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        bool: isinstance(value, bool),
        "path": isinstance(value, str),
        "paths": isinstance(value, list) and all(isinstance(v, str) for v in value),
    }[kind]
    if not ok:
        raise ConfigError(f"{where} = {value!r}; expected {_type_name(kind)}")
    return value


def _dataclass_section(cls: Any, table: Dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {key!r}; expected one of {', '.join(sorted(fields))}")
        default = fields[key].default
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{where}.{key} = {value!r}; expected true or false")
        if isinstance(default, (int, float)) and not isinstance(default, bool) and \
                (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"{where}.{key} = {value!r}; expected a number")
        if isinstance(default, int) and not isinstance(default, bool) and not isinstance(value, int):
            raise ConfigError(f"{where}.{key} = {value!r}; expected an integer")
        if isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{where}.{key} = {value!r}; expected a string")
        if isinstance(default, tuple) and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ConfigError(f"{where}.{key} = {value!r}; expected a list of strings")
    try:
        return cls(**table)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _load_toml(path: Path) -> Dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - older Pythons
        try:
            import tomli as tomllib  # type: ignore
        except ImportError:
            raise ConfigError(f"{path}: reading TOML on Python < 3.11 needs the 'tomli' package") from None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None


def parse_config(data: Dict[str, Any], where: str = "hub.toml", base: Optional[Path] = None) -> HubConfig:
    """Build a :class:`HubConfig` from parsed TOML.

    Args:
        data: The parsed document.
        where: File name for messages.
        base: Folder that relative paths are relative to.

    Raises:
        ConfigError: Anything unknown or invalid (file, key, value, expectation).
    """
    base = base or Path.cwd()
    cfg = HubConfig()
    known = {"hub", "alerts", "events", "aligner", "detector"}
    for section, table in data.items():
        if section not in known:
            raise ConfigError(f"{where}: unknown section [{section}]; expected one of "
                              f"{', '.join('[' + k + ']' for k in sorted(known))}")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: {section} = {table!r}; expected a [{section}] table")

    def path_of(v: str) -> Path:
        p = Path(v).expanduser()
        return p if p.is_absolute() else base / p

    for key, value in data.get("hub", {}).items():
        if key not in _HUB_KEYS:
            raise ConfigError(f"{where}: [hub] unknown key {key!r}; expected one of {', '.join(sorted(_HUB_KEYS))}")
        kind = _HUB_KEYS[key]
        _check(value, kind, f"{where}: [hub] {key}")
        if kind == "path":
            setattr(cfg, key, path_of(value) if value else None)
        elif kind == "paths":
            setattr(cfg, key, [path_of(v) for v in value])
        else:
            setattr(cfg, key, value)
    if cfg.events is None:
        cfg.events = Path("events.jsonl")
    if cfg.reload_check_s <= 0:
        raise ConfigError(f"{where}: [hub] reload_check_s = {cfg.reload_check_s!r}; expected > 0 seconds")
    if not 1 <= cfg.threads <= 16:
        raise ConfigError(f"{where}: [hub] threads = {cfg.threads!r}; expected 1..16")

    alerts = data.get("alerts", {})
    for key in alerts:
        if key not in _ALERT_KEYS:
            raise ConfigError(f"{where}: [alerts] unknown key {key!r}; expected one of {', '.join(sorted(_ALERT_KEYS))}")
    if "outputs" in alerts:
        outs = alerts["outputs"]
        if isinstance(outs, str):
            outs = [outs]
        _check(outs, "paths", f"{where}: [alerts] outputs")
        cfg.alert_outputs = list(outs)
    if "levels" in alerts:
        _check(alerts["levels"], "paths", f"{where}: [alerts] levels")
        cfg.alert_levels = validate_levels(alerts["levels"], f"{where}: [alerts] levels")
    if "patterns" in alerts:
        if not isinstance(alerts["patterns"], dict):
            raise ConfigError(f"{where}: [alerts] patterns = {alerts['patterns']!r}; expected an [alerts.patterns] "
                              f"table")
        cfg.alert_patterns = validate_patterns(alerts["patterns"], f"{where}: [alerts.patterns]")

    for key, value in data.get("events", {}).items():
        if key not in _EVENT_KEYS:
            raise ConfigError(f"{where}: [events] unknown key {key!r}; expected one of {', '.join(sorted(_EVENT_KEYS))}")
        _check(value, _EVENT_KEYS[key], f"{where}: [events] {key}")
    ev = data.get("events", {})
    cfg.events_max_bytes = ev.get("max_bytes", cfg.events_max_bytes)
    cfg.events_backups = ev.get("backups", cfg.events_backups)
    cfg.keep_raw = ev.get("keep_raw", cfg.keep_raw)
    if cfg.events_max_bytes < 1024:
        raise ConfigError(f"{where}: [events] max_bytes = {cfg.events_max_bytes}; expected at least 1024")
    if cfg.events_backups < 0:
        raise ConfigError(f"{where}: [events] backups = {cfg.events_backups}; expected 0 or more")

    cfg.aligner = _dataclass_section(AlignerSettings, data.get("aligner", {}), f"{where}: [aligner]")
    cfg.detector = _dataclass_section(DetectorSettings, data.get("detector", {}), f"{where}: [detector]")
    return cfg


def load_config(path: Optional[Any] = None) -> HubConfig:
    """Read and check ``hub.toml`` (defaults only when ``path`` is None)."""
    if path is None:
        return HubConfig()
    path = Path(path)
    return parse_config(_load_toml(path), str(path), path.parent.resolve())


def apply_flags(cfg: HubConfig, args: Any) -> HubConfig:
    """Override config values with the command-line flags that were given."""
    def given(name: str) -> Any:
        return getattr(args, name, None)

    if given("source"):
        cfg.source = args.source
    if given("bundle"):
        cfg.bundle = Path(args.bundle)
        cfg.bundle_store = None if not given("bundle_store") else cfg.bundle_store
    if given("bundle_store"):
        cfg.bundle_store = Path(args.bundle_store)
        if not given("bundle"):
            cfg.bundle = None
    if given("trust"):
        cfg.trust = [Path(p) for p in args.trust]
    if given("alert"):
        cfg.alert_outputs = list(args.alert)
    if given("events"):
        cfg.events = Path(args.events)
    if given("manage_port"):
        cfg.manage_port = args.manage_port
    if given("health_file"):
        cfg.health_file = Path(args.health_file)
    if given("keep_raw"):
        cfg.keep_raw = True
    if given("threads"):
        cfg.threads = int(args.threads)
    if given("alert_levels"):
        cfg.alert_levels = validate_levels(args.alert_levels.split(","), "--alert-levels")
    return cfg
