"""Read a stack file into a validated StackSpec, or fail with one clear line.

The YAML is composed into nodes and built by hand (not ``yaml.safe_load``) so
that every value keeps its line and column, duplicate keys are errors instead
of silently winning, and alias expansion is bounded (a "billion laughs" file
would otherwise make validation walk an exponential tree).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from gpustack_compose.adapters import check_adapters
from gpustack_compose.errors import SpecError, StackRuleError, format_path
from gpustack_compose.spec import (
    UNION_TAGS,
    GpuSetSpec,
    GpuSpec,
    StackSpec,
    check_stack,
)

MAX_FILE_BYTES = 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 64

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Mark:
    line: int
    column: int


@dataclass
class LoadedYaml:
    data: Any
    # Where each value (and, under a ``key`` suffix, each mapping key) starts.
    marks: dict[Path_, Mark]


# Mappings keyed by a GPU index (``nodes: {0: gpu-node-a}``): integer keys allowed.
INT_KEYED: frozenset[Path_] = frozenset({("kubernetes", "nodes"), ("kubernetes", "gpu_uuids")})


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, source: str) -> None:
        self.loader = loader
        self.source = source
        self.marks: dict[Path_, Mark] = {}
        self.key_marks: dict[Path_, Mark] = {}
        self.nodes = 0

    def fail(self, node: yaml.Node, message: str) -> SpecError:
        mark = node.start_mark
        return SpecError(message, where=f"{self.source}:{mark.line + 1}:{mark.column + 1}")

    def _scalar(self, node: yaml.Node, path: Path_) -> Any:
        """A key or scalar value. PyYAML raises ValueError for what it cannot
        convert (an integer of more than 4,300 digits, a malformed timestamp)."""
        try:
            return self.loader.construct_object(node, deep=True)
        except ValueError as exc:
            text = str(getattr(node, "value", ""))
            if text.lstrip("+-").isdigit():
                what = f"an integer of {len(text)} digits is too large to read"
            else:
                what = f"{_excerpt(repr(text))} cannot be read ({_excerpt(_one_line(str(exc)))})"
            raise self.fail(node, f"{format_path(path) or 'value'}: {what}") from None

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(node, f"the file expands to more than {MAX_NODES} YAML values (aliases nested too deep?)")
        if len(path) > MAX_DEPTH:
            raise self.fail(node, f"values are nested more than {MAX_DEPTH} levels deep")
        self.marks[path] = Mark(node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            own = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
            # `<<` merge keys (YAML 1.1): PyYAML puts the merged pairs first, in
            # the order that makes the last one win; the mapping's own keys
            # come after them and override them. Only its own keys may not repeat.
            self.loader.flatten_mapping(node)
            merged = len(node.value) - own
            result: dict[str | int, Any] = {}
            own_keys: set[object] = set()
            for position, (key_node, value_node) in enumerate(node.value):
                where = format_path(path) or "the top level"
                if not isinstance(key_node, yaml.ScalarNode):
                    # never built: an alias bomb in a key expands without bound
                    kind = "mapping" if isinstance(key_node, yaml.MappingNode) else "list"
                    raise self.fail(key_node, f"{where}: a key is a {kind}; keys are plain strings")
                key = self._scalar(key_node, path)
                int_key = path in INT_KEYED and isinstance(key, int) and not isinstance(key, bool)
                if not isinstance(key, str) and not int_key:
                    raise self.fail(key_node, f"{where}: key {_excerpt(repr(key))} is not a string")
                if position >= merged:
                    if key in own_keys:
                        raise self.fail(key_node, f"{format_path((*path, key))}: duplicate key {key!r}")
                    own_keys.add(key)
                self.key_marks[(*path, key)] = Mark(key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                result[key] = self.build(value_node, (*path, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        value = self._scalar(node, path)
        if isinstance(value, str):
            surrogate = next((c for c in value if 0xD800 <= ord(c) <= 0xDFFF), None)
            if surrogate is not None:
                raise self.fail(
                    node,
                    f"{format_path(path) or 'value'}: contains U+{ord(surrogate):04X}, half of a UTF-16 surrogate "
                    "pair; write the character itself (or \\UXXXXXXXX in double quotes)",
                )
        return value


def _excerpt(text: str, limit: int = 60) -> str:
    """A message quotes at most a short excerpt of the input."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def parse_yaml(text: str, source: str) -> LoadedYaml:
    """YAML text -> plain data plus positions. Raises SpecError."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise SpecError(
            f"contains the control character U+{exc.character:04X}, which YAML does not allow; remove it "
            "(or write it escaped inside double quotes)",
            where=f"{source}:{line}:{column}",
        ) from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.composer.ComposerError as exc:
            if "expected a single document" in str(exc):
                raise SpecError(f"{source}: holds more than one YAML document; a stack file is one") from None
            raise
        if node is None:
            raise SpecError(f"{source}: the file is empty; a stack file needs name, gpus and models")
        builder = _Builder(loader, source)
        data = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        raise SpecError(f"{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: invalid YAML: {_one_line(str(exc))}") from None
    except RecursionError:
        raise SpecError(f"{source}: values are nested too deeply") from None
    finally:
        loader.dispose()
    marks = dict(builder.marks)
    marks.update({(*path, "<key>"): mark for path, mark in builder.key_marks.items()})
    return LoadedYaml(data, marks)


def read_stack_text(path: Path) -> str:
    """The stack file's text. Raises SpecError for missing, huge or binary files."""
    source = str(path)
    try:
        if path.is_dir():
            raise SpecError(f"{source}: is a directory, not a stack file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SpecError(f"{source}: is {size} bytes; a stack file is at most {MAX_FILE_BYTES} bytes")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"{source}: no such file") from None
    except PermissionError:
        raise SpecError(f"{source}: permission denied") from None
    except OSError as exc:
        raise SpecError(f"{source}: cannot be read: {exc.strerror or exc}") from None
    if b"\x00" in raw:
        raise SpecError(f"{source}: is a binary file, not YAML text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{source}: is not UTF-8 text (byte {exc.start})") from None


def load_stack(path: Path, *, source: str | None = None) -> StackSpec:
    """Read, parse and validate a stack file, and the adapter folders it names.
    Raises SpecError (exit 1)."""
    return load_stack_located(path, source=source)[0]


Locator = Callable[[Path_], str]


def load_stack_located(path: Path, *, source: str | None = None) -> tuple[StackSpec, Locator]:
    """``load_stack``, and where each field of the stack is in the file: what
    a later refusal (the plan's, the Kubernetes target's) is located with."""
    label = source or str(path)
    loaded = parse_yaml(read_stack_text(path), label)
    stack = validate_stack(loaded, label, stack_file=path)
    return stack, lambda field_path: locate(loaded, label, field_path)


def validate_stack(loaded: LoadedYaml, source: str, stack_file: Path | None = None) -> StackSpec:
    data = loaded.data
    if not isinstance(data, dict):
        raise SpecError("the top level must be a mapping with name, gpus and models", where=f"{source}:1:1")
    try:
        stack = StackSpec.model_validate(data)
    except ValidationError as exc:
        raise _rewrite(exc, loaded, source) from None
    try:
        check_stack(stack)
        if stack_file is not None:
            check_adapters(stack, stack_file)
    except StackRuleError as exc:
        raise exc.located(locate(loaded, source, exc.path)) from None
    return stack


def locate(loaded: LoadedYaml, source: str, path: Path_, *, key: bool = False) -> str:
    """``FILE:LINE:COL`` of ``path`` in the stack file (of its nearest
    ancestor that has a position; of the key itself for ``key``), or ``FILE``."""
    probe: Path_ = path
    if key and (*path, "<key>") in loaded.marks:
        probe = (*path, "<key>")
    while probe not in loaded.marks and probe:
        probe = probe[:-1]
    mark = loaded.marks.get(probe)
    return f"{source}:{mark.line}:{mark.column}" if mark else source


def _rewrite(exc: ValidationError, loaded: LoadedYaml, source: str) -> SpecError:
    errors = exc.errors(include_url=False)
    # A misspelt key also leaves a required one missing: name the cause.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    tagged: Path_ = tuple(part for part in first["loc"] if isinstance(part, (str, int)))
    path: Path_ = tuple(part for part in tagged if part not in UNION_TAGS)
    kind = first["type"]
    message = _message(kind, first, tagged)
    if len(path) >= 2 and path[-1] == "[key]":  # a mapping key of the wrong type
        message = f"key {path[-2]!r}: {message}"
        path = path[:-2]
    more = len(errors) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    where = locate(loaded, source, path, key=kind == "extra_forbidden")
    return SpecError(f"{message}{suffix}", path=path, where=where)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, str):
        text = repr(value)
    elif isinstance(value, dict):
        text = "a mapping"
    elif isinstance(value, list):
        text = "a list"
    else:
        text = repr(value)
    text = _one_line(text)
    return text if len(text) <= 80 else text[:77] + "..."


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _message(kind: str, error: Any, path: Path_) -> str:
    value = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "value_error":
        return _one_line(str(ctx.get("error", error["msg"])))
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return f"unknown key{_suggest(path)}"  # path still has the union tags
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected an integer, got {_value(value)}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {_value(value)}"
    if kind == "string_type":
        return f"expected a string, got {_value(value)}"
    if kind == "bool_type":
        return f"expected true or false, got {_value(value)}"
    if kind == "list_type":
        return f"expected a list, got {_value(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping, got {_value(value)}"
    if kind == "literal_error":
        return f"{_value(value)} is not one of {ctx.get('expected', '')}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        limit = next(iter(ctx.values()), "")
        return f"{_value(value)} must be {bound} {limit}"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length', 1)} item(s)"
    if kind == "too_long":
        return f"has more than {ctx.get('max_length')} items"
    if kind == "finite_number":
        return f"{_value(value)} is not a finite number"
    return f"{_value(value)}: {_one_line(error['msg'])}"


_UNION_BRANCHES: dict[str | int, type[BaseModel]] = {"gpu-set": GpuSetSpec, "gpu-list": GpuSpec}


def _suggest(path: Path_) -> str:
    """' (did you mean max_model_len?)' for a misspelt key, using the model's fields."""
    model: type[BaseModel] | None = StackSpec
    for part in path[:-1]:
        if model is None:
            return ""
        if isinstance(part, int):
            continue
        if part in UNION_TAGS:  # which branch of a union the value was read as
            model = _UNION_BRANCHES.get(part, model)
            continue
        field = model.model_fields.get(part)
        if field is None:
            return ""
        model = _model_of(field.annotation)
    if model is None or not isinstance(path[-1], str):
        return ""
    close = difflib.get_close_matches(path[-1], list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None
