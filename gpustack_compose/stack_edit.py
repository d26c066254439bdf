"""Edit a stack file the way a person would: comments, order and layout kept.

ruamel.yaml's round-trip mode re-emits everything it did not touch as it was.
The edited text is returned, not written: callers validate it first, so a
change that would not load never reaches the disk.
"""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from gpustack_compose.errors import SpecError


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _load(text: str, source: str) -> Any:
    try:
        return _yaml().load(text)
    except Exception as exc:  # ruamel's error tree has no common public base
        raise SpecError(f"{source}: cannot be edited: {exc}") from None


def _dump(data: Any) -> str:
    stream = io.StringIO()
    _yaml().dump(data, stream)
    return stream.getvalue()


def _model(data: Any, model: str, source: str) -> Any:
    for entry in data.get("models") or []:
        if isinstance(entry, dict) and entry.get("name") == model:
            return entry
    names = ", ".join(str(m.get("name")) for m in data.get("models") or [] if isinstance(m, dict))
    raise SpecError(f"{source}: no model named {model!r} (models: {names})")


def add_lora(text: str, source: str, model: str, name: str, path: str) -> str:
    data = _load(text, source)
    entry = _model(data, model, source)
    loras = entry.get("loras")
    if loras is None:
        loras = CommentedSeq()
        entry["loras"] = loras
    if any(isinstance(lora, dict) and lora.get("name") == name for lora in loras):
        raise SpecError(f"{source}: {model!r} already serves an adapter named {name!r}")
    item = CommentedMap()
    item["name"] = name
    item["path"] = path
    if getattr(loras, "fa", None) is not None and loras.fa.flow_style():
        item.fa.set_flow_style()
    loras.append(item)
    return _dump(data)


def remove_lora(text: str, source: str, model: str, name: str) -> str:
    data = _load(text, source)
    entry = _model(data, model, source)
    loras = entry.get("loras") or []
    kept = [lora for lora in loras if not (isinstance(lora, dict) and lora.get("name") == name)]
    if len(kept) == len(loras):
        raise SpecError(f"{source}: {model!r} serves no adapter named {name!r}")
    if kept:
        for position in range(len(loras) - 1, -1, -1):
            if isinstance(loras[position], dict) and loras[position].get("name") == name:
                del loras[position]
    else:
        del entry["loras"]
    return _dump(data)
