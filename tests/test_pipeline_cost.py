"""benchmarks/pipeline_cost.py: Snakemake's benchmark files into a cost table per rule and study."""
from __future__ import annotations

import importlib.util

import pytest

from conftest import REPO

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def cost_module():
    spec = importlib.util.spec_from_file_location("pipeline_cost", REPO / "benchmarks" / "pipeline_cost.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench(path, *rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(f"{s}\t0:00:01\t{rss}\t0\t0\t0\t0\t0\t50\t{cpu}\n" for s, rss, cpu in rows))


def test_the_last_attempt_of_each_job_counts_and_rules_group_by_study(tmp_path):
    cost = cost_module()
    bench(tmp_path / "pretrain_a.tsv", (99.0, 10.0, 99.0), (4.0, 300.0, 3.5))  # a killed attempt, then the job
    bench(tmp_path / "pretrain_b.tsv", (6.0, 200.0, 5.0))
    bench(tmp_path / "mtard_x.tsv", (10.0, 500.0, 9.0))
    bench(tmp_path / "prepare_data" / "digits.tsv", (1.0, 50.0, 0.5))
    jobs = cost.read_benchmarks(tmp_path)
    assert sorted(jobs["rule"]) == ["mtard_x", "prepare_data", "pretrain_a", "pretrain_b"]
    table = cost.cost_table(jobs, {"pretrain_a": "teachers", "pretrain_b": "teachers", "mtard_x": "mtard"})
    assert table.loc["teachers"].to_dict() == {"jobs": 2, "wall_s": 10.0, "max_wall_s": 6.0, "cpu_s": 8.5,
                                               "max_rss_mb": 300.0}
    assert table.loc["pipeline", "jobs"] == 1 and list(table.index) == ["mtard", "teachers", "pipeline"]
    assert cost.cost_table(jobs, {}, by="rule").loc["pretrain_a", "wall_s"] == pytest.approx(4.0)


def test_every_planned_rule_has_its_study():
    from lifelearn.config import load_config

    config = load_config(REPO / "config", "default")
    studies = cost_module().rule_studies(config)
    assert studies["pretrain_mnist1d_mlp"] == "teachers" and studies["continual_eval_ci_er"] == "continual"
    assert studies["dd_evaluate_random"] == "dataset_distillation" and studies["tgeo_kd_kd"] == "tgeo_kd"
