"""(Spec, Plan) -> {relative path: text}, from the Jinja2 templates in ``templates/``.

Pure: no I/O except reading templates. One Jinja environment with
StrictUndefined; every value a template prints must pass through a quoting
filter (``q`` for YAML, ``cq`` for compose, ``md`` for Markdown, ``key`` for
names already validated as safe). ``finalize`` refuses anything else, so a model
name, path or argument can never inject YAML or compose interpolation.
"""

from __future__ import annotations

import contextlib
import functools
import html
import os
import posixpath
import re
from pathlib import Path
from typing import Any

import jinja2

from gpustack_compose import contract, healthcheck, render_proxy, vllm_metrics
from gpustack_compose.contract import (
    BOOT_POSITION_LABEL,
    COMPOSE_FILE,
    ENV_EXAMPLE,
    FRACTION_LABEL,
    GPU_LABEL,
    HF_CACHE,
    KV_MAX_BYTES_LABEL,
    KVCACHED_IPC_LABEL,
    LITELLM_CONFIG,
    MODEL_LABEL,
    MODEL_PORT,
    PLAN_FILE,
    PROXY_CONFIG_DIR,
    PROXY_DOOR,
    PROXY_PORT,
    PROXY_SERVICE,
    ROLE_LABEL,
    ROLE_MODEL,
    SLEEP_LEVEL_LABEL,
    SVG_FILE,
    SWAP_CONFIG,
    SWAP_NETWORK,
    SWAP_PORT,
    SWAP_SERVICE,
    kvcached_ipc_name,
)
from gpustack_compose.monitoring import render as render_monitoring
from gpustack_compose.planner import ModelPlan, Plan
from gpustack_compose.render_swap import (
    dependencies,
    first_sleep_steps,
    has_swap,
    proxy_api_base,
    swap_config,
    swap_gpus,
)
from gpustack_compose.spec import ModelSpec, StackSpec, model_image
from gpustack_compose.units import fmt_fraction, fmt_gib
from gpustack_compose.vllm_args import adapter_mounts, model_mount, runtime_lora_env, serve_args, sleep_env
from gpustack_compose.vram_svg import picture


class Quoted(str):
    """Text already made safe for the file it is printed into."""


def _finalize(value: object) -> object:
    if isinstance(value, Quoted):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise jinja2.TemplateError(f"template printed an unquoted value: {value!r}")


def yaml_quote(value: object) -> Quoted:
    """A YAML scalar that parses back to exactly ``value``.

    Strings become double-quoted, pure-ASCII text: every character outside
    printable ASCII is escaped (\\uXXXX / \\UXXXXXXXX), so line separators, BOMs and
    C1 controls cannot break the document in any YAML 1.1 or 1.2 parser."""
    if isinstance(value, bool):
        return Quoted("true" if value else "false")
    if isinstance(value, int):
        return Quoted(str(value))
    if not isinstance(value, str):
        raise jinja2.TemplateError(f"cannot quote {type(value).__name__} {value!r}")
    out = ['"']
    for char in value:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04X}")
        else:
            out.append(f"\\U{code:08X}")
    out.append('"')
    return Quoted("".join(out))


def compose_quote(value: object) -> Quoted:
    """YAML quoting plus ``$`` -> ``$$``: Compose interpolates ``$VAR`` in every
    string of the file, so a literal dollar must be doubled."""
    if isinstance(value, str):
        value = value.replace("$", "$$")
    return yaml_quote(value)


def kubelet_quote(value: object) -> Quoted:
    """YAML quoting plus ``$`` -> ``$$``, for a container's args and env values:
    the kubelet expands ``$(VAR)`` there and reduces ``$$`` to ``$``
    (docs/facts.md, "Kubernetes"), so ``$(HF_TOKEN)`` in a model id or an extra
    argument would otherwise become the token."""
    if isinstance(value, str):
        value = value.replace("$", "$$")
    return yaml_quote(value)


# Plain keys start with a letter or underscore: a leading digit is quoted,
# because YAML parsers disagree on numbers -- Compose's (go-yaml) reads ``08``
# as the integer 8, PyYAML (YAML 1.1) as the string "08".
_SAFE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
# Words a YAML 1.1 parser reads as booleans or null (YAML 1.2 keeps fewer).
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})


def safe_key(value: object) -> Quoted:
    """A mapping key (service, env var, label): plain when every parser reads
    it back as the same string, quoted otherwise -- a service named ``0``,
    ``08`` or ``true`` would otherwise become an integer or a boolean key."""
    if not isinstance(value, str):
        raise jinja2.TemplateError(f"not a string key: {value!r}")
    if _SAFE_KEY.fullmatch(value) and value.lower() not in _YAML_WORDS:
        return Quoted(value)
    return yaml_quote(value)


_BLOCK_LINE = re.compile(r"^[\x20-\x7e]*$")


def literal_block(value: object, indent: int) -> Quoted:
    """Multi-line text as a YAML literal block (``|``) indented by ``indent``
    spaces, so a ConfigMap's file reads as the file. Text a block cannot carry
    verbatim (non-ASCII, tabs, trailing spaces, leading blanks, no final newline)
    falls back to one double-quoted scalar, which can carry anything."""
    text = str(value)
    lines = text.split("\n")
    verbatim = (
        text.endswith("\n")
        and not text.endswith("\n\n")
        and lines[0].strip() != ""
        and not lines[0].startswith(" ")
        and all(_BLOCK_LINE.fullmatch(line) and not line.endswith(" ") for line in lines)
    )
    if not verbatim:
        return yaml_quote(text)
    pad = " " * indent
    body = "\n".join(pad + line if line else "" for line in lines[:-1])
    return Quoted("|\n" + body)


def compose_env_optional(name: object) -> Quoted:
    """``${NAME:-}``: Compose interpolates the variable, empty when unset."""
    return Quoted(f"${{{safe_key(name)}:-}}")


def compose_env_required(name: object) -> Quoted:
    """``${NAME:?set NAME (see .env.example)}``: Compose refuses to start
    without it, with that message."""
    key = safe_key(name)
    return Quoted(f"${{{key}:?set {key} (see {contract.ENV_EXAMPLE})}}")


def markdown_cell(value: object) -> Quoted:
    text = str(value)
    for char, escaped in (("\\", "\\\\"), ("|", "\\|"), ("<", "&lt;"), (">", "&gt;"), ("`", "\\`")):
        text = text.replace(char, escaped)
    return Quoted(re.sub(r"\s+", " ", text))


def comment_text(value: object) -> Quoted:
    """Text for a ``#`` comment: printable ASCII kept, everything else escaped,
    so no line break can end the comment."""
    quoted = yaml_quote(str(value))
    return Quoted(quoted[1:-1])


def xml_text(value: object) -> Quoted:
    """Text for SVG (XML) content or an attribute: markup characters escaped,
    control characters (not allowed in XML 1.0) replaced."""
    text = "".join(c if c in "\t\n" or ord(c) >= 32 else "\ufffd" for c in str(value))
    return Quoted(html.escape(text, quote=True))


def _pixels(value: float) -> Quoted:
    return Quoted(f"{value:.1f}")


def _gib(value: int) -> Quoted:
    return Quoted(fmt_gib(value))


def _fraction(value: float) -> Quoted:
    return Quoted(fmt_fraction(value))


def _thousands(value: int) -> Quoted:
    return Quoted(f"{value:,}")


def _seconds(value: int) -> Quoted:
    return Quoted(f"{value}s")


def templates_dir() -> Path:
    """``templates/`` inside the wheel, or at the top of a source checkout."""
    packaged = Path(__file__).parent / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "templates"


class _QuietBytecodeCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept between runs (compiling them is a fifth of a
    render's time); keyed by the template's source checksum, so an edited
    template is never served stale. A cache that cannot be written is skipped."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError, ValueError, EOFError):
            super().load_bytecode(bucket)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    # the same folder as runtime.images.cache_dir(), without importing the runtime
    root = Path(os.environ.get("GSC_CACHE_DIR") or Path.home() / ".cache" / "gpustack-compose")
    directory = root / "jinja"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except (OSError, RuntimeError):  # RuntimeError: no home directory
        return None
    return _QuietBytecodeCache(str(directory))


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        bytecode_cache=_bytecode_cache(),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,
    )
    env.filters.update(
        q=yaml_quote,
        cq=compose_quote,
        kq=kubelet_quote,
        key=safe_key,
        md=markdown_cell,
        comment=comment_text,
        gib=_gib,
        fraction=_fraction,
        thousands=_thousands,
        seconds=_seconds,
        xml=xml_text,
        px=_pixels,
        block=literal_block,
        env_optional=compose_env_optional,
        env_required=compose_env_required,
    )
    # The names the files, the runtime and the Kubernetes base share.
    env.globals["names"] = contract
    return env


def kvcached_env(stack: StackSpec, full: Plan, plan: ModelPlan) -> dict[str, str]:
    """What kvcached reads (kvcached docs, API reference): it patches vLLM at
    import (KVCACHED_AUTOPATCH=1) when ENABLE_KVCACHED is true, and maps KV
    pages only while the device stays under KVCACHED_GPU_UTILIZATION. It
    refuses vLLM 0.26.0's V2 model runner at engine start ("kvcached does not
    support the vLLM 0.26.0 Model Runner V2 yet; set VLLM_USE_V2_MODEL_RUNNER=0",
    measured on the H200: docs/h200-elastic-2026-12-02.md)."""
    enable, autopatch, ipc_name, utilization = contract.KVCACHED_ENV
    return {
        enable: "true",
        autopatch: "1",
        ipc_name: kvcached_ipc_name(stack.name, plan.service),
        utilization: f"{full.gpu(plan.gpu).kvcached_gpu_utilization:g}",
        contract.MODEL_RUNNER_V2_ENV: "0",
    }


def _ipc(full: Plan, plan: ModelPlan) -> str | None:
    """kvctl reads and writes each server's segment in /dev/shm, so the servers
    of an elastic GPU share the IPC namespace -- and with it /dev/shm -- of the
    GPU's first server: kvctl run in any of them sees all of them."""
    if not plan.elastic:
        return None
    head = full.gpu(plan.gpu).models[0]
    return "shareable" if head.name == plan.name else f"service:{head.service}"


def _model_service(stack: StackSpec, spec: ModelSpec, plan: ModelPlan, stack_dir: str, full: Plan) -> dict[str, Any]:
    timing = healthcheck.timing(stack.docker.min_engine, plan.boot_timeout_s)
    mounts = [
        {
            # Compose resolves a relative bind source against the compose file's
            # folder; the stack file names it relative to the stack file.
            "source": _relative_to_output(stack_dir, m.host_path),
            "target": m.container_path,
        }
        for m in adapter_mounts(spec)
    ]
    inside = model_mount(spec)
    if inside is not None:  # a model directory of the host, read-only at /models/<name>
        mounts.insert(0, {"source": _relative_to_output(stack_dir, spec.model), "target": inside})
    labels = {
        ROLE_LABEL: ROLE_MODEL,
        MODEL_LABEL: spec.name,
        GPU_LABEL: plan.gpu_label,
        FRACTION_LABEL: fmt_fraction(plan.fraction),
        BOOT_POSITION_LABEL: str(plan.boot_position),
    }
    if plan.elastic:
        # What `up` caps with `kvctl limit <ipc> <bytes>` once the GPU's servers are healthy.
        labels[KVCACHED_IPC_LABEL] = kvcached_ipc_name(stack.name, plan.service)
        labels[KV_MAX_BYTES_LABEL] = str(plan.kv_max_bytes)
    if plan.swappable:
        labels[SLEEP_LEVEL_LABEL] = str(plan.sleep_level)
    ipc = _ipc(full, plan)
    elastic_env = kvcached_env(stack, full, plan) if plan.elastic else {}
    return {
        "service": plan.service,
        "image": model_image(stack, spec, elastic=plan.elastic),
        "args": serve_args(spec, plan),
        "env": sorted({**runtime_lora_env(spec), **elastic_env, **sleep_env(plan), **spec.env}.items()),
        "mounts": mounts,
        # Docker sizes /dev/shm only for a container with its own IPC namespace.
        "shm_size": spec.shm_size if ipc is None or ipc == "shareable" else None,
        "ipc": ipc,
        "gpu_ids": [str(i) for i in plan.gpus],
        "after": dependencies(full, plan),
        # A swappable server's dev-mode endpoints: reachable from its coordinator only.
        "networks": [SWAP_NETWORK] if plan.swappable else [],
        "timing": timing,
        "labels": sorted(labels.items()),
    }


def _relative_to_output(stack_dir: str, host_path: str) -> str:
    if posixpath.isabs(host_path):
        return host_path
    joined = posixpath.normpath(posixpath.join(stack_dir, host_path))
    return joined if joined.startswith(("../", "/")) else "./" + joined


def proxy_routes(stack: StackSpec, plan: Plan) -> list[dict[str, Any]]:
    """LiteLLM's model_list: one route per model and per LoRA adapter."""
    specs = {m.name: m for m in stack.models}
    routes = []
    for model_plan in plan.models:
        spec = specs[model_plan.name]
        route: dict[str, Any] = {"service": model_plan.service, "api_base": proxy_api_base(model_plan),
                 "swappable": model_plan.swappable}  # fmt: skip
        routes.append({"name": spec.name, "kind": "model", **route})
        routes += [{"name": lora.name, "kind": "adapter", **route} for lora in spec.loras]
    return routes


def render_litellm_config(stack: StackSpec, plan: Plan, source: str) -> str:
    """``litellm/config.yaml``; the Kubernetes target puts the same text in a ConfigMap."""
    context = {
        "source": source,
        "routes": proxy_routes(stack, plan),
        "proxy": stack.proxy,
        "router": render_proxy.router_settings(stack),
        "timeouts": render_proxy.route_timeouts(stack),
        "callbacks": render_proxy.callbacks(stack),
    }
    return environment().get_template("litellm-config.yaml.j2").render(context)


def render_svg(plan: Plan, source: str) -> str:
    """``vram.svg``: each GPU as a bar of weights, KV cache, LoRA slots,
    overhead, reserve and free memory per model."""
    return environment().get_template("vram.svg.j2").render(pic=picture(plan), source=source)


def render(stack: StackSpec, plan: Plan, source: str) -> dict[str, str]:
    """Every rendered file. ``source`` is the stack file's path relative to the
    output folder (posix), e.g. ``../../stacks/idp.yaml``."""
    env = environment()
    stack_dir = posixpath.dirname(source) or "."
    specs = {m.name: m for m in stack.models}
    model_services = [_model_service(stack, specs[m.name], m, stack_dir, plan) for m in plan.boot_ordered()]
    proxy_timing = healthcheck.timing(stack.docker.min_engine, healthcheck.PROXY_START_PERIOD_S)
    routes = proxy_routes(stack, plan)
    runtime = [m.name for m in stack.models if m.runtime_loras is not None]
    swap = has_swap(plan)
    proxy_after = [{"service": m.service, "condition": "service_healthy"} for m in plan.boot_ordered()
                   if not m.swappable]  # fmt: skip
    if swap:
        proxy_after.append({"service": SWAP_SERVICE, "condition": "service_healthy"})
    context = {
        "stack": stack,
        "plan": plan,
        "source": source,
        "model_services": model_services,
        "proxy": stack.proxy,
        "proxy_image": stack.proxy.image or stack.images.litellm,
        "proxy_service": PROXY_SERVICE,
        "proxy_port": PROXY_PORT,
        "proxy_timing": proxy_timing,
        "model_port": MODEL_PORT,
        "hf_cache": HF_CACHE,
        # A host folder for the Hugging Face cache, bound instead of the named volume.
        "hf_cache_source": _relative_to_output(stack_dir, stack.hf_cache) if stack.hf_cache else None,
        "routes": routes,
        "facts_notes": [(m.name, note) for m in plan.models for note in m.facts_notes],
        "specs": specs,
        "start_interval": healthcheck.supports_start_interval(stack.docker.min_engine),
        "runtime_lora_models": runtime,
        "svg_file": SVG_FILE,
        "placed": [m for m in plan.models if m.placed and len(plan.gpus) > 1],
        "tensor_parallel": [m for m in plan.models if m.tensor_parallel > 1],
        "ipc_names": {m.name: kvcached_ipc_name(stack.name, m.service) for m in plan.models if m.elastic},
        "proxy_after": proxy_after,
        "proxy_entrypoint": render_proxy.entrypoint(),
        "proxy_command": render_proxy.command(stack),
        "proxy_env": render_proxy.environment(stack),
        "proxy_sysctls": render_proxy.sysctls(),
        "proxy_config_dir": PROXY_CONFIG_DIR,
        "swap": swap,
        "swap_service": SWAP_SERVICE,
        "swap_port": SWAP_PORT,
        "swap_network": SWAP_NETWORK,
        "swap_config": SWAP_CONFIG,
        "swap_image": stack.images.swap,
        "swap_gpu_ids": [str(i) for i in swap_gpus(plan)],
        "first_sleeps": first_sleep_steps(plan),
        "swap_timing": healthcheck.timing(stack.docker.min_engine, healthcheck.PROXY_START_PERIOD_S),
        "monitoring": stack.monitoring if stack.monitoring.enabled else None,
        "grafana_provisioning": render_monitoring.GRAFANA_PROVISIONING,
        "grafana_home_dashboard": render_monitoring.home_dashboard(),
        "gpu_exporter_port": vllm_metrics.DCGM_PORT,
    }
    files = {
        COMPOSE_FILE: env.get_template("docker-compose.yml.j2").render(context),
        LITELLM_CONFIG: render_litellm_config(stack, plan, source),
        PROXY_DOOR: render_proxy.door_source(),
        ENV_EXAMPLE: env.get_template("env.example.j2").render(context),
        PLAN_FILE: env.get_template("PLAN.md.j2").render(context),
        SVG_FILE: render_svg(plan, source),
    }
    if swap:
        files[SWAP_CONFIG] = swap_config(stack, plan)
    if stack.monitoring.enabled:
        files.update(render_monitoring.files(env, stack, plan, source))
    return files
