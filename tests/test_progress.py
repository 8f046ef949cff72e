"""lifelearn.progress: the line format, the 10% marks, the rate limit (an injected clock),
silence for an empty loop, the bar on a terminal; and the loops that report through it
(dataset distillation and its experts, a continual stream, PGD evaluation)."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from lifelearn import progress
from lifelearn.progress import Progress, format_line


class Clock:
    """A clock that advances `step` seconds at every read."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line]


def run(total: int, clock, interval: float = 10.0, **kwargs) -> list[str]:
    out = io.StringIO()
    with Progress("job", total, stream=out, clock=clock, interval=interval, **kwargs) as p:
        for _ in range(total - kwargs.get("initial", 0)):
            p.update()
    return lines(out.getvalue())


def test_the_line_names_the_loop_its_count_share_time_and_eta():
    assert format_line("distill ipc10 seed0 iterations", 300, 1000, 12.34, 28.66) == \
        "distill ipc10 seed0 iterations: 300/1000 (30%), 12.3 s, eta 28.7 s"
    assert format_line("x", 1000, 1000, 41.04) == "x: 1000/1000 (100%), 41.0 s"


def test_a_slow_loop_writes_a_line_at_every_tenth_with_its_eta():
    # the clock is read at the 10 marks only (and once at the start), 12 s apart
    out = run(1000, Clock(12.0))
    assert out[0] == "job: 100/1000 (10%), 12.0 s, eta 108.0 s"
    assert [line.split(" (")[0] for line in out] == [f"job: {100 * k}/1000" for k in range(1, 11)]
    assert out[-1] == "job: 1000/1000 (100%), 120.0 s"


def test_lines_are_at_most_one_per_interval_and_the_last_always_comes():
    assert run(1000, Clock(5.0)) == [  # marks 5 s apart, interval 10 s: every other mark
        "job: 200/1000 (20%), 10.0 s, eta 40.0 s", "job: 400/1000 (40%), 20.0 s, eta 30.0 s",
        "job: 600/1000 (60%), 30.0 s, eta 20.0 s", "job: 800/1000 (80%), 40.0 s, eta 10.0 s",
        "job: 1000/1000 (100%), 50.0 s"]
    assert run(1000, Clock(0.01)) == ["job: 1000/1000 (100%), 0.1 s"]  # a fast loop: its last line only


def test_short_loops_have_a_mark_per_step():
    assert len(run(3, Clock(20.0))) == 3
    assert run(1, Clock(1.0)) == ["job: 1/1 (100%), 1.0 s"]


def test_an_empty_loop_writes_nothing_not_even_a_bar():
    for stream in (io.StringIO(), Terminal()):
        with Progress("job", 0, stream=stream) as p:
            p.update()
            p.add_total(5)
        assert stream.getvalue() == ""


def test_a_resumed_loop_counts_from_where_it_stopped_and_its_eta_uses_this_run_only():
    out = run(100, Clock(12.0), initial=50)
    assert out[0] == "job: 60/100 (60%), 12.0 s, eta 48.0 s"  # 10 steps in 12 s, 40 to go
    assert out[-1] == "job: 100/100 (100%), 60.0 s"


def test_a_growing_total_moves_the_marks():
    out = io.StringIO()
    p = Progress("job", 10, stream=out, clock=Clock(20.0))
    for _ in range(5):
        p.update()
    p.add_total(10)
    for _ in range(15):
        p.update()
    assert lines(out.getvalue())[-1].startswith("job: 20/20 (100%)")
    assert [line.split(" (")[0] for line in lines(out.getvalue())][:6] == [f"job: {n}/{t}" for n, t in
                                                                          [(1, 10), (2, 10), (3, 10), (4, 10),
                                                                           (5, 10), (6, 20)]]


def test_updates_past_the_total_write_the_last_line_once():
    out = io.StringIO()
    p = Progress("job", 2, stream=out, clock=Clock(1.0))
    for _ in range(5):
        p.update()
    assert lines(out.getvalue()) == ["job: 2/2 (100%), 2.0 s"]


def test_on_a_terminal_it_is_a_bar_unless_turned_off(monkeypatch):
    term = Terminal()
    with Progress("bar job", 50, stream=term) as p:
        for _ in range(50):
            p.update()
    assert "bar job" in term.getvalue() and "50/50" in term.getvalue() and "(100%)" not in term.getvalue()
    monkeypatch.setattr(progress, "_bar_on", True)
    progress.configure(bar=False)
    assert not progress.bar_enabled()
    term = Terminal()
    with Progress("job", 5, stream=term, clock=Clock(1.0)) as p:
        for _ in range(5):
            p.update()
    assert lines(term.getvalue())[-1] == "job: 5/5 (100%), 5.0 s"


# ---- the loops that report through it ---------------------------------------------------
def test_distillation_and_expert_training_write_progress_lines_and_the_same_result(capsys, monkeypatch):
    from lifelearn.distill import dataset_distillation as dd
    from lifelearn.models import build_model

    def distilled():
        torch.manual_seed(0)
        model = build_model({"arch": "mlp", "hidden": [8]}, (1, 4, 4), 2)
        x, y = torch.rand(20, 1, 4, 4), torch.arange(20) % 2
        traj = dd.train_expert(model, x, y, {"epochs": 3, "batch_size": 10, "lr": 0.1}, seed=0)["trajectory"]
        s = dd.DistillSettings(ipc=1, iterations=20, syn_steps=2, expert_epochs=1, max_start_epoch=1,
                               lr_img=1.0, lr_lr=0.01, lr_init=0.1)
        return dd.distill(model, [traj], x[:2], y[:2], s, seed=0)

    quiet = distilled()  # default interval: the last lines only
    err = lines(capsys.readouterr().err)
    assert err[0].startswith("expert seed0 steps: 6/6 (100%), ") and len(err) == 2
    assert err[1].startswith("distill ipc1 seed0 iterations: 20/20 (100%), ")
    monkeypatch.setattr(progress, "INTERVAL", 0.0)  # a line at every 10% mark
    loud = distilled()
    err = [line for line in lines(capsys.readouterr().err) if line.startswith("distill")]
    assert [line.split(" (")[0] for line in err] == [f"distill ipc1 seed0 iterations: {2 * k}/20" for k in range(1, 11)]
    assert torch.equal(quiet["x"], loud["x"]) and quiet["history"] == loud["history"]


def test_a_continual_stream_writes_progress_lines(capsys, monkeypatch):
    from lifelearn.continual.scenarios import build_scenario
    from lifelearn.continual.strategies import build_plugins
    from lifelearn.continual.template import ContinualLearner
    from lifelearn.data import Dataset
    from lifelearn.models import build_model

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 6).astype(np.int64)
    x = rng.random((len(y), 1, 4, 4), dtype=np.float32)
    ds = Dataset("fake", 4, (1, 4, 4), (0.5,), (0.3,), "none", x, y, x, y, x, y)
    sc = build_scenario(ds, "class_incremental", 2, seed=0)  # 2 tasks of 12 samples: 3 batches of 4 each
    cfg = {"epochs": 2, "batch_size": 4, "optimizer": "sgd", "lr": 0.1}
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    torch.manual_seed(0)
    ContinualLearner(build_model({"arch": "mlp", "hidden": [4]}, ds.input_shape, 4), sc, [], cfg, seed=3).fit()
    err = lines(capsys.readouterr().err)
    assert err[0].startswith("continual seed3 iterations: 2/12 (17%), ") and ", eta " in err[0]
    assert err[-1].startswith("continual seed3 iterations: 12/12 (100%), ")
    # joint training grows each task's data (all tasks so far), and the total with it
    torch.manual_seed(0)
    ContinualLearner(build_model({"arch": "mlp", "hidden": [4]}, ds.input_shape, 4), sc,
                     build_plugins({"joint": {}}), cfg, seed=3).fit()
    assert lines(capsys.readouterr().err)[-1].startswith("continual seed3 iterations: 18/18 (100%), ")


def test_pgd_evaluation_writes_a_progress_line_per_call(capsys):
    from lifelearn.evaluate.robustness import robustness_metrics
    from lifelearn.models import build_model

    torch.manual_seed(0)
    model = build_model({"arch": "mlp", "hidden": [4]}, (1, 8), 2)
    x, y = torch.rand(50, 1, 8), torch.arange(50) % 2
    robustness_metrics(model, x, y, {"eps": 0.1, "step_size": 0.05, "steps": 3}, batch_size=16)
    assert lines(capsys.readouterr().err)[-1].startswith("test PGD-3 batches: 4/4 (100%), ")


@pytest.mark.parametrize("total", [1, 7, 10, 999, 1000, 1001])
def test_the_marks_end_at_the_total(total):
    out = run(total, Clock(100.0))
    assert out[-1].startswith(f"job: {total}/{total} (100%)") and len(out) == min(total, 10)
