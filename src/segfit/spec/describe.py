"""Render a family's spec as a Markdown reference (every key, its type, default and docstring).

The field docstrings in the dataclasses are the single source; ``docs/spec.md`` is generated from them and a test
keeps it in step:  ``python -m segfit.spec.describe > docs/spec.md``
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from typing import Any

from segfit.registry import FAMILIES, spec_class_for


def field_docs(cls: type) -> dict[str, str]:
    """Docstrings written under dataclass fields, from ``cls`` and its bases (nearest wins)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[node.target.id] = " ".join(str(nxt.value.value).split())  # type: ignore[union-attr]
    return docs


def _type(tp: Any) -> str:
    """Readable in a Markdown table cell (no ``|``)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return " / ".join(map(str, args))
    if origin is list:
        return f"list of {_type(args[0])}"
    if args:  # a union
        return " or ".join("null" if a is type(None) else _type(a) for a in args)
    return getattr(tp, "__name__", str(tp))


def _default(f: dataclasses.Field) -> Any:
    """A field's own default (``required`` when it has none, as the items of a list of sections may)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is dataclasses.MISSING:
        return "required"
    return f.default_factory()  # type: ignore[misc]


def rows(cls: type, prefix: str = "", defaults: Any = None) -> list[tuple[str, str, str, str]]:
    """One row per key; ``defaults`` is the section as its parent builds it (a parent's ``default_factory`` may
    set other values than the section class's own defaults, e.g. SiamBAN's search augmentation); None: each
    field's own default."""
    out = []
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, value = hints[f.name], _default(f) if defaults is None else getattr(defaults, f.name)
        nested = [a for a in (typing.get_args(tp) or (tp,)) if dataclasses.is_dataclass(a)]
        if typing.get_origin(tp) is list and nested:  # a list of sections: its item keys under name[]
            out.append((prefix + f.name, "list of sections", "", docs.get(f.name, "")))
            out += rows(nested[0], f"{prefix}{f.name}[].")
        elif nested:
            optional = type(None) in typing.get_args(tp)
            if docs.get(f.name) or optional:
                out.append((prefix + f.name, "section" + (" or null" if optional else ""), "null" if optional else "", docs.get(f.name, "")))
            out += rows(nested[0], f"{prefix}{f.name}.", value if dataclasses.is_dataclass(value) else None)
        else:
            out.append((prefix + f.name, _type(tp), repr(value), docs.get(f.name, "")))
    return out


def markdown() -> str:
    lines = [
        "# Spec reference",
        "",
        "Generated from the spec dataclasses by `python -m segfit.spec.describe > docs/spec.md`.",
        "Set keys in the YAML file or on the command line (`segfit train -e spec.yaml train.max_steps=500`).",
        "Precedence: these defaults < the spec file < the command line. An unknown key or a value of the wrong",
        "type stops the run with the key's full path and the closest valid key.",
    ]
    for name in FAMILIES:
        lines += ["", f"## model.name: {name}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        cls = spec_class_for(name)
        lines += [f"| `{k}` | {t} | `{d}` | {doc} |" if d else f"| `{k}` | {t} | | {doc} |" for k, t, d, doc in rows(cls)]
        if cls.ALIASES:
            lines += ["", "Other names accepted for these keys (the value moves to the key; giving both is an error):", "",
                      "| also accepted | key |", "|---|---|"]
            lines += [f"| `{alias}` | `{key}` |" for alias, key in cls.ALIASES.items()]
        if cls.IGNORED:
            lines += ["", "Accepted and not used (a warning says so):", "", "| key | why |", "|---|---|"]
            lines += [f"| `{key}` | {why} |" for key, why in cls.IGNORED.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
