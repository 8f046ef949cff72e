"""lifelearn.phases: the exclusive wall-time split of a job, on a fake clock."""
from __future__ import annotations

import json

import pytest

from lifelearn import phases


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def tick(self, seconds):
        self.now += seconds


def test_nested_phases_count_for_the_innermost_and_add_up_to_the_wall_time():
    clock = FakeClock()
    timer = phases.PhaseTimer(clock)
    clock.tick(1.0)                      # other
    with timer.phase("data"):
        clock.tick(2.0)                  # data
    with timer.phase("training"):
        clock.tick(3.0)                  # training
        with timer.phase("logging"):
            clock.tick(0.5)              # logging, not training
        clock.tick(1.5)                  # training again
        with timer.phase("evaluation"):
            clock.tick(4.0)
            with timer.phase("writing"):
                clock.tick(0.25)
    clock.tick(0.75)                     # other
    split = timer.split()
    assert split == {"data": 2.0, "training": 4.5, "evaluation": 4.0, "logging": 0.5, "writing": 0.25, "other": 1.75}
    assert sum(split.values()) == pytest.approx(13.0)


def test_a_phase_that_raises_is_still_charged_and_unknown_names_are_refused():
    clock = FakeClock()
    timer = phases.PhaseTimer(clock)
    with pytest.raises(RuntimeError), timer.phase("training"):
        clock.tick(2.0)
        raise RuntimeError
    clock.tick(1.0)
    assert timer.split()["training"] == 2.0 and timer.split()["other"] == 1.0
    with pytest.raises(ValueError, match="phase 'train'"):
        with timer.phase("train"):
            pass


def test_timed_and_phase_are_no_ops_without_a_job_and_count_inside_one(tmp_path):
    clock = FakeClock()

    @phases.timed("writing")
    def write(seconds):
        clock.tick(seconds)
        return "done"

    assert write(5.0) == "done" and phases._ACTIVE is None   # no timer: nothing recorded, no error
    with phases.phase("data"):
        clock.tick(1.0)
    path = tmp_path / "logs" / "smoke" / "benchmarks" / "rule_a.phases.json"
    with phases.job_phases(path, "rule_a", startup_s=3.25, clock=clock) as timer:
        clock.tick(0.5)
        with phases.phase("data"):
            clock.tick(2.0)
            write(1.0)
        assert phases._ACTIVE is timer
    assert phases._ACTIVE is None
    record = json.loads(path.read_text())
    assert record["rule"] == "rule_a" and record["status"] == "ok" and record["startup_s"] == 3.25
    assert record["phases"] == {"data": 2.0, "training": 0.0, "evaluation": 0.0, "logging": 0.0,
                                "writing": 1.0, "other": 0.5}
    assert record["job_s"] == 3.5 and set(record["loaded"]) <= set(phases.HEAVY_MODULES)


def test_a_failed_job_writes_its_split_with_status_failed(tmp_path):
    clock = FakeClock()
    path = tmp_path / "b.phases.json"
    with pytest.raises(KeyError), phases.job_phases(path, "b", startup_s=1.0, clock=clock):
        with phases.phase("training"):
            clock.tick(7.0)
            raise KeyError("x")
    record = json.loads(path.read_text())
    assert record["status"] == "failed" and record["phases"]["training"] == 7.0 and phases._ACTIVE is None


def test_the_split_lies_beside_the_benchmark_file_and_startup_is_the_process_age():
    assert str(phases.phases_path("smoke", "continual_ci_er")) == "logs/smoke/benchmarks/continual_ci_er.phases.json"
    assert 0.0 < phases.startup_seconds() < 24 * 3600  # this process started before now
