"""Build the images a rehearsal needs, locally (no registry is reachable).

    gpustack-compose/base       Debian bookworm minbase + python3, curl, wget
                                (debootstrap, then `docker import`)
    gpustack-compose/litellm    the real LiteLLM proxy from pinned wheels
    gpustack-compose/vllm-sim   the vLLM simulator (standard library only)

Every tag is a hash of what goes into the image, so an image is rebuilt only
when its recipe changes, and an existing tag is never rebuilt. The debootstrap
root filesystem and the downloaded wheels are cached by the same hashes under
``$GSC_CACHE_DIR`` (default ``~/.cache/gpustack-compose``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker.errors import BuildError, DockerException, ImageNotFound

from gpustack_compose.errors import EngineError

PACKAGE = Path(__file__).resolve().parent.parent
RECIPES = PACKAGE / "images"
Progress = Callable[[str], None]

DEBIAN_SUITE = "bookworm"
# python3 for the simulator and LiteLLM; curl and wget because the rendered
# healthchecks use curl (vLLM image) and wget (LiteLLM image).
DEBIAN_PACKAGES = ("python3", "python3-venv", "ca-certificates", "curl", "wget")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64")


def cache_dir() -> Path:
    return Path(os.environ.get("GSC_CACHE_DIR") or Path.home() / ".cache" / "gpustack-compose")


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:12]


def _files(root: Path, pattern: str = "**/*") -> list[Path]:
    return sorted(p for p in root.glob(pattern) if p.is_file() and "__pycache__" not in p.parts)


@dataclass(frozen=True)
class Images:
    base: str
    litellm: str
    vllm_sim: str


def base_tag() -> str:
    recipe = f"{DEBIAN_SUITE} minbase {' '.join(DEBIAN_PACKAGES)} v1".encode()
    return f"gpustack-compose/base:{DEBIAN_SUITE}-{_digest([recipe])}"


def litellm_tag() -> str:
    parts = [base_tag().encode(), *(p.read_bytes() for p in _files(RECIPES / "litellm"))]
    return f"gpustack-compose/litellm:1.106.2-{_digest(parts)}"


def _sim_sources() -> list[Path]:
    return [PACKAGE / "__init__.py", *_files(PACKAGE / "simulator", "*.py")]


def sim_tag() -> str:
    parts = [base_tag().encode(), *(p.read_bytes() for p in _files(RECIPES / "vllm-sim"))]
    parts += [p.read_bytes() for p in _sim_sources()]
    return f"gpustack-compose/vllm-sim:{_digest(parts)}"


def tags() -> Images:
    return Images(base=base_tag(), litellm=litellm_tag(), vllm_sim=sim_tag())


def exists(client: Any, tag: str) -> bool:
    try:
        client.images.get(tag)
    except ImageNotFound:
        return False
    except DockerException as exc:
        raise EngineError(f"cannot inspect image {tag}: {exc}") from None
    return True


def ensure(client: Any, progress: Progress, *, force: bool = False) -> Images:
    """Build whatever of the rehearsal images is missing; returns their tags."""
    images = tags()
    steps: list[tuple[str, Callable[[], None]]] = [
        (images.base, lambda: _build_base(client, images.base, progress)),
        (images.litellm, lambda: _build_litellm(client, images, progress)),
        (images.vllm_sim, lambda: _build_sim(client, images, progress)),
    ]
    for tag, build in steps:
        if not force and exists(client, tag):
            progress(f"image {tag}: present")
            continue
        progress(f"image {tag}: building")
        build()
        progress(f"image {tag}: built")
    return images


def _mirror() -> str:
    return os.environ.get("GSC_DEBIAN_MIRROR", DEFAULT_MIRROR)


def _build_base(client: Any, tag: str, progress: Progress) -> None:
    archive = cache_dir() / f"rootfs-{tag.split(':')[1]}.tar"
    if not archive.exists():
        _debootstrap(archive, progress)
    progress(f"importing {archive.name}")
    try:
        client.api.import_image_from_file(
            str(archive),
            repository=tag.split(":")[0],
            tag=tag.split(":")[1],
            changes=[
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "ENV LANG=C.UTF-8",
                'CMD ["python3"]',
            ],
        )
    except DockerException as exc:
        raise EngineError(f"docker import of {archive} failed: {exc}") from None


def _debootstrap(archive: Path, progress: Progress) -> None:
    if shutil.which("debootstrap") is None:
        raise EngineError("building the base image needs debootstrap (apt-get install debootstrap) and root")
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gsc-rootfs-", dir=archive.parent) as work:
        rootfs = Path(work) / "rootfs"
        progress(f"debootstrap {DEBIAN_SUITE} from {_mirror()} (about a minute)")
        command = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(DEBIAN_PACKAGES)}",
            DEBIAN_SUITE,
            str(rootfs),
            _mirror(),
        ]
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
            raise EngineError(f"debootstrap failed (exit {proc.returncode}):\n{tail}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
            target = rootfs / junk
            if target.exists():
                shutil.rmtree(target)
                target.mkdir()
        partial = archive.with_suffix(".partial")
        with tarfile.open(partial, "w") as tar:
            tar.add(rootfs, arcname=".")
        partial.replace(archive)


def _wheels(progress: Progress) -> Path:
    requirements = RECIPES / "litellm" / "requirements.txt"
    target = cache_dir() / "wheels" / f"litellm-{_digest([requirements.read_bytes()])}"
    done = target / ".complete"
    if done.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    progress("downloading the pinned LiteLLM wheels (about 170 MB)")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
               "--implementation", "cp", "--abi", "cp311", "-d", str(target), "-r", str(requirements)]  # fmt: skip
    for platform in WHEEL_PLATFORMS:
        command += ["--platform", platform]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise EngineError(f"pip download of the LiteLLM wheels failed:\n{tail}")
    done.touch()
    return target


def _docker_build(client: Any, context: Path, tag: str, base: str, progress: Progress) -> None:
    try:
        # The docker SDK drives the classic builder, which works without buildx.
        _, logs = client.images.build(
            path=str(context), tag=tag, buildargs={"BASE": base}, pull=False, rm=True, forcerm=True
        )
        for entry in logs:
            line = str(entry.get("stream", "")).strip()
            if line.startswith("Step "):
                progress(line)
    except BuildError as exc:
        lines = [str(e.get("stream", e.get("error", ""))).strip() for e in exc.build_log]
        tail = "\n".join(line for line in lines if line)[-2000:]
        raise EngineError(f"building {tag} failed: {exc.msg}\n{tail}") from None
    except DockerException as exc:
        raise EngineError(f"building {tag} failed: {exc}") from None


def _build_litellm(client: Any, images: Images, progress: Progress) -> None:
    wheels = _wheels(progress)
    with tempfile.TemporaryDirectory(prefix="gsc-build-") as work:
        context = Path(work)
        shutil.copy(RECIPES / "litellm" / "Dockerfile", context / "Dockerfile")
        shutil.copytree(wheels, context / "wheels", ignore=shutil.ignore_patterns(".complete"))
        shutil.copy(RECIPES / "litellm" / "requirements.txt", context / "wheels" / "requirements.txt")
        _docker_build(client, context, images.litellm, images.base, progress)


def _build_sim(client: Any, images: Images, progress: Progress) -> None:
    with tempfile.TemporaryDirectory(prefix="gsc-build-") as work:
        context = Path(work)
        shutil.copy(RECIPES / "vllm-sim" / "Dockerfile", context / "Dockerfile")
        for source in _sim_sources():
            target = context / "gpustack_compose" / source.relative_to(PACKAGE)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
        _docker_build(client, context, images.vllm_sim, images.base, progress)
