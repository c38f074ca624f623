"""Load a spec: YAML file + ``key=value`` overrides → typed, validated dataclasses.

OmegaConf does the YAML reading, the dotted-override parsing and ``${...}`` interpolation; the typed check
is ours, because it must name the full key path of every mistake and suggest the closest valid key.
Precedence: dataclass defaults < spec file < command line.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
import warnings
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from segfit.registry import FAMILIES, spec_class_for
from segfit.spec.schema import Spec


YAML_TRUE = ("on", "yes", "true")
YAML_FALSE = ("off", "no", "false")


class SpecError(ValueError):
    """A spec problem, with the dotted key path it concerns."""


def load_spec(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Spec:
    """Read ``path`` (may be None: overrides only), apply ``overrides`` and return the family's typed spec."""
    raw = _read_raw(path, overrides)
    name = (raw.get("model") or {}).get("name") if isinstance(raw.get("model"), dict) else None
    if not name:  # a spec written for one model (TAO's, say) names none: its keys may fit one family only
        fitting = [family for family in FAMILIES if _fits(spec_class_for(family), raw)]
        if len(fitting) != 1:
            raise SpecError("model.name: missing; say which model family to use, e.g. model.name=sam2")
        name = fitting[0]
    cls = spec_class_for(name)
    return from_dict(cls, _without_ignored(resolve_aliases(raw, cls.ALIASES), cls.IGNORED, warn=True))


def _fits(cls: type, raw: dict[str, Any]) -> bool:
    try:
        from_dict(cls, _without_ignored(resolve_aliases(copy.deepcopy(raw), cls.ALIASES), cls.IGNORED, warn=False))
    except SpecError:
        return False
    return True


def _without_ignored(raw: dict[str, Any], ignored: dict[str, str], warn: bool) -> dict[str, Any]:
    """``raw`` without the keys the family accepts but does not use (a warning names each one given)."""
    for key, why in ignored.items():
        *parents, leaf = key.split(".")
        section = _section(raw, parents)
        if section is not None and leaf in section:
            section.pop(leaf)
            if warn:
                warnings.warn(f"{key}: ignored ({why})", stacklevel=3)
    return raw


def resolve_aliases(raw: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    """``raw`` with each value given under an alias (dotted path) moved to its key; both given is a ``SpecError``.

    Aliases are applied in order, so an alias of a section (``dataset`` → ``data``) comes before aliases inside it.
    """
    for alias, key in aliases.items():
        *alias_parents, alias_leaf = alias.split(".")
        source = _section(raw, alias_parents)
        if source is None or alias_leaf not in source:
            continue
        *parents, leaf = key.split(".")
        target = _section(raw, parents, create=True)
        if target is None:
            raise SpecError(f"{alias}: cannot be moved to {key}: {'.'.join(parents)} is not a section")
        target[leaf] = _merged(source.pop(alias_leaf), target[leaf], alias, key) if leaf in target else source.pop(alias_leaf)
    return raw


def _merged(aliased: Any, given: Any, alias: str, key: str) -> Any:
    """A section given under both names (``dataset`` in the file, ``data.x=...`` on the command line) is one section;
    a setting given under both names is an error."""
    if not (isinstance(aliased, dict) and isinstance(given, dict)):
        raise SpecError(f"{alias} and {key}: the same setting given twice (one is another name of the other); keep one")
    merged = dict(aliased)
    for name, value in given.items():
        merged[name] = _merged(merged[name], value, f"{alias}.{name}", f"{key}.{name}") if name in merged else value
    return merged


def _section(raw: dict[str, Any], parents: list[str], create: bool = False) -> dict[str, Any] | None:
    """The mapping at ``parents`` inside ``raw`` (made when ``create``), or None where the path is not a mapping."""
    node: Any = raw
    for name in parents:
        if create and node.get(name) is None:
            node[name] = {}
        node = node.get(name)
        if not isinstance(node, dict):
            return None
    return node


def _read_raw(path: str | Path | None, overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    try:
        if path is None:
            conf = OmegaConf.create({})
        else:
            path = Path(path)
            if not path.is_file():
                raise SpecError(f"spec file {path}: not found")
            conf = OmegaConf.load(path)
            if not isinstance(conf, type(OmegaConf.create({}))):
                raise SpecError(f"spec file {path}: the top level must be a mapping of sections")
        for item in overrides:
            if "=" not in item:
                raise SpecError(f"override {item!r}: expected key=value (dotted key, lists as a=[1,2])")
        conf = OmegaConf.merge(conf, OmegaConf.from_dotlist(list(overrides)))
        raw = OmegaConf.to_container(conf, resolve=True)
    except yaml.YAMLError as err:
        raise SpecError(f"spec file {path}: not valid YAML: {err}") from err
    except OmegaConfBaseException as err:
        raise SpecError(f"spec: {err}") from err
    assert isinstance(raw, dict)
    return raw


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from plain ``data``, checking every key and value type."""
    if not isinstance(data, dict):
        raise SpecError(f"{path or 'spec'}: expected a mapping of keys, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in fields:
            raise SpecError(f"{key_path}: unknown key{_suggest(cls, str(key), path)}")
        kwargs[key] = _convert(hints[key], value, key_path)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        # __post_init__ checks say "field: problem"; report them under the full key path
        sep = "." if str(err).split(":")[0] in fields else ": "
        raise SpecError(f"{path or 'spec'}{sep}{err}" if path else str(err)) from err


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise SpecError(f"{path}: must not be null")
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, path)
            except SpecError as err:
                errors.append(str(err))
        raise SpecError(errors[0] if len(errors) == 1 else f"{path}: {value!r} does not fit {_type_name(tp)}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, bool):  # YAML reads off/no/on/yes as booleans; map them back to a matching choice
            spelled = [c for c in choices if str(c).lower() in (YAML_TRUE if value else YAML_FALSE)]
            value = spelled[0] if spelled else value
        if value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpecError(f"{path}: {value!r} is not one of {', '.join(map(str, choices))}{hint}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{path}: expected a list, got {value!r} (write lists as key=[a,b])")
        (item_tp,) = typing.get_args(tp)
        return [_convert(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise SpecError(f"{path}: expected a mapping, got {value!r}")
        _, val_tp = typing.get_args(tp)
        return {str(k): _convert(val_tp, v, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if value is None:
        raise SpecError(f"{path}: must not be null")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise SpecError(f"{path}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise SpecError(f"{path}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise SpecError(f"{path}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise SpecError(f"{path}: expected a string, got {value!r}")
    raise SpecError(f"{path}: unsupported spec type {tp!r}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _suggest(cls: type, key: str, path: str) -> str:
    """A ' (did you mean ...?)' hint with the closest key of this section, else the list of valid keys."""
    names = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {path + '.' if path else ''}{close[0]}?)"
    return f"; valid keys here: {', '.join(names)}"


def key_paths(cls: type, prefix: str = "") -> list[str]:
    """Every dotted leaf key of a spec class (for docs and suggestions)."""
    paths = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        inner = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)] or [tp]
        if dataclasses.is_dataclass(inner[0]):
            items = "[]" if typing.get_origin(tp) is list else ""  # a list of sections: its items' keys
            paths += key_paths(inner[0], f"{prefix}{f.name}{items}.")
        else:
            paths.append(prefix + f.name)
    return paths


def to_dict(spec: Any) -> dict[str, Any]:
    return dataclasses.asdict(spec)


def save_resolved(spec: Spec, results_dir: str | Path | None = None) -> Path:
    """Write the fully resolved spec to ``results_dir/spec.resolved.yaml`` and return its path."""
    out = Path(results_dir or spec.results_dir) / "spec.resolved.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(to_dict(spec), sort_keys=False))
    return out
