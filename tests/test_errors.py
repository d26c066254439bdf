"""One error shape: ``FILE:LINE:COL: PATH: detail; hint``, the place attached once."""

from __future__ import annotations

import pytest

from gpustack_compose.errors import (
    ArgumentError,
    CheckError,
    GscError,
    OutputError,
    PlanError,
    SetupError,
    SpecError,
    StackRuleError,
)


def test_the_parts_read_in_one_order() -> None:
    error = PlanError("'a' does not fit", path=("models", 2, "memory"), hint="lower memory")
    assert error.message == "models[2].memory: 'a' does not fit; lower memory"
    placed = error.located("s.yaml:9:13")
    assert str(placed) == "s.yaml:9:13: models[2].memory: 'a' does not fit; lower memory"
    assert isinstance(placed, PlanError) and placed.args == (placed.message,)
    # attached once: a second place never replaces the first
    assert placed.located("other.yaml:1:1") is placed
    assert error.where is None  # the original is unchanged


def test_a_stack_rule_is_a_spec_error_and_a_value_error() -> None:
    rule = StackRuleError(("gpus", 0, "boot"), "parallel needs exact KV")
    assert isinstance(rule, SpecError) and isinstance(rule, ValueError)
    assert rule.located("s.yaml:3:5").message == "s.yaml:3:5: gpus[0].boot: parallel needs exact KV"


@pytest.mark.parametrize("kind", [ArgumentError, CheckError, OutputError, SetupError, SpecError, PlanError])
def test_every_refusal_exits_1(kind: type[GscError]) -> None:
    assert kind("x").exit_code == 1
