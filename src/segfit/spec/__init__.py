"""Typed run specs: schema (shared sections), loading with strict ``key=value`` overrides."""

from segfit.spec.load import SpecError, load_spec, save_resolved
from segfit.spec.schema import Spec

__all__ = ["Spec", "SpecError", "load_spec", "save_resolved"]
