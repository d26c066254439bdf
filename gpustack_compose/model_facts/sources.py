"""Where a model's files come from: a host directory, the Hugging Face cache, or the Hub.

The I/O edge of ``lock``: nothing else reads model files or the network.
Only config.json and safetensors *headers* are ever fetched, never weights:
from the Hub, config.json into a temporary folder and the headers through
huggingface_hub's ranged reads (``HfApi.get_safetensors_metadata``). The Hub
endpoint and token are huggingface_hub's own (``HF_ENDPOINT``, ``HF_TOKEN``);
``HF_HUB_OFFLINE=1`` or ``--offline`` keeps it off the network.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpustack_compose.catalog import find_model
from gpustack_compose.errors import ModelFileError, SetupError
from gpustack_compose.model_facts import safetensors
from gpustack_compose.model_facts.config import facts_from_config, parse_config_text
from gpustack_compose.model_facts.record import ModelEntry, WeightsFacts
from gpustack_compose.spec import ModelSpec, model_directory

CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class Origins:
    """Where ``lock`` may look: the stack's folder (relative directories),
    the Hugging Face hub cache to search, and whether the Hub may be asked."""

    stack_dir: Path
    hub_cache: Path | None
    offline: bool


def directory_of(model: ModelSpec, stack_dir: Path) -> Path | None:
    found = model_directory(model.model)
    if found is None:
        return None
    path = Path(found)
    return path if path.is_absolute() else stack_dir / path


def config_digest(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()


def _read_config(path: Path) -> tuple[dict[str, Any], str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(
            "missing: a model directory holds its config.json (the weights may be elsewhere)", where=str(path)
        ) from None
    except OSError as exc:
        raise ModelFileError(f"cannot be read ({exc.strerror or exc})", where=str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelFileError("not UTF-8 text: not a config.json", where=str(path)) from None
    return parse_config_text(text, str(path)), config_digest(raw)


def _entry(model: ModelSpec, source: str, config_path: Path, weights: WeightsFacts | None, **extra: Any) -> ModelEntry:
    config, digest = _read_config(config_path)
    facts = facts_from_config(config, source=str(config_path), weights=weights)
    return ModelEntry(model=model.model, source=source, config_sha256=digest, facts=facts, **extra)


def from_directory(model: ModelSpec, directory: Path) -> ModelEntry:
    if not directory.is_dir():
        raise ModelFileError(
            "is not a directory on this host (a model directory holds config.json)", where=str(directory)
        )
    return _entry(model, "directory", directory / CONFIG_FILE, safetensors.local_weights(directory))


def default_hub_cache() -> Path:
    """huggingface_hub's cache folder, from the environment as it is now
    (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    )
    return Path(home) / "hub"


def from_cache(model: ModelSpec, hub_cache: Path | None) -> ModelEntry | None:
    """The model's snapshot in the Hugging Face cache, when config.json is there."""
    from huggingface_hub import try_to_load_from_cache

    cache = hub_cache or default_hub_cache()
    found = try_to_load_from_cache(model.model, CONFIG_FILE, cache_dir=str(cache), revision=model.revision)
    if not isinstance(found, str):
        return None
    snapshot = Path(found).parent
    return _entry(
        model,
        "hf-cache",
        Path(found),
        safetensors.local_weights(snapshot),
        revision=snapshot.name,
        ref=model.revision,
    )


def from_hub(model: ModelSpec) -> ModelEntry:
    """config.json and the safetensors headers of the repo at its current
    commit (or the stack's revision), read over HTTP."""
    from huggingface_hub import HfApi, errors

    # Read the environment now (huggingface_hub reads it once, at import).
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=os.environ.get("HF_TOKEN") or None)
    where = f"{api.endpoint}/{model.model}"
    try:
        info = api.model_info(model.model, revision=model.revision)
        commit = info.sha or model.revision or "main"
        with tempfile.TemporaryDirectory(prefix="gsc-lock-") as scratch:
            config_path = Path(api.hf_hub_download(model.model, CONFIG_FILE, revision=commit, cache_dir=scratch))
            try:
                weights: WeightsFacts | None = safetensors.hub_weights(
                    api.get_safetensors_metadata(model.model, revision=commit)
                )
            except errors.NotASafetensorsRepoError:
                weights = None
            entry = _entry(model, "hub", config_path, weights, revision=commit, ref=model.revision)
    except errors.GatedRepoError:
        raise SetupError(
            f"{where}: gated: the Hub wants a token that may read it", hint="set HF_TOKEN and run lock again"
        ) from None
    except errors.RepositoryNotFoundError:
        raise SetupError(
            f"{where}: the Hub has no such repo, or it is private", hint="check the repo id, or set HF_TOKEN"
        ) from None
    except errors.RevisionNotFoundError:
        raise SetupError(f"{where}: the Hub has no revision {model.revision!r}") from None
    except errors.EntryNotFoundError:
        raise SetupError(f"{where}: the repo has no {CONFIG_FILE}, so it is not a transformers model") from None
    except errors.SafetensorsParsingError as exc:
        raise ModelFileError(f"a safetensors header cannot be parsed ({exc})", where=where) from None
    except (errors.HfHubHTTPError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise SetupError(
            f"{where}: cannot read it from the Hub ({type(exc).__name__}: {first})",
            hint="run lock where the Hub is reachable, or put the model in a directory or the Hugging Face cache",
        ) from None
    except Exception as exc:  # httpx's transport errors, which huggingface_hub lets through
        if type(exc).__module__.startswith(("httpx", "httpcore")):
            raise SetupError(
                f"{where}: cannot reach the Hub ({type(exc).__name__})",
                hint="run lock where the Hub is reachable, or put the model in a directory or the Hugging Face cache",
            ) from None
        raise
    return entry


def hub_offline(offline: bool) -> bool:
    return offline or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve(model: ModelSpec, origins: Origins) -> ModelEntry:
    """One model's lock entry: its directory, else the HF cache, else the Hub;
    offline, a catalog model falls back to its catalog record."""
    directory = directory_of(model, origins.stack_dir)
    if directory is not None:
        return from_directory(model, directory)
    cached = from_cache(model, origins.hub_cache)
    if cached is not None:
        return cached
    if not hub_offline(origins.offline):
        return from_hub(model)
    found = find_model(model.model)
    if found is not None:
        return found[0].model_copy(update={"model": model.model, "aliases": ()})
    raise SetupError(
        f"{model.model}: not in the Hugging Face cache{f' ({origins.hub_cache})' if origins.hub_cache else ''}, "
        "and the Hub is off (offline)",
        hint="run lock online, or download its config.json into the cache or a directory",
    )
