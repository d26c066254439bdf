"""The Grafana dashboard, built with Grafana's own typed SDK
(grafana-foundation-sdk, the 11.6.0 schema: versions.GRAFANA) from the
panels of ``queries.py``. Pure; the JSON is deterministic (sorted keys)."""

from __future__ import annotations

import json

from grafana_foundation_sdk.builders import common, dashboard, prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import StackingMode
from grafana_foundation_sdk.models.dashboard import DataSourceRef, GridPos

from gpustack_compose.contract import DATASOURCE_UID
from gpustack_compose.monitoring.queries import PANELS, Panel

PANEL_WIDTH = 12  # two panels a row on Grafana's 24-column grid
PANEL_HEIGHT = 8
REFRESH = "10s"
DATASOURCE = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)


def _panel(panel: Panel, index: int) -> timeseries.Panel:
    built = (
        timeseries.Panel()
        .title(panel.title)
        .description(panel.description)
        .unit(panel.unit)
        .datasource(DATASOURCE)
        .grid_pos(GridPos(h=PANEL_HEIGHT, w=PANEL_WIDTH, x=(index % 2) * PANEL_WIDTH, y=(index // 2) * PANEL_HEIGHT))
    )
    if panel.stacked:
        built = built.stacking(common.StackingConfig().mode(StackingMode.NORMAL))
    for ref, query in zip("ABCDEFGH", panel.queries, strict=False):
        built = built.with_target(
            prometheus.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(ref).datasource(DATASOURCE)
        )
    return built


def build(stack_name: str) -> dict[str, object]:
    """The dashboard of one stack, as Grafana stores it."""
    board = (
        dashboard.Dashboard(f"gpustack-compose: {stack_name}")
        .uid(f"gsc-{stack_name}"[:40])
        .tags(["gpustack-compose", "vllm"])
        .refresh(REFRESH)
        .time("now-30m", "now")
        .timezone("browser")
        .editable()
    )
    for index, panel in enumerate(PANELS):
        board = board.with_panel(_panel(panel, index))
    encoded: dict[str, object] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return encoded


def render(stack_name: str) -> str:
    return json.dumps(build(stack_name), indent=2, sort_keys=True) + "\n"
