"""IMU sources chosen by URL, imported on demand.

Like pyserial's ``serial_for_url`` and python-can's interface registry, the
scheme of a URL picks the handler module; each handler documents its URL
format at its top.

======================  ================================================
scheme                  handler
======================  ================================================
``serial://``           :mod:`edge.sources.serial_hub` (microcontroller sensor hub)
``ble://``              :mod:`edge.sources.ble` (six LiftGuard BLE IMUs)
``witmotion-ble://``    :mod:`edge.sources.witmotion` (WitMotion WT901BLECL)
``replay://``           :mod:`edge.sources.replay` (trial, data set or shift CSVs)
``virtual://``          :mod:`edge.sources.virtual` (in-process bus for tests/rigs)
======================  ================================================
"""

from __future__ import annotations

import importlib
from typing import Dict, Tuple
from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import ImuSource, SensorReading, SourceEvent, SourceStatus

#: scheme -> (module, class name). Modules are imported only when used.
SOURCE_REGISTRY: Dict[str, Tuple[str, str]] = {
    "serial": ("edge.sources.serial_hub", "SerialHubSource"),
    "ble": ("edge.sources.ble", "BleImuSource"),
    "witmotion-ble": ("edge.sources.witmotion", "WitMotionSource"),
    "replay": ("edge.sources.replay", "ReplaySource"),
    "virtual": ("edge.sources.virtual", "VirtualSource"),
}


def source_class(url: str) -> type:
    """Return the :class:`ImuSource` subclass that handles ``url``.

    Raises:
        ConfigError: If the scheme is unknown or its module cannot load.
    """
    scheme = urlsplit(url).scheme
    if scheme not in SOURCE_REGISTRY:
        raise ConfigError(
            f"source URL {url!r}: unknown scheme {scheme!r}; expected one of "
            + ", ".join(f"{s}://" for s in sorted(SOURCE_REGISTRY))
        )
    module_name, class_name = SOURCE_REGISTRY[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"source URL {url!r}: handler {module_name} cannot load: {exc}") from None
    return getattr(module, class_name)


def open_source(url: str, **kwargs) -> ImuSource:
    """Build (not yet open) the source for ``url``; use it with ``async with``."""
    return source_class(url)(url, **kwargs)


__all__ = [
    "ImuSource",
    "SensorReading",
    "SourceEvent",
    "SourceStatus",
    "SOURCE_REGISTRY",
    "open_source",
    "source_class",
]
