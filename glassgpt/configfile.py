"""Any config dataclass ↔ a TOML file ↔ `--key=value` overrides, type-checked against the dataclass.

    defaults in the dataclass  →  a TOML file of flat `key = value` lines  →  `--key=value` on the command line

Used by `glassgpt train` (TrainConfig) and `glassgpt seq2seq train` (seq2seq's TrainConfig). Every value is
checked against its field's type annotation (int, float, str, bool, or `X | None`); a wrong key or value is a
one-line GlassError naming it. No exec, no eval.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

from .errors import GlassError

NONE_WORDS = ("none", "null", "")
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


def field_types(cls: type) -> dict[str, Any]:
    """{field name: type annotation} of a config dataclass."""
    return {k: v for k, v in typing.get_type_hints(cls).items() if k in {f.name for f in dataclasses.fields(cls)}}


def _describe(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return " or ".join(a.__name__ for a in args) + " (or none)" if args else tp.__name__


def coerce(cls: type, key: str, value: Any, from_text: bool) -> Any:
    """A value for cls.key, checked against the field's type; text from the command line is parsed."""
    types = field_types(cls)
    if key not in types:
        raise GlassError(f"unknown config key {key!r}; known keys: {', '.join(types)}")
    tp = types[key]
    allowed = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    optional = type(None) in typing.get_args(tp)
    if optional and (value is None or (isinstance(value, str) and value.lower() in NONE_WORDS)):
        return None  # "none" (as --show-config writes it), "null", or an empty --key=
    base = allowed[0]
    if base is bool:
        if isinstance(value, bool):
            return value
        if from_text and str(value).lower() in TRUE_WORDS + FALSE_WORDS:
            return str(value).lower() in TRUE_WORDS
    elif base is int:
        if from_text and not isinstance(value, bool):
            try:
                return int(str(value).replace("_", ""))
            except ValueError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            return value
    elif base is float:
        if from_text and not isinstance(value, bool):
            try:
                return float(value)
            except ValueError:
                pass
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif base is str:
        if from_text or isinstance(value, str):
            return str(value)
    raise GlassError(f"config key {key} must be {_describe(tp)}, got {value!r}")


def parse_overrides(cls: type, args: list[str]) -> dict[str, Any]:
    """['--max-steps=100', '--compile', '--device', 'cpu'] → {'max_steps': 100, 'compile': True, 'device': 'cpu'}."""
    out: dict[str, Any] = {}
    types = field_types(cls)
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise GlassError(f"unexpected argument {arg!r}: overrides are written --key=value")
        key, eq, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if not eq:
            tp = types.get(key)
            is_bool = tp is not None and bool in (typing.get_args(tp) or (tp,))
            nxt = args[i + 1] if i + 1 < len(args) else None
            if is_bool and (nxt is None or nxt.startswith("--") or nxt.lower() not in ("true", "false")):
                value = "true"  # a bare --flag
            elif nxt is None or nxt.startswith("--"):
                coerce(cls, key, None, True)  # an unknown key is reported before a missing value
                raise GlassError(f"config key {key} needs a value: --{key.replace('_', '-')}=VALUE")
            else:
                value, i = nxt, i + 1
        out[key] = coerce(cls, key, value, from_text=True)
        i += 1
    return out


def read_toml(cls: type, path: str | Path, bundled: Path | None = None) -> dict[str, Any]:
    """The keys of a TOML file, checked against cls; a bare name (no folder) may name a file in `bundled`."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    path = Path(path)
    if not path.is_file():
        candidate = bundled / f"{path.stem}.toml" if bundled else None
        if candidate and path.parent == Path(".") and candidate.is_file():
            path = candidate
        else:
            names = f" (bundled configs: {', '.join(bundled_names(bundled))})" if bundled else ""
            raise GlassError(f"config file not found: {path}{names}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise GlassError(f"{path}: not valid TOML ({e})") from None
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            raise GlassError(f"{path}: tables are not config keys ([{key}]); write flat key = value lines")
        try:
            out[key.replace("-", "_")] = coerce(cls, key.replace("-", "_"), value, from_text=False)
        except GlassError as e:
            raise GlassError(f"{path}: {e}") from None
    return out


def bundled_names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.toml"))


def make(cls: type, config_file: str | Path | None = None, overrides: dict[str, Any] | None = None,
         base: dict[str, Any] | None = None, bundled: Path | None = None, base_source: str = "saved config") -> Any:
    """cls from its defaults, then `base` (a saved config, checked like a file: base_source names it),
    then a TOML file, then overrides."""
    values = {}
    if base is not None:
        if not isinstance(base, dict):
            raise GlassError(f"{base_source}: not a JSON object of config keys")
        for key, value in base.items():
            try:
                values[key] = coerce(cls, key, value, from_text=False)
            except GlassError as e:
                raise GlassError(f"{base_source}: {e}") from None
    if config_file:
        values.update(read_toml(cls, config_file, bundled))
    values.update(overrides or {})
    known = field_types(cls)
    for key in values:
        if key not in known:
            raise GlassError(f"unknown config key {key!r}")
    return cls(**values)


def to_toml(values: dict[str, Any]) -> str:
    """Flat `key = value` lines that read_toml reads back (None is written "none")."""
    return "".join(f"{key} = {_toml_value(value)}\n" for key, value in values.items())


def _toml_value(value: Any) -> str:
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False)
