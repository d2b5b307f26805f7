"""Assay tunes Voicebox-style speech infilling: lower infill error without losing the voice.

The job is :func:`assay.generative.workloads.voicebox.run`: it trains a masked-span
flow-matching model (Le et al., 2023) on speech synthesised by espeak-ng in six voices, infills
70% spans of held-out utterances with classifier-free guidance and a few midpoint steps, and
reports, among others:

* ``infill_mse`` — error of the infilled spans against the held-out truth (the **objective**,
  minimised);
* ``speaker_similarity`` — how strongly a speaker classifier hears the context's voice in the
  infilled span (the **outcome constraint**: at least ``--similarity-fraction`` × that of the
  untuned defaults, 0.8 by default, so the optimizer cannot buy error with a generic voice);
* ``infill_mse_no_context``, ``speaker_accuracy``, ``prompt_speaker_accuracy``,
  ``sample_ms_per_utterance``, ``wall_time_s`` (tracked).

Assay proposes the learning rate, the lower end of the training mask ratio, the guidance weight
and the number of ODE steps with its noisy-constrained EI generator. The experiment carries a
job spec (``{"entrypoint": "assay.generative.workloads.voicebox:run", ...}``); the orchestrator
launches every trial as a subprocess with the local executor
(:func:`assay.service.jobs.local_run.run_locally`), each job streams its loss with
``assay.report(step=...)`` into the database, and its metrics complete the trial. Fixed settings
travel as fixed parameters. The corpus is synthesised once (by the baseline run below, in this
process) into a disk cache the jobs read (``$ASSAY_GENERATIVE_CACHE``).

Run (CPU, a few minutes; CUDA is used when available)::

    python examples/tune_voicebox.py --budget 10 --parallelism 2
    python examples/tune_voicebox.py --budget 2 --tiny   # seconds, smoke test
"""

from __future__ import annotations

import sys
import tempfile
import time
from typing import Any

from assay.generative.workloads.voicebox import run
from assay.service.jobs.local_run import job_experiment

ENTRYPOINT = "assay.generative.workloads.voicebox:run"

#: The tuned parameters (a subset of ``workloads.voicebox.SEARCH_SPACE``).
PARAMETERS: list[dict[str, Any]] = [
    {"name": "lr", "type": "float", "bounds": [1e-3, 1.5e-2], "log": True},
    {"name": "mask_min", "type": "float", "bounds": [0.3, 0.95]},
    {"name": "guidance_weight", "type": "float", "bounds": [0.0, 2.0]},
    {"name": "ode_steps", "type": "int", "bounds": [1, 16], "log": True},
]
TINY_PARAMETERS: list[dict[str, Any]] = [
    {"name": "lr", "type": "float", "bounds": [1e-3, 1.5e-2], "log": True},
    {"name": "mask_min", "type": "float", "bounds": [0.3, 0.95]},
    {"name": "guidance_weight", "type": "float", "bounds": [0.0, 2.0]},
    {"name": "ode_steps", "type": "int", "bounds": [1, 3]},
]

#: Fixed job settings: the full example, and the tiny one used by the tests.
SETTINGS = {
    "full": {"iterations": 800, "batch_size": 16, "width": 64, "layers": 2,
             "report_every": 100},
    "tiny": {"iterations": 6, "batch_size": 4, "width": 16, "layers": 1, "speakers": 2,
             "utterances_per_speaker": 4, "test_per_speaker": 2, "prompt_frames": 4,
             "report_every": 3},
}  # fmt: skip
TRACKED = ["infill_mse_no_context", "speaker_accuracy", "prompt_speaker_accuracy",
           "sample_ms_per_utterance", "wall_time_s"]  # fmt: skip


def fixed_settings(*, tiny: bool = False, seed: int = 0, device: str = "auto") -> dict[str, Any]:
    """The job settings every trial shares (passed to the job as fixed parameters)."""
    return {**SETTINGS["tiny" if tiny else "full"], "seed": seed, "device": device}


def experiment_config(
    budget: int,
    similarity_bound: float,
    *,
    tiny: bool = False,
    seed: int = 0,
    device: str = "auto",
    parallelism: int = 1,
    timeout_s: float = 3600.0,
    cache_dir: str = "",
) -> dict[str, Any]:
    """The experiment (JSON form) that tunes Voicebox as jobs.

    Args:
        budget: Number of trials (jobs).
        similarity_bound: Outcome constraint ``speaker_similarity >= similarity_bound``.
        tiny: Tiny models and corpus (tests, smoke runs).
        seed: Seed of the generator and of every job.
        device: The jobs' device (``auto``: CUDA when the executor gives the job a GPU).
        parallelism: Jobs at once.
        timeout_s: Per-job wall-clock limit.
        cache_dir: Disk cache of the corpus shared by the jobs.

    Example:
        >>> cfg = experiment_config(4, 0.4)
        >>> cfg["job"]["entrypoint"], cfg["objective"], cfg["outcome_constraints"]
        ('assay.generative.workloads.voicebox:run', {'name': 'infill_mse', 'minimize': True}, ['speaker_similarity >= 0.4'])
    """
    return job_experiment(
        name=f"tune-voicebox{'-tiny' if tiny else ''}-{int(time.time())}",
        description="Voicebox infilling: minimise span error, keep the context's voice.",
        entrypoint=ENTRYPOINT,
        tuned=TINY_PARAMETERS if tiny else PARAMETERS,
        fixed=fixed_settings(tiny=tiny, seed=seed, device=device),
        goal={
            "objective": {"name": "infill_mse", "minimize": True},
            "outcome_constraints": [f"speaker_similarity >= {similarity_bound:.6g}"],
            "tracking_metrics": TRACKED,
        },
        budget=budget,
        seed=seed,
        device=device,
        parallelism=parallelism,
        timeout_s=timeout_s,
        cache_dir=cache_dir,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure the untuned defaults, run the tuning jobs with the orchestrator, return a summary."""
    from assay.service.jobs.local_run import parse_tuning_arguments, run_tuning, tuning_arguments

    ap = tuning_arguments(__doc__, budget=10)
    ap.add_argument(
        "--similarity-fraction",
        type=float,
        default=0.8,
        help="constraint: speaker_similarity >= fraction × the defaults' similarity",
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--cache-dir", default="", help="corpus cache (default: a temp directory)")
    args = parse_tuning_arguments(ap, argv)

    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="assay-voicebox-cache-")
    fixed = fixed_settings(tiny=args.tiny, seed=args.seed, device=args.device)
    # The untuned defaults set the similarity bound; this run also synthesises the corpus into
    # the cache the jobs read it from.
    base = run({**fixed, "report_every": 0, "cache_dir": cache_dir})
    bound = args.similarity_fraction * base["speaker_similarity"]
    print(
        f"defaults: infill_mse {base['infill_mse']:.3f} (no context "
        f"{base['infill_mse_no_context']:.3f})  speaker_similarity "
        f"{base['speaker_similarity']:.3f}  -> constraint speaker_similarity >= {bound:.3f}",
        flush=True,
    )
    config = experiment_config(
        args.budget, bound, tiny=args.tiny, seed=args.seed, device=args.device,
        parallelism=args.parallelism, timeout_s=args.timeout, cache_dir=cache_dir,
    )  # fmt: skip

    def line(m: dict[str, Any]) -> str:
        ok = "ok " if m["speaker_similarity"] >= bound else "voice"
        return (f"{ok} infill_mse {m['infill_mse']:.3f}  speaker_similarity "
                f"{m['speaker_similarity']:.3f}  {m['sample_ms_per_utterance']:.1f} ms/utt")  # fmt: skip

    return run_tuning(config, args, actor="tune-voicebox", line=line, baseline=base, bound=bound)


if __name__ == "__main__":
    main(sys.argv[1:])
