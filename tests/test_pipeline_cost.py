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


def test_the_rule_writes_the_jobs_of_the_workflows_rules_as_csv_and_a_page(tmp_path):
    from lifelearn.pipeline_cost import write_cost

    bench(tmp_path / "b" / "pretrain_a.tsv", (4.0, 300.0, 3.5))
    bench(tmp_path / "b" / "prepare_data" / "digits.tsv", (1.0, 50.0, 0.5))
    bench(tmp_path / "b" / "prepare_data" / "mnist1d.tsv", (2.0, 60.0, 1.5))
    bench(tmp_path / "b" / "renamed_long_ago.tsv", (50.0, 10.0, 50.0))  # no rule of the workflow now
    studies = {"pretrain_a": "teachers", "prepare_data": "pipeline", "report": "pipeline"}
    table = write_cost(tmp_path / "b", studies, tmp_path / "cost.csv", tmp_path / "cost.html", "smoke")
    assert list(table.index) == ["pretrain_a", "prepare_data"] and table.loc["prepare_data", "jobs"] == 2
    csv = (tmp_path / "cost.csv").read_text().splitlines()
    assert csv[0] == "rule,study,jobs,wall_s,max_wall_s,cpu_s,max_rss_mb"
    assert csv[1:] == ["pretrain_a,teachers,1,4.0,4.0,3.5,300.0", "prepare_data,pipeline,2,3.0,2.0,2.0,60.0"]
    page = (tmp_path / "cost.html").read_text()
    assert "profile <code>smoke</code>" in page and "3 jobs, 7 job-seconds of wall time, 6 CPU seconds" in page
    assert page.index("<h3>Per study</h3>") < page.index("<h3>Per rule</h3>") and "renamed_long_ago" not in page


def test_no_benchmark_files_yet_give_an_empty_table_that_says_so(tmp_path):
    from lifelearn.pipeline_cost import write_cost

    table = write_cost(tmp_path / "none", {"report": "pipeline"}, tmp_path / "c.csv", tmp_path / "c.html", "default")
    assert table.empty and (tmp_path / "c.csv").read_text().startswith("rule,study,jobs")
    assert "no benchmark files yet" in (tmp_path / "c.html").read_text()


def test_the_printed_table_is_markdown_without_extra_packages(tmp_path):
    cost = cost_module()
    bench(tmp_path / "pretrain_a.tsv", (4.0, 300.0, 3.5))
    text = cost.markdown(cost.cost_table(cost.read_benchmarks(tmp_path), {"pretrain_a": "teachers"}))
    assert text.splitlines() == ["| study | jobs | wall_s | max_wall_s | cpu_s | max_rss_mb |", "|---|---|---|---|---|---|",
                                 "| teachers | 1 | 4.0 | 4.0 | 3.5 | 300.0 |"]
