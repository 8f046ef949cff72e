"""What every study shares: the plan of a job (`JobSpec`, made at parse time from the
config, turned into one Snakemake rule by workflow/rules/common.smk), the job as it runs
(`Job` and its `Paths`, given to `lifelearn.studies.<study>.run`), the run record every
study writes per seed (`RunRecord`, metrics.json) and where outputs live (`Layout`).

Light imports only: the Snakefile reads the plans while it parses.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lifelearn.io import read_json, write_json

# Source files (under src/lifelearn) every study job runs besides its study's own: the glue
# (studies/__init__.py), the job types, file output and MLflow. config.py is not among them:
# it plans jobs, and what a plan changes reaches a job through its params.
COMMON_CODE = ("studies/__init__.py", "jobs.py", "io.py", "tracking.py")
# what training jobs evaluate with; the continual metrics (evaluate/continual_*) are not in it
MODEL_EVALUATION = ("evaluate/__init__.py", "evaluate/classification.py", "evaluate/robustness.py")
LONG_CHAIN_PRIORITY = 10  # jobs at the head of the longest chains start first (2 cores fill the gaps)


@dataclass(frozen=True)
class Layout:
    """Where one profile's outputs live: results/<profile>/ and checkpoints/<profile>/."""

    profile: str

    @property
    def results(self) -> str:
        return f"results/{self.profile}"

    @property
    def checkpoints(self) -> str:
        return f"checkpoints/{self.profile}"

    def seed_files(self, study: str, name: str, seeds, filename: str, checkpoints: bool = False) -> list[str]:
        root = self.checkpoints if checkpoints else self.results
        return [f"{root}/{study}/{name}/seed{seed}/{filename}" for seed in seeds]

    def checkpoint_files(self, study: str, name: str, seeds) -> list[str]:
        return [f"{self.checkpoints}/{study}/{name}/seed{seed}.pt" for seed in seeds]

    def teacher_checkpoints(self, config: dict, teacher: str, seeds, key: str) -> list[str]:
        """Checkpoints of a pretrained teacher; a later stage pairs its seed k with the
        teacher's seed k, so its seeds (config key `key`) must be among the teacher's."""
        trained = config["teachers"].get(teacher, {}).get("seeds", [])
        missing = sorted(set(seeds) - set(trained))
        if missing:
            raise ValueError(f"{key}: seeds {missing} have no checkpoint of teacher {teacher!r} "
                             f"(teachers.{teacher}.seeds: {trained})")
        return self.checkpoint_files("teachers", teacher, seeds)

    def trained_model_outputs(self, study: str, name: str, seeds) -> dict[str, list[str]]:
        """What a Lightning training job writes per seed (train.runner.run_seed)."""
        return {"checkpoints": self.checkpoint_files(study, name, seeds),
                "metrics": self.seed_files(study, name, seeds, "metrics.json"),
                "history": self.seed_files(study, name, seeds, "history.csv")}


@dataclass(frozen=True)
class JobSpec:
    """The plan of one Snakemake job: rule name, what it reads and writes, and `spec`,
    exactly the config it depends on (its params: changing it reruns the job, nothing else does).

    `datasets` are read as ancient() inputs (DVC keeps no mtimes); `code` names source
    files or packages under src/lifelearn (Snakemake's code trigger sees only the script);
    `report` lists what the report reads of this job (metrics / history / extra) when that
    is not its own metrics.json and history.csv.
    """

    study: str
    step: str
    name: str
    rule: str
    spec: dict
    seeds: list
    outputs: dict
    code: tuple = ()
    datasets: tuple = ()
    inputs: dict = field(default_factory=dict)
    trainer: bool = False
    training: bool = True
    priority: int = 0
    report: dict | None = None

    def report_inputs(self) -> dict:
        """What the report reads of this job; by default its metrics.json and history.csv."""
        if self.report is not None:
            return self.report
        return {k: self.outputs[k] for k in ("metrics", "history") if k in self.outputs}

    def params(self, config: dict, data_version: str) -> dict:
        """The rule's one param (compared by repr): plain values only."""
        out = {"study": self.study, "step": self.step, "name": self.name, "seeds": list(self.seeds),
               "spec": self.spec, "data_version": data_version}
        return out | ({"trainer": config["trainer"]} if self.trainer else {})


@dataclass(frozen=True)
class Paths:
    """A job's inputs and outputs by name (lists of paths, in the plan's order)."""

    inputs: dict
    outputs: dict

    @classmethod
    def from_snakemake(cls, smk) -> "Paths":
        def named(files) -> dict[str, list[Path]]:
            return {k: [Path(p) for p in ([v] if isinstance(v, str) else v)] for k, v in files.items()}
        return cls(named(smk.input), named(smk.output))

    def input(self, name: str) -> list[Path]:
        return self.inputs.get(name, [])

    def output(self, name: str) -> list[Path]:
        return self.outputs[name]


@dataclass(frozen=True)
class Job:
    """One running job: the plan's params plus what the invocation adds (threads, the
    MLflow context, cosmetic settings such as the progress bar)."""

    study: str
    step: str
    name: str
    spec: dict
    seeds: list
    ctx: object  # lifelearn.tracking.RunContext
    threads: int = 1
    trainer: dict = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: dict, ctx, threads: int = 1, progress_bar: bool = False) -> "Job":
        trainer = {**params.get("trainer", {}), "progress_bar": progress_bar}
        return cls(params["study"], params["step"], params["name"], params["spec"], list(params["seeds"]),
                   ctx, threads, trainer)


@dataclass
class RunRecord:
    """What one seed of one job reports (its metrics.json): identity, MLflow run, metrics."""

    study: str
    stage: str
    name: str
    method: str
    seed: int
    dataset: str
    model: str
    run_id: str
    git_commit: str
    metrics: dict
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        ident = {k: getattr(self, k) for k in ("study", "stage", "name", "method", "seed", "dataset", "model",
                                               "run_id", "git_commit")}
        return ident | self.extra | {"metrics": self.metrics}

    def write(self, path: str | os.PathLike) -> Path:
        write_json(path, self.to_dict())
        return Path(path)

    @classmethod
    def read(cls, path: str | os.PathLike) -> "RunRecord":
        data = dict(read_json(path))
        ident = {k: data.pop(k) for k in ("study", "stage", "name", "method", "seed", "dataset", "model",
                                          "run_id", "git_commit")}
        metrics = data.pop("metrics")
        return cls(**ident, metrics=metrics, extra=data)
