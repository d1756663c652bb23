"""A label worker's process state: the models it was asked to run (built on first use, kept for the
process's life), its thread count, and the decoded image its models see.

The pool starts each worker with :func:`init_worker`; the inline mode (``workers=0``) calls it in the
parent with ``own_process=False`` and :func:`forget_models` afterwards.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterator

import numpy as np

#: Longest side (pixels) of the image the models see, by default.
DEFAULT_MAX_SIDE = 1024
#: Larger files are not read (an error on the sample, not a worker out of memory).
MAX_FILE_BYTES = 512 * 2**20


class ModelUnavailable(Exception):
    """A model cannot be built at all: stop the run (it is not one image's fault)."""


_state: dict[str, Any] = {"refs": {}, "threads": 1, "max_side": DEFAULT_MAX_SIDE, "models": {}}


def init_worker(refs: dict[str, tuple], threads: int, max_side: int, own_process: bool = True) -> None:
    """Set up this process for the models of ``refs`` (role -> (spec, factory)): ``threads`` per model,
    images capped at ``max_side``. ``own_process``: a pool worker (caps the BLAS threads, hides the
    runtimes' stderr chatter), not the parent running inline."""
    if own_process:  # a worker: keep OpenMP/BLAS runtimes (if any loads) to our thread count
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
        # NumPy's BLAS started its threads when the worker's preload imported it, before the variables
        # above: limit them now, or every matrix product wakes threads that spin on the other workers' cores
        from threadpoolctl import threadpool_limits
        threadpool_limits(threads)
    _state["own_process"] = own_process
    _state["refs"] = refs
    _state["threads"] = threads
    _state["max_side"] = max_side
    _state["models"] = {}


def forget_models() -> None:
    """Drop the models built in this process (the inline mode, after its run)."""
    _state["models"] = {}


def model_key(role: str) -> str | None:
    """``name@version`` of the model this worker runs for ``role``, or ``None`` when the run has none."""
    ref = _state["refs"].get(role)
    return ref[0].key if ref is not None else None


def model(role: str) -> Any:
    """The model of ``role``, built on first use. Raises :class:`ModelUnavailable` when it cannot be."""
    models = _state["models"]
    if role in models:
        return models[role]
    from ...models import registry
    spec, factory = _state["refs"][role]
    try:
        registry.get_spec(spec.key)
    except registry.ModelNotFound:
        if factory is None:
            raise ModelUnavailable(f"model {spec.key} was registered in the parent process only and cannot be "
                                   f"rebuilt in a worker; run with workers=0") from None
        registry.register(spec, factory)
    with _quiet_stderr(_state.get("own_process", False)) as said:
        try:
            built = registry.get_model(spec.key, threads=_state["threads"])
        except Exception as e:  # noqa: BLE001 - missing weights or runtime: the whole run cannot go on
            said_text = said()
            raise ModelUnavailable(f"cannot load model {spec.key}: {type(e).__name__}: {e}"
                                   + (f" ({said_text})" if said_text else "")) from None
    models[role] = built
    return built


@contextlib.contextmanager
def _quiet_stderr(enabled: bool) -> Iterator[Callable[[], str]]:
    """In a worker, keep the runtimes' start-up chatter ("INFO: Created TensorFlow Lite XNNPACK delegate")
    off the user's terminal, where it would break the progress bar. Yields a function returning what was
    said besides INFO lines (for an error message)."""
    if not enabled:
        yield lambda: ""
        return
    from ..stderr_capture import captured_stderr
    with captured_stderr() as text:
        def said() -> str:
            lines = text().splitlines()
            return " ".join(ln.strip() for ln in lines if ln.strip() and not ln.startswith("INFO:"))[-500:]
        yield said


def decode(path: str) -> tuple[np.ndarray, int, int]:
    """(upright RGB pixels, longest side <= this worker's ``max_side``; original upright width, height)."""
    from ...media.decode import decode_image
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size > MAX_FILE_BYTES:
            raise ValueError(f"the file is larger than {MAX_FILE_BYTES // 2**20} MiB")
        data = f.read()
    with _quiet_stderr(_state.get("own_process", False)):  # libtiff's warnings: ingest recorded them already
        dec = decode_image(data, side=_state["max_side"])
    if dec.small is None or not dec.width or not dec.height:
        raise ValueError(dec.error or "the image could not be decoded")
    small = dec.small if dec.small.mode == "RGB" else dec.small.convert("RGB")
    return np.asarray(small), int(dec.width), int(dec.height)
