"""Loading: built-in defaults < file < environment, then validation, then a frozen Config.

Everything happens inside ``load_config``; nothing here keeps state between calls and nothing
touches the filesystem beyond reading the file and checking which ancestors of the configured
paths exist (media.md §8.1, §8.3).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Mapping

import yaml

from . import _model
from ._errors import MASK, NO_VALUE, ConfigError, Invalid, RuleViolation, show_value
from ._kinds import Path, closest
from ._rules import check_creatable, check_cross_key
from .schema import (
    BY_KEY,
    ENV_ALIASES,
    ENV_PREFIX,
    SCHEMA,
    env_names,
    schema_keys,
    section_class,
    section_paths,
)

DEFAULT_ORIGIN = "default"


@dataclass(frozen=True)
class _Raw:
    """A value before coercion, and where it came from (file path, variable name or default)."""

    value: Any
    origin: str


def load_config(path: str | None, environ: Mapping[str, str]) -> _model.Config:
    """Load, validate and freeze the configuration; raise ConfigError on the first problem.

    ``path`` None means built-in defaults (plus ``environ``). Relative paths from the file
    resolve against the file's directory; all others against the current directory.
    """
    raw = {entry.key: _Raw(entry.default, DEFAULT_ORIGIN) for entry in SCHEMA}
    source = os.path.abspath(path) if path is not None else None
    if source is not None:
        for key, value in _file_values(_read_file(source), source).items():
            raw[key] = _Raw(value, source)
    env_keys = _apply_environment(raw, environ)
    values = {entry.key: _coerce(entry.key, raw[entry.key]) for entry in SCHEMA}
    _resolve_paths(values, raw, source)
    _check_rules(values, raw)
    return _build(values, source, env_keys)


# --- the file -------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which PyYAML would otherwise silently merge."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"found duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_file(path: str) -> Mapping[Any, Any]:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ConfigError(path, f"cannot read the configuration file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, f"is not UTF-8 text (bad byte at offset {exc.start})") from None
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 -- a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(path, _yaml_problem(exc)) from None
    if document is None:
        return {}  # an empty file: every key keeps its default
    if not isinstance(document, Mapping):
        raise ConfigError(path, "must contain a mapping of sections at the top level")
    return document


def _yaml_problem(exc: yaml.YAMLError) -> str:
    # Only the parser's problem and position: its context snippet could quote a secret.
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "syntax error"
        if mark is not None:
            return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {what}"
        return f"invalid YAML: {what}"
    return f"invalid YAML: {type(exc).__name__}"


def _schema_tree() -> dict[str, Any]:
    """Nested dict of the schema: sections are dicts, leaves are their dotted keys."""
    tree: dict[str, Any] = {}
    for key in schema_keys():
        *sections, leaf = key.split(".")
        node = tree
        for name in sections:
            node = node.setdefault(name, {})
        node[leaf] = key
    return tree


def _file_values(document: Mapping[Any, Any], source: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    _walk(document, _schema_tree(), "", source, found)
    return found


def _walk(
    mapping: Mapping[Any, Any], tree: Mapping[str, Any], prefix: str, source: str, found: dict[str, Any]
) -> None:
    for name, value in mapping.items():
        key = f"{prefix}{name}"
        node = tree.get(name) if isinstance(name, str) else None
        if node is None:
            raise ConfigError(key, _unknown_key_problem(key), "", source)
        if isinstance(node, str):
            found[node] = value
        elif value is not None:  # "section:" with every key commented out is an empty section
            if not isinstance(value, Mapping):
                shown = _section_value(key, value)
                raise ConfigError(key, "must be a mapping of keys (a section)", shown, source)
            _walk(value, node, key + ".", source, found)


def _unknown_key_problem(key: str) -> str:
    hint = closest(key, schema_keys() + section_paths())
    return f"unknown key; did you mean {hint}?" if hint else "unknown key"


def _section_value(section: str, value: Any) -> str:
    holds_secret = any(entry.secret and entry.key.startswith(section + ".") for entry in SCHEMA)
    return MASK if holds_secret else show_value(value)


# --- the environment ------------------------------------------------------------------------


def _apply_environment(raw: dict[str, _Raw], environ: Mapping[str, str]) -> tuple[str, ...]:
    names = env_names()
    for variable in sorted(environ):
        if variable.startswith(ENV_PREFIX) and variable not in names:
            raise ConfigError(variable, _unknown_variable_problem(variable, names), "", "environment")
    applied: set[str] = set()
    # The api.md aliases are applied last so that they win over the regular names.
    regular = [(entry.env_name, entry.key) for entry in SCHEMA]
    for variable, key in regular + list(ENV_ALIASES.items()):
        if variable not in environ:
            continue
        if variable in ENV_ALIASES and environ[variable] == "":
            continue  # an empty alias (a placeholder in an EnvironmentFile) must not erase a secret
        raw[key] = _Raw(_env_value(key, variable, environ[variable]), variable)
        applied.add(key)
    return tuple(key for key in schema_keys() if key in applied)


def _unknown_variable_problem(variable: str, names: Mapping[str, str]) -> str:
    hint = closest(variable, list(names))
    return f"unknown environment variable; did you mean {hint}?" if hint else "unknown environment variable"


def _env_value(key: str, variable: str, text: str) -> Any:
    try:
        return BY_KEY[key].kind.from_env(text)
    except Invalid as exc:
        raise _invalid_error(key, exc, variable) from None


# --- coercion, paths, rules -----------------------------------------------------------------


def _shown(key: str, value: Any) -> str:
    if value is NO_VALUE:
        return ""
    return MASK if BY_KEY[key].secret else show_value(value)


def _invalid_error(key: str, exc: Invalid, origin: str) -> ConfigError:
    return ConfigError(key + exc.where, exc.problem, _shown(key, exc.value), origin)


def _coerce(key: str, raw: _Raw) -> Any:
    try:
        return BY_KEY[key].kind.coerce(raw.value)
    except Invalid as exc:
        raise _invalid_error(key, exc, raw.origin) from None


def _resolve_paths(values: dict[str, Any], raw: Mapping[str, _Raw], source: str | None) -> None:
    cwd = os.getcwd()
    file_dir = os.path.dirname(source) if source is not None else cwd
    for entry in SCHEMA:
        value = values[entry.key]
        if not isinstance(entry.kind, Path) or not value:
            continue
        # Only values written in the file are relative to the file (§8.1); environment
        # values are relative to the directory the service was started in.
        base = file_dir if raw[entry.key].origin == source else cwd
        values[entry.key] = os.path.normpath(os.path.join(base, value))


def _check_rules(values: Mapping[str, Any], raw: Mapping[str, _Raw]) -> None:
    try:
        check_cross_key(values)
        check_creatable(values)
    except RuleViolation as exc:
        base = _schema_key_of(exc.key)
        raise ConfigError(exc.key, exc.problem, _shown(base, exc.value), raw[base].origin) from None


def _schema_key_of(key: str) -> str:
    """``virtual_cameras[0].id`` -> ``virtual_cameras``: the key whose origin applies."""
    for candidate in sorted(BY_KEY, key=len, reverse=True):
        if key == candidate or key.startswith((candidate + ".", candidate + "[")):
            return candidate
    raise KeyError(key)


# --- the frozen tree ------------------------------------------------------------------------


def _build(values: Mapping[str, Any], source: str | None, env_keys: tuple[str, ...]) -> _model.Config:
    sections = set(section_paths())
    top: dict[str, Any] = {}
    for item in dataclasses.fields(_model.Config):
        if item.name in _model.PROVENANCE_FIELDS:
            continue
        if item.name in sections:
            top[item.name] = _build_section(item.name, values, sections)
        else:
            top[item.name] = values[item.name]
    return _model.Config(**top, source_path=source, env_keys=env_keys)


def _build_section(path: str, values: Mapping[str, Any], sections: set[str]) -> Any:
    cls = section_class(path)
    kwargs: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        child = f"{path}.{item.name}"
        kwargs[item.name] = _build_section(child, values, sections) if child in sections else values[child]
    return cls(**kwargs)
