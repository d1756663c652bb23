"""Which models a run uses: a :class:`Selection` (role -> model spec) from role and model names.

>>> select_models("face").key("face")                                             # doctest: +SKIP
'blazeface@...'
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from ...errors import ViscurateError
from .fields import ROLES

if TYPE_CHECKING:
    from ...models.base import ModelSpec


@dataclass(frozen=True)
class Selection:
    """role -> model spec for one run, and whether box crops are embedded."""

    roles: dict[str, "ModelSpec"]
    crops: bool = True

    def key(self, role: str) -> str | None:
        spec = self.roles.get(role)
        return spec.key if spec is not None else None


def select_models(models: str | Sequence[str] | None = None, *, crops: bool = True) -> Selection:
    """Resolve ``models``: ``None`` (every role's default), or role names (``detector``, ``classifier``,
    ``embedder``, ``face``, ``pose``; ``all``) and/or model names or ``name@version`` keys, as a list or
    one comma-separated string. A named model plays its main role, and its extra roles when no other
    model was named for them (``efficientnet_lite3`` is classifier and embedder)."""
    from ...models import registry

    if models is None:
        tokens = list(ROLES)
    elif isinstance(models, str):
        tokens = [t.strip() for t in models.split(",") if t.strip()]
    else:
        tokens = [str(t).strip() for t in models if str(t).strip()]
    if not tokens:
        raise ViscurateError("no model selected; give roles (detector, classifier, embedder, face, pose) or "
                             "model names (see `viscurate models`)")
    main: dict[str, ModelSpec] = {}
    extra: dict[str, ModelSpec] = {}
    for token in tokens:
        if token in ("all", "defaults"):
            for role in ROLES:
                main.setdefault(role, registry.get_spec(registry.DEFAULTS[role]))
            continue
        if token in ROLES:
            spec = registry.get_spec(registry.DEFAULTS[token])
            role = token
        else:
            spec = registry.get_spec(token)  # raises ModelNotFound naming the known models
            role = spec.role
        if role in main and main[role].key != spec.key:
            raise ViscurateError(f"two models for the {role} role: {main[role].key} and {spec.key}")
        main[role] = spec
        if token not in ROLES:
            for r in spec.roles:
                if r in ROLES:
                    extra.setdefault(r, spec)
    for role, spec in extra.items():
        main.setdefault(role, spec)
    roles = {r: main[r] for r in ROLES if r in main}
    return Selection(roles, crops=crops and "embedder" in roles)


def worker_model_refs(sel: Selection) -> dict[str, tuple["ModelSpec", Any]]:
    """role -> what a worker needs to build its model: the spec, and the factory when the worker's own
    registry will not know it (a model registered at run time, e.g. a bring-your-own ONNX file)."""
    from ...models import registry
    return {role: (spec, registry.runtime_factory(spec.key)) for role, spec in sel.roles.items()}


def reaches_workers(obj: Any) -> bool:
    """Whether a worker process can receive ``obj`` (workers do not import the parent's ``__main__``).

    >>> reaches_workers(len), reaches_workers(lambda: 0)
    (True, False)
    """
    try:
        return b"__main__" not in pickle.dumps(obj)
    except Exception:  # noqa: BLE001 - lambdas, closures, open handles...
        return False
