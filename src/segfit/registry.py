"""Model families by name: where each one's spec class and recipe live.

Entries are import paths, so naming a family imports only that family (and ``segfit --help`` imports none).
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

FAMILIES: dict[str, tuple[str, str]] = {
    "sam2": ("segfit.models.sam2.spec:Sam2Spec", "segfit.models.sam2.recipe:sam2_recipe"),
    "mask2former": ("segfit.models.mask2former.spec:Mask2FormerSpec",
                    "segfit.models.mask2former.recipe:mask2former_recipe"),
    "siamban": ("segfit.models.siamban.spec:SiambanSpec", "segfit.models.siamban.recipe:siamban_recipe"),
}


def _load(target: str) -> Any:
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def _entry(name: str) -> tuple[str, str]:
    if name not in FAMILIES:
        close = difflib.get_close_matches(name, FAMILIES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"model.name: unknown model family {name!r}{hint}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def spec_class_for(name: str) -> type:
    return _load(_entry(name)[0])


def recipe_for(spec: Any) -> Any:
    """Instantiate the recipe of ``spec.model.name`` for ``spec``."""
    return _load(_entry(spec.model.name)[1])(spec)
