"""Assay tunes a toy CM3Leon: text→image accuracy under a realism constraint, as jobs.

The job is :func:`assay.generative.workloads.cm3leon.run`: it pre-trains a retrieval-augmented
decoder-only model over caption and image tokens of scikit-learn's 8×8 digits, fine-tunes it
on text→image, image→text and infilling, and reports, among others:

* ``classifier_accuracy`` — how often a digit classifier recognises the prompted digit in the
  model's text→image samples (the **objective**);
* ``frechet_distance`` — Fréchet distance of the samples to real held-out digits in the
  classifier's feature space (the **outcome constraint**: at most ``--fd-factor`` × the
  untuned model's plain-sampling distance, 1.5 by default — strong guidance buys accuracy with
  samples that all look alike, which this rules out);
* ``caption_accuracy``, ``heldout_nll``, ``accuracy_plain``, ``wall_time_s`` (tracked).

Assay proposes the decoding (classifier-free guidance or TopK contrastive decoding), its
weight / plausibility factor, the learning rate and the number of retrieved documents with its
noisy-constrained EI generator. As in ``examples/tune_adjoint_matching.py``, the experiment
carries a job spec (``{"entrypoint": "assay.generative.workloads.cm3leon:run", ...}``), the
orchestrator launches every trial as a subprocess with the local executor
(:func:`assay.service.jobs.local_run.run_locally`), each job streams its training losses with
``assay.report(step=...)`` into the database and its metrics complete the trial. The fixed
settings travel as fixed parameters. The untuned baseline (run here, in this process) also
trains the retriever and the classifier into the disk cache the jobs load them from
(``$ASSAY_GENERATIVE_CACHE``).

Run (CPU, a few minutes per trial; CUDA is used when available)::

    python examples/tune_cm3leon.py --budget 10 --parallelism 2
    python examples/tune_cm3leon.py --budget 2 --tiny   # seconds, smoke test
"""

from __future__ import annotations

import sys
import tempfile
import time
from typing import Any

from assay.generative.workloads.cm3leon import run
from assay.service.jobs.local_run import job_experiment

ENTRYPOINT = "assay.generative.workloads.cm3leon:run"

#: The tuned parameters (a subset of ``workloads.cm3leon.SEARCH_SPACE``).
PARAMETERS: list[dict[str, Any]] = [
    {"name": "decoding", "type": "choice", "values": ["cfg", "contrastive"]},
    {"name": "cfg_weight", "type": "float", "bounds": [1.0, 6.0]},
    {"name": "contrastive_alpha", "type": "float", "bounds": [0.02, 0.5], "log": True},
    {"name": "lr", "type": "float", "bounds": [1e-3, 1e-2], "log": True},
    {"name": "retrieved_k", "type": "int", "bounds": [0, 2]},
]
TINY_PARAMETERS = PARAMETERS[:4]

#: Fixed job settings: the full example, and the tiny one used by the tests.
SETTINGS = {
    "full": {"pretrain_steps": 400, "sft_steps": 200, "width": 48, "batch_size": 32,
             "eval_samples": 200, "retriever_steps": 300, "classifier_iterations": 800,
             "report_every": 50},
    "tiny": {"pretrain_steps": 6, "sft_steps": 4, "width": 16, "heads": 2, "batch_size": 8,
             "codebook_size": 16, "eval_samples": 16, "retriever_steps": 10,
             "classifier_iterations": 20, "retrieved_k": 1, "report_every": 2},
}  # fmt: skip
TRACKED = ["caption_accuracy", "heldout_nll", "accuracy_plain", "wall_time_s"]


def fixed_settings(*, tiny: bool = False, seed: int = 0, device: str = "auto") -> dict[str, Any]:
    """The job settings every trial shares (passed to the job as fixed parameters)."""
    return {**SETTINGS["tiny" if tiny else "full"], "seed": seed, "device": device}


def experiment_config(
    budget: int,
    fd_bound: float,
    *,
    tiny: bool = False,
    seed: int = 0,
    device: str = "auto",
    parallelism: int = 1,
    timeout_s: float = 3600.0,
    cache_dir: str = "",
) -> dict[str, Any]:
    """The experiment (JSON form) that tunes CM3Leon's decoding and training as jobs.

    Args:
        budget: Number of trials (jobs).
        fd_bound: Outcome constraint ``frechet_distance <= fd_bound``.
        tiny: Tiny models and fewer tuned parameters (tests, smoke runs).
        seed: Seed of the generator and of every job.
        device: The jobs' device (``auto``: CUDA when the executor gives the job a GPU).
        parallelism: Jobs at once.
        timeout_s: Per-job wall-clock limit.
        cache_dir: Disk cache of the retriever and classifier shared by the jobs.

    Example:
        >>> cfg = experiment_config(4, 80.0)
        >>> cfg["job"]["entrypoint"], cfg["objective"], cfg["outcome_constraints"]
        ('assay.generative.workloads.cm3leon:run', 'classifier_accuracy', ['frechet_distance <= 80'])
    """
    return job_experiment(
        name=f"tune-cm3leon-digits{'-tiny' if tiny else ''}-{int(time.time())}",
        description="Toy CM3Leon on digits: maximise text->image accuracy, keep realism.",
        entrypoint=ENTRYPOINT,
        tuned=TINY_PARAMETERS if tiny else PARAMETERS,
        fixed=fixed_settings(tiny=tiny, seed=seed, device=device),
        goal={
            "objective": "classifier_accuracy",
            "outcome_constraints": [f"frechet_distance <= {fd_bound:.6g}"],
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
    """Measure the untuned model, run the tuning jobs with the orchestrator, return a summary."""
    from assay.service.jobs.local_run import parse_tuning_arguments, run_tuning, tuning_arguments

    ap = tuning_arguments(__doc__, budget=10)
    ap.add_argument(
        "--fd-factor",
        type=float,
        default=1.5,
        help="constraint: frechet_distance <= factor × the untuned model's plain-sampling FD",
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--cache-dir", default="", help="disk cache for the retriever/classifier (default: temp)"
    )
    args = parse_tuning_arguments(ap, argv)
    if args.fd_factor <= 0:
        ap.error("--fd-factor must be > 0")

    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="assay-cm3leon-cache-")
    fixed = fixed_settings(tiny=args.tiny, seed=args.seed, device=args.device)
    # The untuned model sets the realism bound; this run also trains the retriever and the
    # classifier into the cache the jobs load them from.
    base = run({**fixed, "report_every": 0, "cache_dir": cache_dir})
    bound = args.fd_factor * base["frechet_plain"]
    print(
        f"untuned model: accuracy plain {base['accuracy_plain']:.3f} / cfg "
        f"{base['accuracy_cfg']:.3f} / contrastive {base['accuracy_contrastive']:.3f}  "
        f"FD plain {base['frechet_plain']:.1f}  caption {base['caption_accuracy']:.3f}  "
        f"-> constraint frechet_distance <= {bound:.1f}",
        flush=True,
    )
    config = experiment_config(
        args.budget, bound, tiny=args.tiny, seed=args.seed, device=args.device,
        parallelism=args.parallelism, timeout_s=args.timeout, cache_dir=cache_dir,
    )  # fmt: skip

    def line(m: dict[str, Any]) -> str:
        ok = "ok " if m["frechet_distance"] <= bound else "fd "
        return (f"{ok} accuracy {m['classifier_accuracy']:.3f}  FD {m['frechet_distance']:7.1f}"
                f"  caption {m['caption_accuracy']:.3f}")  # fmt: skip

    return run_tuning(config, args, actor="tune-cm3leon", line=line, baseline=base, bound=bound)


if __name__ == "__main__":
    main(sys.argv[1:])
