"""Geometry of ``vram.svg``: every GPU as a bar of its memory under full load.

Pure: plan in, shapes and texts out; ``templates/vram.svg.j2`` prints them. A
bar is split, per model in boot order, into weights, KV cache, LoRA slots and
overhead (activation peak, non-torch memory, and the CUDA context and graphs
outside the share), then the card's reserve and what stays free. All bars share
one scale (the largest card), so a smaller card draws shorter.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpustack_compose.planner import GpuPlan, ModelPlan, Plan
from gpustack_compose.units import GiB, fmt_fraction

WIDTH = 960
MARGIN = 16
BAR_WIDTH = WIDTH - 2 * MARGIN
BAR_HEIGHT = 28
TITLE_HEIGHT = 22
LINE_HEIGHT = 15
GAP = 18
LEGEND_HEIGHT = 34
# Average advance of the 11 px sans-serif font, to decide whether a name fits
# inside its segment.
CHAR_WIDTH = 6.6

CATEGORIES = (
    ("weights", "weights", "#4c78a8"),
    ("kv", "KV cache", "#59a14f"),
    ("lora", "LoRA slots", "#b07aa1"),
    ("overhead", "overhead (activations, non-torch, CUDA context and graphs)", "#f28e2b"),
    ("asleep", "asleep (a swappable model outside the heaviest awake set)", "#d9d9d9"),
    ("reserve", "reserve", "#9d9d9d"),
    ("free", "free under load", "#ffffff"),
)
COLOURS = {key: colour for key, _, colour in CATEGORIES}
NAMES = {key: name for key, name, _ in CATEGORIES}


@dataclass(frozen=True)
class Segment:
    x: float
    width: float
    colour: str
    tooltip: str


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str


@dataclass(frozen=True)
class Row:
    y: float
    title: str
    bar_width: float
    segments: tuple[Segment, ...]
    separators: tuple[float, ...]  # x of the line between two models
    names: tuple[Label, ...]  # inside the bar, where they fit
    lines: tuple[Label, ...]  # one line per model under the bar


def _gib(size: int) -> str:
    return f"{size / GiB:.2f} GiB"


def _model_parts(m: ModelPlan) -> list[tuple[str, int]]:
    overhead = m.activation_bytes + m.non_torch_bytes + m.outside_share_bytes
    return [("weights", m.weights_bytes), ("kv", max(0, m.kv_bytes)), ("lora", m.lora_bytes), ("overhead", overhead)]


def _parts(gpu: GpuPlan, m: ModelPlan) -> list[tuple[str, int]]:
    """A GPU with swappable models is drawn with its heaviest awake set awake
    and the other swappable models asleep (their residue)."""
    if m.swappable and m.name not in gpu.worst_awake_set:
        return [("asleep", m.sleep_residue_bytes)]
    return _model_parts(m)


def _row(gpu: GpuPlan, y: float, scale: float) -> Row:
    bar_y = y + TITLE_HEIGHT
    x = float(MARGIN)
    segments: list[Segment] = []
    separators: list[float] = []
    names: list[Label] = []
    lines: list[Label] = []
    for number, m in enumerate(gpu.models, start=1):
        start = x
        for key, size in _parts(gpu, m):
            if size <= 0:
                continue
            width = size * scale
            label = NAMES[key]
            segments.append(Segment(x, width, COLOURS[key], f"{m.name}: {label} {_gib(size)}"))
            x += width
        if number > 1:
            separators.append(start)
        text = f"{number} {m.name}"
        if len(text) * CHAR_WIDTH + 6 <= x - start:
            names.append(Label(start + 4, bar_y + BAR_HEIGHT / 2 + 4, text))
        elif len(str(number)) * CHAR_WIDTH + 4 <= x - start:
            names.append(Label(start + 3, bar_y + BAR_HEIGHT / 2 + 4, str(number)))
        tp = f" (TP over GPUs {m.gpu_label}, per card)" if m.tensor_parallel > 1 else ""
        if m.swappable:
            state = "awake" if m.name in gpu.worst_awake_set else f"asleep, {_gib(m.sleep_residue_bytes)}"
            tp += f" (swappable, level {m.sleep_level}; drawn {state})"
        lora = f", LoRA slots {_gib(m.lora_bytes)}" if m.lora_bytes else ""
        lines.append(
            Label(
                MARGIN,
                bar_y + BAR_HEIGHT + LINE_HEIGHT * number,
                f"{number}  {m.name}  fraction {fmt_fraction(m.fraction)}{tp}: weights {_gib(m.weights_bytes)}, "
                f"KV cache {_gib(max(0, m.kv_bytes))} ({m.kv_tokens:,} tokens){lora}, "
                f"overhead {_gib(m.activation_bytes + m.non_torch_bytes + m.outside_share_bytes)}",
            )
        )
    reserve_width = gpu.reserve_bytes * scale
    segments.append(Segment(x, reserve_width, COLOURS["reserve"], f"reserve {_gib(gpu.reserve_bytes)}"))
    x += reserve_width
    free = max(0, gpu.free_bytes)
    segments.append(Segment(x, free * scale, COLOURS["free"], f"free under load {_gib(free)}"))
    title = (
        f"GPU {gpu.index}: {gpu.label}, {_gib(gpu.total_bytes)}; {gpu.boot} boot; "
        f"shared {fmt_fraction(gpu.fraction_sum)}; free under load {_gib(free)}"
    )
    if gpu.swappables:
        sets = " | ".join("{" + ", ".join(s) + "}" for s in gpu.awake_sets)
        title += f"; awake at once (awake_max {gpu.awake_max}): {sets}"
    return Row(y, title, gpu.total_bytes * scale, tuple(segments), tuple(separators), tuple(names), tuple(lines))


@dataclass(frozen=True)
class Picture:
    width: int
    height: int
    title: str
    legend: tuple[tuple[float, str, str], ...]  # x, colour, text
    rows: tuple[Row, ...]
    bar_height: int


def picture(plan: Plan) -> Picture:
    largest = max(max(g.total_bytes, g.peak_bytes) for g in plan.gpus)
    scale = BAR_WIDTH / largest
    legend = []
    x = float(MARGIN)
    for key, text, colour in CATEGORIES:
        if key == "asleep" and not plan.swappables:
            continue
        short = text.split(" (")[0]
        legend.append((x, colour, short))
        x += 22 + len(short) * CHAR_WIDTH + 18
    y = float(MARGIN + LEGEND_HEIGHT)
    rows = []
    for gpu in plan.gpus:
        rows.append(_row(gpu, y, scale))
        y += TITLE_HEIGHT + BAR_HEIGHT + LINE_HEIGHT * len(gpu.models) + GAP
    return Picture(WIDTH, int(y + MARGIN), f"VRAM plan of {plan.name}", tuple(legend), tuple(rows), BAR_HEIGHT)
