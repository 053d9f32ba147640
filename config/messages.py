"""Turn pydantic's validation errors into our one-line problems."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from config.errors import Problem, show_key
from config.schema import SECRET_KEYS, ClusterFile, expected_text
from config.yaml_source import Ambiguous, Loc, YamlSource

_RANGE = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
_SECRET_HINTS = ("password", "secret")


def dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{show_key(part)}" if out else show_key(part))
    return out


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model that owns the last key of `loc` (to find its expected text)."""
    model: Any = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = (
            model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        )
        if field is None:
            return None
        model = _inner_model(field.annotation)
        if model is None:
            return None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found:
            return found
    return None


def _may_hold_secret(value: Any, key: str) -> bool:
    """Never echo a secret, even a mistyped one: secret keys, a URL with credentials in it,
    a token id with its secret pasted on (`id=secret`)."""
    if any(hint in key for hint in _SECRET_HINTS):
        return True
    return isinstance(value, str) and (("@" in value and key.endswith("_url")) or "=" in value)


def _show(value: Any, key: str) -> str:
    if _may_hold_secret(value, key):
        return "the value"
    if isinstance(value, Ambiguous):
        return _cut(value.text)
    if isinstance(value, str):
        return repr(_cut(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return "an empty value"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _cut(text: str, limit: int = 64) -> str:
    """Long values are cut in messages (a message is one readable line)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def problems_from(
    exc: ValidationError, root: type[BaseModel], src: YamlSource, display: str
) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc: Loc = tuple(err["loc"])
        # The field that owns the error: for a list item (`tags[1]`) that is the list.
        keys = [i for i, part in enumerate(loc) if isinstance(part, str)]
        field_loc = loc[: keys[-1] + 1] if keys else ()
        key = str(field_loc[-1]) if field_loc else ""
        owner = _model_at(root, field_loc) if field_loc else None
        expected = expected_text(owner, key) if owner and key else None
        kind = err["type"]
        if root is ClusterFile and loc and loc[0] in SECRET_KEYS:
            continue  # checks.secret_problems says what is wrong, without the value
        if isinstance(err.get("input"), Ambiguous) and kind not in ("missing", "extra_forbidden"):
            what = f"{_show(err['input'], key)} is ambiguous: {err['input'].hint}"
        elif kind == "missing":
            what = "required key is missing"
        elif kind == "extra_forbidden":
            known = sorted(owner.model_fields) if owner else []
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"expected one of: {', '.join(known)}"
            problems.append(Problem(display, src.line_of(loc), dotted(loc), f"unknown key ({hint})"))
            continue
        elif kind in _RANGE:
            what = f"{_show(err['input'], key)} is out of range"
        elif kind in ("model_type", "dict_type") and not loc:
            problems.append(Problem(display, src.line_of(loc), "", "the file must be a mapping of keys"))
            continue
        elif kind in ("model_type", "dict_type"):
            what = f"{_show(err['input'], key)} is not a mapping"
        elif kind == "value_error":
            what = str(err["ctx"].get("error", err["msg"])) if "ctx" in err else err["msg"]
        else:
            what = f"{_show(err['input'], key)} is not valid"
        suffix = f" (expected {expected})" if expected else ""
        problems.append(Problem(display, src.line_of(loc), dotted(loc), what + suffix))
    return problems
