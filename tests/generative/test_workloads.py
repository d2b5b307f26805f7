"""The workloads package: one shared config base, canonical entry points, and the old entry
points (``assay.generative.<algorithm>:run``, ``assay.generative.tabular.job:run``) still
working without the algorithms importing their workloads."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys

import pytest
import torch

from assay.generative import legacy, workloads
from assay.generative.workloads.common import WorkloadConfig, WorkloadRun, resolve_config
from assay.platform.errors import ValidationError
from assay.platform.jobspec import JobSpec
from assay.platform.space import SearchSpace
from assay.service.jobs.checks import check_job_spec
from assay.service.jobs.runner import load_entrypoint
from assay.service.reporting import CollectingReporter, use_reporter

#: (old entry point, canonical entry point, the workload's config class or None).
ALIASES = [
    ("assay.generative.flow_matching:run", "flow_matching", "FlowMatchingConfig"),
    ("assay.generative.adjoint_matching:run", "adjoint_matching", "AdjointMatchingConfig"),
    ("assay.generative.dflow:run", "dflow", "DFlowConfig"),
    ("assay.generative.gsbm:run", "gsbm", "GSBMConfig"),
    ("assay.generative.tabular.job:run", "dp_tabular", None),
]
#: Workloads born in ``workloads`` (no old entry point): (name, the workload's config class).
NEW = [("voicebox", "VoiceboxConfig"), ("cm3leon", "CM3LeonConfig")]
SHARED = {"seed", "device", "cache_dir", "report_every"}


def test_every_workload_is_listed_with_a_valid_search_space() -> None:
    assert set(workloads.ENTRYPOINTS) == {new for _, new, _ in ALIASES} | {n for n, _ in NEW}
    for entry in workloads.ENTRYPOINTS.values():
        module = importlib.import_module(entry.partition(":")[0])
        assert module.run is load_entrypoint(entry)
        space = module.SEARCH_SPACE
        SearchSpace.from_dict(space if isinstance(space, dict) else {"parameters": space})
        assert entry in module.__doc__  # its docstring names its canonical entry point


@pytest.mark.parametrize(("old", "new", "config"), ALIASES)
def test_job_specs_accept_old_and_canonical_entry_points(old, new, config) -> None:
    for entry in (old, workloads.ENTRYPOINTS[new]):
        check_job_spec(JobSpec.from_dict({"entrypoint": entry}))
        assert callable(load_entrypoint(entry))
    with pytest.raises(ValidationError) as e:
        check_job_spec(JobSpec.from_dict({"entrypoint": old.replace(":run", ":train")}))
    assert e.value.field == "job.entrypoint"


@pytest.mark.parametrize(("old", "new", "config"), ALIASES)
def test_old_entry_points_run_the_workload(old, new, config) -> None:
    """The alias reaches the workload's own parameter check (no training is started)."""
    with pytest.raises(ValidationError) as e:
        load_entrypoint(old)({"no_such_parameter": 1})
    assert e.value.field.endswith("no_such_parameter")
    assert "no_such_parameter" in str(e.value)


@pytest.mark.parametrize(("old", "new", "config"), ALIASES)
def test_moved_names_answer_from_their_old_module(old, new, config) -> None:
    old_module = importlib.import_module(old.partition(":")[0])
    workload = legacy.workload(new)
    for name in ("SEARCH_SPACE", *([config] if config else ["DEFAULTS", "OBJECTIVE"])):
        assert getattr(old_module, name) is getattr(workload, name)
    with pytest.raises(AttributeError, match="no_such_name"):
        old_module.no_such_name  # noqa: B018


def test_pretrained_models_answer_from_their_old_modules() -> None:
    from assay.generative import flow_matching, rewards
    from assay.generative.workloads import pretrained

    assert flow_matching.toy_base_model is pretrained.toy_base_model
    assert flow_matching.digits_base_model is pretrained.digits_base_model
    assert rewards.digits_classifier is pretrained.digits_classifier


@pytest.mark.slow
def test_algorithms_do_not_load_their_workloads() -> None:
    """Importing every algorithm (with its ``run`` alias) imports no workload module."""
    code = (
        "import sys\n"
        "import assay.generative.flow_matching, assay.generative.adjoint_matching\n"
        "import assay.generative.dflow, assay.generative.gsbm, assay.generative.rewards\n"
        "import assay.generative.tabular.job, assay.generative.voicebox.infill\n"
        "import assay.generative.cm3leon\n"
        "print(sorted(m for m in sys.modules if m.startswith('assay.generative.workloads')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("name", "config_name"), [(n, c) for _, n, c in ALIASES if c] + NEW)
def test_configs_share_one_base(name, config_name) -> None:
    module = legacy.workload(name)
    config = getattr(module, config_name)
    assert issubclass(config, WorkloadConfig) and config.workload == name
    assert {f.name for f in dataclasses.fields(config)} >= SHARED
    with pytest.raises(ValidationError) as e:
        module.run({"report_every": -1})
    assert e.value.field == "report_every" and str(e.value).startswith(f"{name}: ")


def test_workload_run_seeds_reports_and_refuses_non_finite_metrics() -> None:
    @dataclasses.dataclass
    class Cfg(WorkloadConfig):
        workload = "demo"
        steps: int = 3

    with pytest.raises(ValidationError, match="demo: parameter 'steps'") as e:
        resolve_config(Cfg, {"steps": "many"})
    assert e.value.field == "steps"
    rep = CollectingReporter()
    with use_reporter(rep):
        job = WorkloadRun.start(Cfg, {"seed": 7, "device": "cpu"})
        first = float(torch.rand(1, generator=job.generator))
        metrics = job.finish({"loss": 0.25}, step=job.config.steps)
    again = WorkloadRun.start(Cfg, {"seed": 7})
    assert float(torch.rand(1, generator=again.generator)) == first
    assert job.cache_dir is None and str(job.device) == "cpu"
    assert metrics["loss"] == 0.25 and metrics["wall_time_s"] >= 0
    assert [(r.step, r.metrics["loss"]) for r in rep.reports] == [(3, 0.25)]
    with pytest.raises(FloatingPointError, match="loss"):
        job.finish({"loss": float("nan")}, step=4)
