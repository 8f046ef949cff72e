"""benchmarks/pipeline_cost.py: Snakemake's benchmark files into a cost table per rule and study."""
from __future__ import annotations

import importlib.util
import json
import math

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
    teachers = table.loc["teachers"].to_dict()
    assert {k: teachers.pop(k) for k in ("jobs", "wall_s", "max_wall_s", "cpu_s", "max_rss_mb")} == {
        "jobs": 2, "wall_s": 10.0, "max_wall_s": 6.0, "cpu_s": 8.5, "max_rss_mb": 300.0}
    assert all(math.isnan(v) for v in teachers.values()) and len(teachers) == 7  # no phase files: no split
    assert table.loc["pipeline", "jobs"] == 1 and list(table.index) == ["mtard", "teachers", "pipeline"]
    assert cost.cost_table(jobs, {}, by="rule").loc["pretrain_a", "wall_s"] == pytest.approx(4.0)


def test_every_planned_rule_has_its_study():
    from lifelearn.config import load_config

    config = load_config(REPO / "config", "default")
    studies = cost_module().rule_studies(config)
    assert studies["pretrain_mnist1d_mlp"] == "teachers" and studies["continual_eval_ci_er"] == "continual"
    assert studies["dd_evaluate_random"] == "dataset_distillation" and studies["tgeo_kd_kd"] == "tgeo_kd"
    stages = cost_module().rule_studies(config, stage=True)
    assert stages["continual_eval_ci_er"] == "continual/evaluate" and stages["pretrain_mnist1d_mlp"] == "teachers/pretrain"
    assert stages.keys() == studies.keys()


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
    assert csv[0] == ("rule,study,jobs,wall_s,max_wall_s,cpu_s,max_rss_mb,"
                      "startup_s,data_s,training_s,evaluation_s,logging_s,writing_s,other_s")
    assert csv[1:] == ["pretrain_a,teachers,1,4.0,4.0,3.5,300.0,,,,,,,", "prepare_data,pipeline,2,3.0,2.0,2.0,60.0,,,,,,,"]
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
    assert text.splitlines() == [
        "| study | jobs | wall_s | max_wall_s | cpu_s | max_rss_mb | startup_s | data_s | training_s | evaluation_s"
        " | logging_s | writing_s | other_s |", "|" + "---|" * 13, "| teachers | 1 | 4.0 | 4.0 | 3.5 | 300.0 |" + "  |" * 7]


def split(path, startup, **seconds):
    """A hand-made <job>.phases.json as lifelearn.phases.job_phases writes it."""
    phases = dict.fromkeys(("data", "training", "evaluation", "logging", "writing", "other"), 0.0) | seconds
    path.write_text(json.dumps({"rule": path.name.split(".")[0], "status": "ok", "startup_s": startup,
                                "phases": phases, "job_s": sum(phases.values()), "loaded": ["torch"]}))


def test_the_phase_split_sums_per_rule_study_and_stage_and_a_job_without_one_stays_empty(tmp_path):
    from lifelearn.pipeline_cost import cost_table, read_benchmarks, summary, write_cost

    bench(tmp_path / "continual_a.tsv", (10.0, 300.0, 9.0))
    bench(tmp_path / "continual_eval_a.tsv", (3.0, 200.0, 2.5))
    bench(tmp_path / "pretrain_x.tsv", (20.0, 400.0, 19.0))
    bench(tmp_path / "prepare_data" / "digits.tsv", (1.0, 50.0, 0.5))  # no phase file: no split
    split(tmp_path / "continual_a.phases.json", 4.0, data=0.5, training=3.0, evaluation=1.0, logging=1.0, writing=0.25)
    split(tmp_path / "continual_eval_a.phases.json", 1.5, evaluation=0.25, logging=0.75, writing=0.125, other=0.125)
    split(tmp_path / "pretrain_x.phases.json", 6.0, data=1.0, training=10.0, evaluation=2.0, logging=0.5)
    jobs = read_benchmarks(tmp_path)
    assert jobs.set_index("job").loc["continual_a", "training_s"] == 3.0
    assert math.isnan(jobs.set_index("job").loc["prepare_data/digits", "startup_s"])
    studies = {"continual_a": "continual", "continual_eval_a": "continual", "pretrain_x": "teachers"}
    by_study = cost_table(jobs, studies)
    assert by_study.loc["continual", ["jobs", "wall_s", "startup_s", "data_s", "training_s", "evaluation_s",
                                      "logging_s", "writing_s", "other_s"]].tolist() == [2, 13.0, 5.5, 0.5, 3.0, 1.2,
                                                                                        1.8, 0.4, 0.1]
    assert by_study.loc["teachers", "startup_s"] == 6.0 and math.isnan(by_study.loc["pipeline", "startup_s"])
    stages = {"continual_a": "continual/train", "continual_eval_a": "continual/evaluate", "pretrain_x": "teachers/train"}
    by_stage = cost_table(jobs, stages, by="stage")
    assert by_stage.loc["continual/evaluate", "startup_s"] == 1.5 and by_stage.loc["continual/train", "wall_s"] == 10.0
    assert list(by_stage.index) == ["teachers/train", "continual/train", "continual/evaluate", "pipeline"]
    assert summary(jobs).endswith("the 3 jobs with a phase split spent start-up 12 s, data 2 s, training 13 s, "
                                  "evaluation 3 s, logging 2 s, writing 0 s, other 0 s")
    write_cost(tmp_path, studies | {"prepare_data": "pipeline"}, tmp_path / "c.csv", tmp_path / "c.html", "smoke",
               stages | {"prepare_data": "pipeline"})
    page = (tmp_path / "c.html").read_text()
    assert page.index("<h3>Per study</h3>") < page.index("<h3>Per stage</h3>") < page.index("<h3>Per rule</h3>")
    assert "<td>continual/evaluate</td>" in page and "startup_s" in page
    with pytest.raises(ValueError, match="by: 'seed'"):
        cost_table(jobs, studies, by="seed")


def test_a_warm_jobs_own_cpu_time_and_memory_are_added_to_its_glues(tmp_path):
    """lifelearn.warm: the job ran in a child of the server, outside the process tree
    Snakemake's benchmark measures; its phases file carries its CPU time and max RSS."""
    from lifelearn.pipeline_cost import read_benchmarks

    bench(tmp_path / "continual_a.tsv", (10.0, 40.0, 0.5))
    bench(tmp_path / "continual_b.tsv", (10.0, 300.0, 9.0))
    split(tmp_path / "continual_a.phases.json", 0.01, training=8.0)
    split(tmp_path / "continual_b.phases.json", 4.0, training=4.0)
    for name, warm in (("continual_a", True), ("continual_b", False)):
        path = tmp_path / f"{name}.phases.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | {"cpu_s": 7.5, "max_rss_mb": 250.0, "warm": warm}))
    jobs = read_benchmarks(tmp_path).set_index("job")
    assert jobs.loc["continual_a", ["cpu_s", "max_rss_mb"]].tolist() == [8.0, 250.0]  # 0.5 + 7.5; max(40, 250)
    assert jobs.loc["continual_b", ["cpu_s", "max_rss_mb"]].tolist() == [9.0, 300.0]  # cold: the benchmark's own
