"""`snakemake --report` without running it: every figure the report job writes is flagged
for the report with its README caption and its study's category, and the cost table and
the front page have their caption files (the HTML itself: test_pipeline, slow)."""
from __future__ import annotations

import re
from types import SimpleNamespace

from lifelearn.config import study_names

from conftest import REPO

RULES = REPO / "workflow" / "rules"
REPORT_SMK = (RULES / "report.smk").read_text()


def figure_study():
    """report.smk's own figure_study (the category of a figure), taken from the rule file."""
    source = re.search(r"^def figure_study\(.*?(?=^\S)", REPORT_SMK, re.M | re.S).group(0)
    namespace: dict = {}
    exec(source, namespace)
    return namespace["figure_study"]


def test_the_figures_directory_is_flagged_with_the_generated_captions_and_a_category_per_study():
    figures = re.search(r"figures=report\((.*?)\n        \),", REPORT_SMK, re.S).group(1)
    assert 'directory(f"{REPORT_DIR}/figures")' in figures and 'patterns=["{figure}.png"]' in figures
    assert "os.path.abspath(FIGURE_CAPTIONS)" in figures and "category=figure_study" in figures
    assert 'captions=FIGURE_CAPTIONS' in REPORT_SMK  # written by the same job (writer.captions_rst)
    study = figure_study()
    assert study(SimpleNamespace(figure="tgeo_kd-alpha-per-epoch")) == "tgeo_kd"
    assert study(SimpleNamespace(figure="continual-class_il-stability-gap")) == "continual"


def test_every_figure_of_the_committed_report_has_its_caption_and_its_study():
    report = REPO / "reports"
    figures = sorted((report / "figures").glob("*.png"))
    captions = (report / "figure-captions.rst").read_text()
    readme = (report / "README.md").read_text()
    studies, study = set(study_names(REPO / "config")), figure_study()
    assert figures
    for figure in figures:
        assert f'snakemake.wildcards.figure == "{figure.stem}"' in captions, figure.name
        assert f"](figures/{figure.name})" in readme
        assert study(SimpleNamespace(figure=figure.stem)) in studies, figure.name


def test_the_cost_table_and_the_front_page_are_in_the_report_with_their_captions():
    cost = REPORT_SMK[REPORT_SMK.index("rule pipeline_cost:"):]
    for output in ('f"{REPORT_DIR}/pipeline_cost.csv"', 'f"{REPORT_DIR}/pipeline_cost.html"'):
        assert re.search(r"report\(\s*" + re.escape(output) + r",\s*caption=\"[^\"]+\",\s*category=\"Pipeline cost\"",
                         cost), output
    for caption in re.findall(r'caption="([^"]+)"', REPORT_SMK):  # relative to the rule file
        assert (RULES / caption).resolve().is_file(), caption
    front = re.search(r'^report: "([^"]+)"', (REPO / "Snakefile").read_text(), re.M).group(1)
    assert (REPO / front).is_file()
    assert "rules.pipeline_cost.output" in (REPO / "Snakefile").read_text()  # in `rule all`, so in the report


def test_every_rule_has_a_log_and_a_benchmark_file():
    """--show-failed-logs prints a failed job's log; the cost table reads the benchmarks."""
    for path in [REPO / "Snakefile", *RULES.glob("*.smk")]:
        for block in re.split(r"^\s*rule\b", path.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip() or "(common.smk's study_rule)"
            if name not in ("all", "prepared_data"):  # target rules: inputs only, no job runs
                assert "log:" in block and "benchmark:" in block, f"{path.name}: rule {name}"


def test_caption_files_are_restructured_text_that_docutils_reads():
    from docutils.core import publish_parts

    for rst in (REPO / "workflow" / "report").glob("*.rst"):
        text = re.sub(r"\{\{.*?\}\}", "x", rst.read_text())  # the Jinja fields Snakemake fills in
        assert publish_parts(text, writer="html", settings_overrides={"halt_level": 2})["body"]

