"""Make a TFLite interpreter from whichever runtime this machine has.

The hub never imports TensorFlow on its own account: it tries, in order,

1. ``ai_edge_litert`` (LiteRT, the current name of the TFLite runtime),
2. ``tflite_runtime`` (the older stand-alone wheel; the only choice on old
   Pi OS images and 32-bit boards, used by the ``legacy`` environment),
3. ``tensorflow.lite`` (a workstation with full TensorFlow; last resort,
   because importing TensorFlow takes seconds and hundreds of megabytes).

When none can be imported, :class:`edge.errors.RuntimeMissing` says what was
tried and why each failed.

Kernels: by default the interpreter uses TFLite's **built-in kernels**
(``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``: no XNNPACK). Their
integer arithmetic is the same in every runtime version (LiteRT 2.3 and
tflite-runtime 2.14 give bit-identical int8 outputs, equal to the reference
kernels), so a bundle's golden outputs hold on every hub. ``kernels="default"``
lets the runtime apply its default delegate (XNNPACK: about 9x faster on x86,
but its int8 requantization rounds differently, a few output steps apart on
a deep model); see ``docs/bundle.md``.

A model whose file name ends in ``_edgetpu.tflite`` (the output of Coral's
``edgetpu_compiler``) is run through the Edge TPU delegate,
``load_delegate('libedgetpu.so.1')``; when the library or the accelerator is
missing the error says so plainly instead of failing on the custom op.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from .errors import RuntimeMissing

#: Runtimes in the order they are tried.
RUNTIME_ORDER: Tuple[str, ...] = ("ai_edge_litert", "tflite_runtime", "tensorflow.lite")

#: Shared library of the Coral Edge TPU delegate.
EDGETPU_LIBRARY = "libedgetpu.so.1"

#: Suffix ``edgetpu_compiler`` gives its output files.
EDGETPU_SUFFIX = "_edgetpu.tflite"


#: Kernel choices of :func:`make_interpreter`.
KERNELS: Tuple[str, ...] = ("builtin", "default")

_Loaded = Tuple[Callable[..., Any], Callable[..., Any], Any]


def _load_ai_edge_litert() -> _Loaded:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType, load_delegate  # type: ignore

    return Interpreter, load_delegate, OpResolverType


def _load_tflite_runtime() -> _Loaded:
    from tflite_runtime.interpreter import Interpreter, OpResolverType, load_delegate  # type: ignore

    return Interpreter, load_delegate, OpResolverType


def _load_tensorflow_lite() -> _Loaded:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf = importlib.import_module("tensorflow")
    return tf.lite.Interpreter, tf.lite.experimental.load_delegate, tf.lite.experimental.OpResolverType


_LOADERS: Dict[str, Callable[[], _Loaded]] = {
    "ai_edge_litert": _load_ai_edge_litert,
    "tflite_runtime": _load_tflite_runtime,
    "tensorflow.lite": _load_tensorflow_lite,
}


def _order(prefer: Union[None, str, Sequence[str]]) -> List[str]:
    """Return the runtimes to try, ``prefer`` first."""
    if prefer is None:
        first: List[str] = []
    elif isinstance(prefer, str):
        first = [prefer]
    else:
        first = list(prefer)
    for name in first:
        if name not in _LOADERS:
            raise RuntimeMissing(f"unknown TFLite runtime {name!r}; expected one of {', '.join(RUNTIME_ORDER)}")
    return first + [n for n in RUNTIME_ORDER if n not in first]


def available_runtimes() -> List[str]:
    """Return the names of the runtimes that import on this machine, in order.

    Importing ``tensorflow.lite`` is slow; it is only checked here, never
    preferred, by :func:`make_interpreter` when an earlier one works.
    """
    found = []
    for name in RUNTIME_ORDER:
        try:
            _LOADERS[name]()
        except Exception:  # ImportError, or a broken binary wheel
            continue
        found.append(name)
    return found


def runtime_version(name: str) -> str:
    """Return the installed version of runtime ``name`` ("unknown" when not found)."""
    dist = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime",
            "tensorflow.lite": "tensorflow"}.get(name, name)
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python < 3.8
        return "unknown"
    for candidate in (dist, "tensorflow-cpu") if name == "tensorflow.lite" else (dist,):
        try:
            return version(candidate)
        except PackageNotFoundError:
            continue
    return "unknown"


def make_interpreter(model_path_or_bytes: Union[str, Path, bytes], *, num_threads: int = 1,
                     prefer: Union[None, str, Sequence[str]] = None,
                     edgetpu: Optional[bool] = None, model_name: Optional[str] = None,
                     kernels: str = "builtin", preserve_all_tensors: bool = False) -> Tuple[Any, str]:
    """Build an interpreter with allocated tensors from the first runtime that works.

    Args:
        model_path_or_bytes: A ``.tflite`` file or its bytes.
        num_threads: CPU threads for the interpreter (>= 1).
        prefer: A runtime name (or names) to try before the default order
            :data:`RUNTIME_ORDER`; the others are still tried after it.
        edgetpu: Use the Edge TPU delegate. ``None`` decides from the model's
            name (``*_edgetpu.tflite``).
        model_name: Name used for messages and the Edge TPU decision when the
            model is given as bytes.
        kernels: ``"builtin"`` (default: TFLite's built-in kernels, no
            default delegate; reproducible int8 arithmetic across runtime
            versions) or ``"default"`` (the runtime's default, XNNPACK).
        preserve_all_tensors: Keep intermediate tensors readable (debugging,
            bias correction).

    Returns:
        ``(interpreter, runtime_name)``; ``allocate_tensors()`` has been called.

    Raises:
        RuntimeMissing: No runtime imports (the message lists what was tried
            and why each failed), or the Edge TPU delegate cannot be loaded.
        edge.errors.BundleError: The runtime imported but rejected the model.
    """
    from .errors import BundleError

    if kernels not in KERNELS:
        raise RuntimeMissing(f"kernels={kernels!r}; expected one of {', '.join(KERNELS)}")
    if int(num_threads) < 1:
        raise RuntimeMissing(f"num_threads={num_threads!r}; expected an integer >= 1")
    if isinstance(model_path_or_bytes, (bytes, bytearray, memoryview)):
        content: Optional[bytes] = bytes(model_path_or_bytes)
        path: Optional[str] = None
        name = model_name or "<model bytes>"
    else:
        content = None
        path = str(model_path_or_bytes)
        name = model_name or path
        if not Path(path).is_file():
            raise BundleError(f"{path}: model file not found")
    if edgetpu is None:
        edgetpu = name.endswith(EDGETPU_SUFFIX)

    tried: List[str] = []
    for runtime in _order(prefer):
        try:
            interpreter_cls, load_delegate, resolver = _LOADERS[runtime]()
        except Exception as exc:  # ImportError or a binary wheel that fails to load
            tried.append(f"{runtime} ({type(exc).__name__}: {exc})")
            continue
        delegates = []
        if edgetpu:
            try:
                delegates = [load_delegate(EDGETPU_LIBRARY)]
            except Exception as exc:
                raise RuntimeMissing(
                    f"{name} is compiled for the Edge TPU but the delegate {EDGETPU_LIBRARY} could not be "
                    f"loaded with {runtime} ({exc}); install libedgetpu1-std and connect the Coral "
                    f"accelerator, or deploy the plain int8 model") from None
        kwargs: Dict[str, Any] = {"num_threads": int(num_threads)}
        if delegates:
            kwargs["experimental_delegates"] = delegates
        if kernels == "builtin":
            kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        if preserve_all_tensors:
            kwargs["experimental_preserve_all_tensors"] = True
        try:
            if content is not None:
                interpreter = interpreter_cls(model_content=content, **kwargs)
            else:
                interpreter = interpreter_cls(model_path=path, **kwargs)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BundleError(f"{name}: {runtime} {runtime_version(runtime)} cannot load this model: "
                              f"{first_line}") from None
        return interpreter, runtime
    raise RuntimeMissing("no TFLite runtime could be imported; tried " + "; ".join(tried)
                         + ". Install one: pip install ai-edge-litert (Python >= 3.10) or tflite-runtime")
