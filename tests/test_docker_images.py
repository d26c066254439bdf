"""The locally built images, run by testcontainers: the simulator image behaves
like `vllm serve` from outside; the LiteLLM image has what its healthcheck uses."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import run_module

pytestmark = pytest.mark.docker

# Ryuk, testcontainers' reaper, is an image from a registry this machine
# cannot reach; containers are stopped by the tests themselves.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


def test_simulator_image_opens_its_port_only_once_loaded(built_images: Any) -> None:
    from testcontainers.core.container import DockerContainer

    container = (
        DockerContainer(built_images.vllm_sim)
        .with_command(["Qwen/Qwen3-0.6B", "--served-model-name", "q", "--max-model-len", "4096"])
        .with_env("GSC_SIM_LOAD_S", "3")
        .with_exposed_ports(8000)
    )
    with container:
        client = container.get_docker_client()
        # the rendered healthcheck, run inside the image: fails while loading
        healthcheck = ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8000/health"]
        probe = client.client.api.exec_create(container.get_wrapped_container().id, healthcheck)
        assert client.client.api.exec_inspect(probe["Id"])["ExitCode"] is None
        result = client.client.api.exec_start(probe["Id"])
        assert client.client.api.exec_inspect(probe["Id"])["ExitCode"] != 0, result
        url = f"http://{container.get_container_host_ip()}:{container.get_exposed_port(8000)}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert httpx.get(f"{url}/v1/models").json()["data"][0]["id"] == "q"


def test_litellm_image_has_the_healthcheck_tools(built_images: Any, engine: Any) -> None:
    output = engine.containers.run(
        built_images.litellm, entrypoint=["sh", "-c", "command -v wget && litellm --version"], remove=True
    )
    text = output.decode()
    assert "/usr/bin/wget" in text
    assert "1.106.2" in text


def test_a_build_leaves_no_untagged_image_behind(built_images: Any, engine: Any, tmp_path: Path) -> None:
    """A multi-stage recipe built twice under one tag (``images --force``):
    its build stages and the image the tag named before are gone after."""
    from gpustack_compose.runtime.images import BUILD_STAGE_LABEL, IMAGE_LABEL, _docker_build

    tag = f"gpustack-compose/leftover-probe:{os.urandom(3).hex()}"
    ids = []
    try:
        for content in ("first", "second"):
            (tmp_path / "Dockerfile").write_text(
                "ARG BASE\nFROM ${BASE} AS build\nLABEL " + BUILD_STAGE_LABEL + "\n"
                f"RUN echo {content} > /probe\nFROM ${{BASE}}\nCOPY --from=build /probe /probe\n"
            )
            _docker_build(engine, tmp_path, tag, built_images.base, lambda _message: None)
            ids.append(engine.images.get(tag).id)
        assert ids[0] != ids[1]
        remaining = {image.id for image in engine.images.list(all=True)}
        assert ids[0] not in remaining
        for label in (BUILD_STAGE_LABEL, IMAGE_LABEL):
            dangling = engine.images.list(filters={"dangling": True, "label": label})
            assert dangling == [], (label, [image.id for image in dangling])
    finally:
        engine.images.remove(tag, force=True)


@pytest.mark.usefixtures("built_images")
def test_the_kvcached_image_is_built_from_the_official_vllm_image(engine: Any, tmp_path: Path) -> None:
    """`images --kvcached` builds FROM the vLLM image the other servers run; an engine that has it
    not and cannot pull it (this machine: no registry) gets one line saying so, and nothing is built."""
    from gpustack_compose import versions
    from gpustack_compose.runtime.images import exists, vllm_kvcached_tag

    result = run_module(["images", "--kvcached"], tmp_path, timeout=1800)
    if exists(engine, versions.VLLM_IMAGE):  # a GPU host: the build itself
        assert result.code == 0, result.stderr[-2000:]
        assert exists(engine, vllm_kvcached_tag()) and exists(engine, versions.VLLM_KVCACHED_IMAGE)
        return
    assert result.code == 1
    assert result.stderr.startswith(
        f"error: the kvcached image is built FROM {versions.VLLM_IMAGE}, which this engine does not have and "
        "cannot pull ("
    )
    assert "then gpustack-compose images --kvcached\n" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not exists(engine, vllm_kvcached_tag())
