"""Where a ``JobSpec``'s values come from: ``load_spec`` merges, lowest precedence first, built-in
defaults < values file (``-f FILE``) < explicit CLI flags < ``--set key=value`` (the last word, as in
Helm). ``--set`` reaches mapping fields with a dot: ``--set env.FOO=bar``,
``--set node_selector.accelerator-type=module-910b-8``. Values files are strict YAML: duplicate keys
and tags are errors, unknown keys are reported with the nearest known one."""

from __future__ import annotations

import difflib
import logging
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from vitjob.api.checks import field_types, spec_error
from vitjob.api.model import SPEC_KEYS
from vitjob.api.spec import JobSpec
from vitjob.errors import SpecError

log = logging.getLogger(__name__)

_MAPPING_KEYS = ("node_selector", "env", "labels", "annotations")
_LIST_KEYS = ("tolerations", "extra_args", "supplemental_groups")
_TRUE_WORDS = ("true", "yes", "on")
_FALSE_WORDS = ("false", "no", "off")
_NULL_WORDS = ("null", "~", "")


def load_spec(
    cli_values: Mapping[str, Any],
    values_file: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> JobSpec:
    """Build a ``JobSpec``: defaults < values file < explicit CLI flags < ``--set`` overrides.

    Args:
        cli_values: spec keys from explicit CLI flags; ``None`` values mean "flag not given".
        values_file: a YAML mapping of spec keys (``cards: 8``, ``env: {FOO: bar}``), or None.
        overrides: ``KEY=VALUE`` strings; ``KEY`` may be ``MAPPING.SUBKEY`` for mapping keys.

    Raises:
        SpecError: listing every problem (unknown keys with the nearest known one, bad values).
    """
    merged: dict[str, Any] = {}
    problems: list[str] = []
    if values_file is not None:
        file_values = read_values_file(values_file)
        problems.extend(_unknown_key_problems(file_values, f"values file {values_file}"))
        merged.update({k: _coerce_file_value(k, v) for k, v in file_values.items() if k in SPEC_KEYS})
    for key, value in cli_values.items():
        if value is None:
            continue
        if key not in SPEC_KEYS:
            raise ValueError(f"CLI value {key!r} is not a JobSpec field")  # programming error
        merged[key] = value
    for override in overrides:
        problems.extend(apply_override(merged, override))
    merged.setdefault("name", "")
    merged.setdefault("hw", "")
    try:
        spec = JobSpec(**merged)
    except SpecError as exc:
        raise spec_error(problems + list(getattr(exc, "problems", [str(exc)]))) from None
    if problems:
        raise spec_error(problems)
    log.debug("job spec: %s", spec)
    return spec


def read_values_file(path: str | Path) -> dict[str, Any]:
    """Read a values file: a YAML mapping of spec keys. Duplicate keys and YAML tags are errors."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"values file {path}: not found; check the path given to -f") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"values file {path}: cannot be read ({exc})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" line {mark.line + 1}, column {mark.column + 1}:"
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(
            f"values file {path}:{where} {problem}; write a YAML mapping of spec keys such as "
            "'cards: 8' (see vitjob render --help)"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise SpecError(
            f"values file {path}: expected a mapping of spec keys (e.g. 'cards: 8'), got "
            f"{type(data).__name__}"
        )
    return data


class _UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML has no type information
    """SafeLoader that rejects duplicate mapping keys instead of keeping the last one."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def apply_override(merged: dict[str, Any], override: str) -> list[str]:
    """Apply one ``--set KEY=VALUE`` to ``merged``; return the problems (empty when applied)."""
    key, eq, raw = override.partition("=")
    key = key.strip()
    if not eq or not key:
        return [f"--set {override!r}: expected KEY=VALUE (e.g. --set cards=8)"]
    top, dot, sub = key.partition(".")
    if top not in SPEC_KEYS:
        return [f"--set {key}: unknown key{_suggestion(top)}"]
    if dot:
        if top not in _MAPPING_KEYS or not sub:
            return [f"--set {key}: only {', '.join(_MAPPING_KEYS)} take a sub-key (e.g. --set env.FOO=bar)"]
        mapping = dict(merged.get(top) or {})
        mapping[sub] = raw
        merged[top] = mapping
        return []
    if top in _MAPPING_KEYS:
        return [f"--set {key}: a mapping; use --set {top}.KEY=VALUE or the values file (-f)"]
    if top in _LIST_KEYS:
        return [f"--set {key}: a list; set it in the values file (-f)"]
    hint = field_types(JobSpec)[top]
    try:
        merged[top] = convert_scalar(raw, hint)
    except ValueError as exc:
        return [f"--set {key}: {exc}"]
    return []


def convert_scalar(raw: str, hint: Any) -> Any:
    """Convert a ``--set`` string to a field's type (``null`` clears an optional field)."""
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    if optional and raw.strip() in _NULL_WORDS:
        return None
    if base is bool:
        word = raw.strip().lower()
        if word in _TRUE_WORDS or word in _FALSE_WORDS:
            return word in _TRUE_WORDS
        raise ValueError(f"{raw!r} is not a boolean; use true or false")
    if base is int:
        try:
            return int(raw, 10)
        except ValueError:
            raise ValueError(f"{raw!r} is not an integer") from None
    if base is float:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a number") from None
    return raw


def _coerce_file_value(key: str, value: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` as a string: accept it for number keys such as ``lr``."""
    if isinstance(value, str) and float in typing.get_args(field_types(JobSpec)[key]):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _unknown_key_problems(values: Mapping[str, Any], source: str) -> list[str]:
    return [f"{source}: unknown key {key!r}{_suggestion(key)}" for key in values if key not in SPEC_KEYS]


def _suggestion(key: str) -> str:
    normalised = key.replace("-", "_").lower()
    if normalised in SPEC_KEYS:
        return f"; did you mean {normalised!r}?"
    close = difflib.get_close_matches(normalised, SPEC_KEYS, n=1, cutoff=0.5)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known keys: {', '.join(SPEC_KEYS)}"
