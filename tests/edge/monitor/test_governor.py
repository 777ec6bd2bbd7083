"""The governor's decisions per policy: thresholds, hysteresis (a level is left only below its threshold less the
margin), the minimum dwell both ways, and levels held on degraded or missing readings. Time is the snapshots' clock,
passed in: nothing here sleeps."""
from __future__ import annotations

import logging
from typing import Optional

from edge.monitor.governor import Decision, Governor
from edge.monitor.policy import GovernorConfig, MemoryPolicy, PowerPolicy, TemperaturePolicy
from edge.monitor.snapshot import Snapshot

TOTAL_KB = 8_000_000


def ram(fraction: float, time_s: float = 0.0, degraded: Optional[str] = None) -> Snapshot:
    return Snapshot(time_s, "test", degraded, ram_total_kb=TOTAL_KB, ram_used_kb=int(TOTAL_KB * fraction))


def governor(**settings) -> Governor:
    return Governor(GovernorConfig(**dict(dict(enabled=True, min_dwell_s=0.0), **settings)))


def levels(decisions):
    return [(d.policy, d.level_from, d.level_to, d.action) for d in decisions]


def test_memory_climbs_to_the_level_whose_threshold_the_reading_reaches():
    g = governor()  # 85%, 90%, 95%; margin 5%
    assert g.decide(ram(0.80), 0.0) == [] and g.state() == {
        "levels": {"memory": 0, "power": 0, "temperature": 0}, "max_slice_nums": None, "paused": False,
        "frame_interval_s": 0.0}
    assert levels(g.decide(ram(0.85), 1.0)) == [("memory", 0, 1, "fewer_slices")]
    assert g.state()["max_slice_nums"] == 4 and not g.state()["paused"]
    [decision] = g.decide(ram(0.921), 2.0)
    assert decision == Decision(2.0, "memory", 1, 2, "overview_only", "RAM 92.1% used >= 90% (enter level 2)")
    assert decision.escalation and g.state()["max_slice_nums"] == 1
    assert levels(g.decide(ram(0.99), 3.0)) == [("memory", 2, 3, "pause_capture")]
    assert g.state()["paused"] and g.state()["max_slice_nums"] == 1
    assert g.decide(ram(1.0), 4.0) == []  # the top level


def test_a_jump_past_several_thresholds_is_one_decision():
    g = governor()
    assert levels(g.decide(ram(0.96), 0.0)) == [("memory", 0, 3, "pause_capture")]


def test_memory_leaves_a_level_only_below_its_threshold_less_the_margin_one_level_at_a_time():
    g = governor()
    g.decide(ram(0.96), 0.0)
    assert g.decide(ram(0.94), 1.0) == [] and g.decide(ram(0.901), 2.0) == []  # below 95% but not below 90%
    [decision] = g.decide(ram(0.89), 3.0)
    assert levels([decision]) == [("memory", 3, 2, "overview_only")] and not decision.escalation
    assert decision.reason == "RAM 89.0% used < 90% (95% - 5% margin: leave level 3)"
    assert not g.state()["paused"]
    assert levels(g.decide(ram(0.50), 4.0)) == [("memory", 2, 1, "fewer_slices")]  # one level per decision
    assert levels(g.decide(ram(0.50), 5.0)) == [("memory", 1, 0, "normal")]
    assert g.state()["max_slice_nums"] is None


def test_the_minimum_dwell_holds_a_level_both_ways():
    g = governor(min_dwell_s=10.0)
    assert levels(g.decide(ram(0.86), 100.0)) == [("memory", 0, 1, "fewer_slices")]
    assert g.decide(ram(0.96), 105.0) == []  # escalation waits too
    assert levels(g.decide(ram(0.96), 110.0)) == [("memory", 1, 3, "pause_capture")]
    assert g.decide(ram(0.10), 119.9) == []  # so does recovery
    assert levels(g.decide(ram(0.10), 120.0)) == [("memory", 3, 2, "overview_only")]
    assert g.decide(ram(0.10), 125.0) == []
    assert levels(g.decide(ram(0.10), 130.0)) == [("memory", 2, 1, "fewer_slices")]


def test_degraded_or_missing_readings_hold_the_levels_and_are_logged_once(caplog):
    g = governor()
    g.decide(ram(0.91), 0.0)
    with caplog.at_level(logging.WARNING, logger="minicpmv-edge"):
        for t in (1.0, 2.0, 3.0):
            assert g.decide(ram(0.99, degraded="jtop: Lost connection with jtop server"), t) == []
            assert g.decide(ram(0.10, degraded="jtop: Lost connection with jtop server"), t) == []
    held = [r.getMessage() for r in caplog.records if "memory held" in r.getMessage()]
    assert held == ["governor: memory held at level 2: jtop: Lost connection with jtop server"]
    assert g.levels["memory"] == 2
    assert g.decide(Snapshot(4.0, "test", temperatures_c={"gpu": 99.0}), 4.0)[0].policy == "temperature"
    assert g.levels["memory"] == 2  # no RAM figures: held
    assert levels(g.decide(ram(0.10), 5.0)) == [("memory", 2, 1, "fewer_slices")]


def test_power_steps_the_frame_interval_up_while_over_budget_and_down_below_budget_less_margin():
    g = governor(power=PowerPolicy(budget_mw=10000.0, margin_mw=1000.0, frame_interval_s=(0.5, 2.0)))
    watts = lambda mw: Snapshot(0.0, "test", power_total_mw=mw)  # noqa: E731
    assert g.decide(watts(9999.0), 0.0) == []
    [decision] = g.decide(watts(10500.0), 1.0)
    assert levels([decision]) == [("power", 0, 1, "lower_fps_1")]
    assert decision.reason == "power 10500 mW >= budget 10000 mW (enter level 1)"
    assert g.state()["frame_interval_s"] == 0.5
    assert levels(g.decide(watts(10100.0), 2.0)) == [("power", 1, 2, "lower_fps_2")]
    assert g.state()["frame_interval_s"] == 2.0
    assert g.decide(watts(12000.0), 3.0) == []  # no step beyond the last
    assert g.decide(watts(9500.0), 4.0) == []  # under budget, not under budget - margin
    [decision] = g.decide(watts(8999.0), 5.0)
    assert levels([decision]) == [("power", 2, 1, "lower_fps_1")]
    assert decision.reason == "power 8999 mW < 9000 mW (budget - 1000 mW margin: leave level 2)"


def test_power_without_a_budget_is_off():
    g = governor()
    assert g.decide(Snapshot(0.0, "test", power_total_mw=60000.0), 0.0) == [] and g.levels["power"] == 0


def test_temperature_backs_off_the_frame_rate_then_the_slices():
    g = governor(temperature=TemperaturePolicy(enter_c=(80.0, 90.0), margin_c=5.0, frame_interval_s=(1.0, 2.0),
                                               max_slice_nums=(None, 1)))
    heat = lambda c: Snapshot(0.0, "test", temperatures_c={"cpu": 50.0, "gpu": c})  # noqa: E731
    [decision] = g.decide(heat(81.5), 0.0)
    assert levels([decision]) == [("temperature", 0, 1, "back_off_1")]
    assert decision.reason == "hottest sensor 81.5 C >= 80 C (enter level 1)"
    assert g.state()["frame_interval_s"] == 1.0 and g.state()["max_slice_nums"] is None
    g.decide(heat(90.0), 1.0)
    assert g.state()["frame_interval_s"] == 2.0 and g.state()["max_slice_nums"] == 1
    assert g.decide(heat(85.5), 2.0) == []
    assert levels(g.decide(heat(84.9), 3.0)) == [("temperature", 2, 1, "back_off_1")]
    assert g.decide(heat(75.0), 4.0) == []  # 75 is not below 80 - 5
    assert levels(g.decide(heat(74.0), 5.0)) == [("temperature", 1, 0, "normal")]


def test_policies_combine_to_the_strictest_targets_and_decisions_are_counted():
    g = governor(memory=MemoryPolicy(reduced_slices=6), power=PowerPolicy(budget_mw=10000.0,
                                                                          frame_interval_s=(0.5,)))
    snapshot = Snapshot(0.0, "test", ram_total_kb=100, ram_used_kb=86, power_total_mw=11000.0,
                        temperatures_c={"gpu": 91.0})
    assert {d.policy for d in g.decide(snapshot, 0.0)} == {"memory", "power", "temperature"}
    assert g.state() == {"levels": {"memory": 1, "power": 1, "temperature": 2}, "max_slice_nums": 1,
                         "paused": False, "frame_interval_s": 2.0}
    g.decide(Snapshot(1.0, "test", ram_total_kb=100, ram_used_kb=10, power_total_mw=1000.0,
                      temperatures_c={"gpu": 30.0}), 1.0)
    assert g.decisions_total == {("memory", "fewer_slices"): 1, ("power", "lower_fps_1"): 1,
                                 ("temperature", "back_off_2"): 1, ("memory", "normal"): 1,
                                 ("power", "normal"): 1, ("temperature", "back_off_1"): 1}
    assert [d.time_s for d in g.recent] == [0.0] * 3 + [1.0] * 3
