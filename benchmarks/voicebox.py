"""Voicebox at a larger scale: infill quality, and few-step flow vs. autoregressive sampling speed.

Voicebox's speed argument (Le et al., 2023): a non-autoregressive flow needs a fixed, small
number of network evaluations (NFE) per utterance, an autoregressive model one per generated
frame. This benchmark measures it as ratios in one run, on one device, under one time budget:

1. the espeak-ng corpus (:mod:`assay.generative.voicebox.data`) and the speaker classifier;
2. training, each capped by its share of ``--budget-seconds``: the Voicebox flow (masked-span
   loss), an autoregressive baseline of the same backbone and size (causal
   :class:`~assay.generative.voicebox.model.ARInfiller`, teacher-forced MSE, key/value-cached
   decoding), and the full-utterance-loss ablation;
3. infilling the held-out spans (70% of each utterance): the flow with 1…16 midpoint steps and
   classifier-free guidance, the AR model from the left context; error (MSE), speaker
   similarity, time for the whole held-out set in one batch (throughput) and per utterance
   at batch size 1 (latency, the editing use case; median over utterances, flow and AR
   interleaved so both see the same machine load);
4. **at comparable error**: the fewest flow steps whose MSE is within 5% of the AR model's (or
   below it), and the AR/flow ratios of latency and batch time at that step count;
5. latency against length: 1, 2, 4, … held-out utterances back to back (timing only) — the AR
   model's sequential steps grow with the span, the flow's network evaluations do not.

Device utilisation (CUDA): peak memory, and the GPU utilisation sampled during training when
``pynvml`` is available. Sizes: ``tiny`` (CPU smoke test, seconds), ``cpu`` (the tests' model,
2000 steps — minutes on one core), ``full`` (a GPU: width 256, 6 layers, 960 utterances).

Usage::

    python benchmarks/voicebox.py --device cpu --size cpu --budget-seconds 600
    python benchmarks/voicebox.py --device cuda --size full --budget-seconds 300
    python benchmarks/voicebox.py --device cpu --size tiny            # smoke test

``benchmarks/generative_gpu.py`` runs the same thing as its Voicebox section.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _import_assay() -> None:
    """Make ``import assay`` work from a plain checkout (the repo root is the package)."""
    try:
        import assay  # noqa: F401

        return
    except ImportError:
        pass
    root = Path(__file__).resolve().parents[1]
    link_dir = Path(tempfile.mkdtemp(prefix="assay-path-"))
    (link_dir / "assay").symlink_to(root, target_is_directory=True)
    sys.path.insert(0, str(link_dir))


_import_assay()

import torch  # noqa: E402

from assay.generative.voicebox.data import (  # noqa: E402
    DEFAULT_VOICES,
    SpeechConfig,
    Utterance,
    load_speech,
)
from assay.generative.voicebox.infill import (  # noqa: E402
    collate,
    eval_spans,
    evaluate_ar,
    evaluate_infill,
    infill,
    train_ar,
    train_speaker_classifier,
    train_voicebox,
)
from assay.generative.voicebox.model import ARInfiller, VoiceboxVelocity  # noqa: E402

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"utts": 6, "test": 2, "width": 32, "layers": 2, "heads": 4, "iterations": 20,
             "batch": 8, "lr": 6e-3, "steps": [1, 2], "latency_utts": 3, "ablation": True,
             "lengths": [1, 2], "length_reps": 2},
    "cpu": {"utts": 48, "test": 10, "width": 64, "layers": 2, "heads": 4, "iterations": 2000,
            "batch": 16, "lr": 6e-3, "steps": [1, 2, 4, 8, 16], "latency_utts": 24,
            "ablation": True, "lengths": [1, 2, 4, 8], "length_reps": 8},
    "full": {"utts": 160, "test": 16, "width": 256, "layers": 6, "heads": 8, "iterations": 6000,
             "batch": 64, "lr": 2e-3, "steps": [1, 2, 4, 8, 16, 32], "latency_utts": 48,
             "ablation": True, "lengths": [1, 2, 4, 8, 16], "length_reps": 8},
}  # fmt: skip
#: Fractions of the budget for the flow, the AR baseline, the ablation (training time caps).
SHARES = {"flow": 0.35, "ar": 0.25, "ablation": 0.2}
GUIDANCE = 0.7
COMPARABLE = 1.05  # flow MSE within 5% of the AR model's counts as comparable


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _gpu_utilisation(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    try:
        return float(torch.cuda.utilization(device))
    except Exception:  # pynvml missing or no NVML: not reported
        return None


def _timed_train(fn: Any, device: torch.device, /, **kw: Any) -> tuple[list[float], float, Any]:
    _sync(device)
    t = time.perf_counter()
    losses = fn(**kw)
    _sync(device)
    return losses, time.perf_counter() - t, _gpu_utilisation(device)


def _latency(fn: Any, device: torch.device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def run_benchmark(
    size: str = "cpu",
    *,
    device: str | torch.device = "cpu",
    budget_seconds: float = 600.0,
    seed: int = 0,
    cache_dir: str | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Run the benchmark; returns ``{"flow": …, "ar": …, "ablation": …, "comparison": …}``.

    Args:
        size: ``"tiny"``, ``"cpu"`` or ``"full"`` (see ``SIZES``).
        device: Where to train and sample.
        budget_seconds: Total budget; training loops stop at their share (``SHARES``), the
            ablation is skipped when less than its share is left.
        seed: Seed of models, masks and noise.
        cache_dir: Corpus cache.
        log: Called with one line per result.
    """
    S = SIZES[size]
    dev = torch.device(device)
    t0 = time.perf_counter()
    res: dict[str, Any] = {"size": size, "device": str(dev)}
    data = load_speech(SpeechConfig(voices=DEFAULT_VOICES, utterances_per_speaker=S["utts"],
                                    test_per_speaker=S["test"]), cache_dir)  # fmt: skip
    clf = train_speaker_classifier(data)
    res["data"] = {"train_utterances": len(data.train), "test_utterances": len(data.test),
                   "build_seconds": data.build_seconds}  # fmt: skip
    arch = {"width": S["width"], "layers": S["layers"], "heads": S["heads"]}
    train_kw = {"iterations": S["iterations"], "batch_size": S["batch"], "lr": S["lr"],
                "device": dev}  # fmt: skip
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    torch.manual_seed(seed)
    flow = VoiceboxVelocity(data.n_mels, data.n_labels, **arch)
    losses, dt, util = _timed_train(train_voicebox, dev, model=flow, data=data,
                                    generator=torch.Generator().manual_seed(seed),
                                    max_seconds=SHARES["flow"] * budget_seconds,
                                    **train_kw)  # fmt: skip
    res["flow"] = {"params": sum(p.numel() for p in flow.parameters()), "iterations": len(losses),
                   "train_seconds": dt, "train_iters_per_s": len(losses) / dt,
                   "train_utterances_per_s": len(losses) * S["batch"] / dt,
                   "final_loss": sum(losses[-50:]) / len(losses[-50:])}  # fmt: skip
    if util is not None:
        res["flow"]["gpu_utilisation_pct"] = util
    log(f"[voicebox] flow trained: {res['flow']}")

    torch.manual_seed(seed)
    ar = ARInfiller(data.n_mels, data.n_labels, **arch)
    losses, dt, util = _timed_train(train_ar, dev, model=ar, data=data,
                                    generator=torch.Generator().manual_seed(seed),
                                    max_seconds=SHARES["ar"] * budget_seconds,
                                    **train_kw)  # fmt: skip
    res["ar"] = {"params": sum(p.numel() for p in ar.parameters()), "iterations": len(losses),
                 "train_seconds": dt, "train_iters_per_s": len(losses) / dt,
                 "final_loss": sum(losses[-50:]) / len(losses[-50:])}  # fmt: skip
    if util is not None:
        res["ar"]["gpu_utilisation_pct"] = util
    log(f"[voicebox] AR trained: {res['ar']}")

    # Batch infill of the whole held-out set: error and throughput.
    evaluate_ar(ar, data, utterances=data.test[:2], device=dev)  # warm-up
    ev_ar = evaluate_ar(ar, data, device=dev, seed=seed)
    res["ar"].update({"infill_mse": ev_ar["infill_mse"], "batch_seconds": ev_ar["sample_seconds"]})
    res["flow"]["by_steps"] = {}
    for steps in S["steps"]:
        evaluate_infill(flow, data, steps=steps, guidance=GUIDANCE, device=dev,
                        without_context=False, utterances=data.test[:2])  # warm-up  # fmt: skip
        ev = evaluate_infill(flow, data, classifier=clf, steps=steps, guidance=GUIDANCE,
                             device=dev, seed=seed, without_context=steps == S["steps"][-1])  # fmt: skip
        row = {"nfe": 2 * steps, "infill_mse": ev["infill_mse"],
               "speaker_similarity": ev["speaker_similarity"],
               "speaker_accuracy": ev["speaker_accuracy"], "batch_seconds": ev["sample_seconds"]}  # fmt: skip
        if "infill_mse_no_context" in ev:
            res["flow"]["infill_mse_no_context"] = ev["infill_mse_no_context"]
            res["flow"]["speaker_similarity_no_context"] = ev["speaker_similarity_no_context"]
        res["flow"]["by_steps"][steps] = row
        log(f"[voicebox] flow {steps} midpoint steps: {row}")
    log(f"[voicebox] AR: infill_mse={ev_ar['infill_mse']:.4f} batch_seconds="
        f"{ev_ar['sample_seconds']:.4f}")  # fmt: skip

    # Latency at batch size 1 (median per utterance), flow steps and AR interleaved.
    utts = data.test[: S["latency_utts"]]
    lat: dict[str, list[float]] = {"ar": [], **{f"flow{k}": [] for k in S["steps"]}}
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for i, u in enumerate([utts[0], *utts]):  # the first pass is a warm-up
            b = collate([u]).to(dev)
            start, end, mask = eval_spans(b, 0.7, seed=seed + i)
            t_ar = _latency(lambda b=b, s=start, e=end: ar.infill(b.frames, b.phones, s, e), dev)
            for k in S["steps"]:
                t_fl = _latency(lambda b=b, m=mask, k=k: infill(flow, b.frames, b.phones, m, b.valid,
                                steps=k, guidance=GUIDANCE, generator=g), dev)  # fmt: skip
                if i > 0:
                    lat[f"flow{k}"].append(t_fl)
            if i > 0:
                lat["ar"].append(t_ar)
    res["ar"]["latency_ms"] = 1000 * statistics.median(lat["ar"])
    for k in S["steps"]:
        res["flow"]["by_steps"][k]["latency_ms"] = 1000 * statistics.median(lat[f"flow{k}"])
    spans = [math.ceil(0.7 * len(u)) for u in utts]
    res["ar"]["mean_span_frames"] = sum(spans) / len(spans)

    # The comparison at comparable error.
    rows = res["flow"]["by_steps"]
    ok = [k for k in S["steps"] if rows[k]["infill_mse"] <= COMPARABLE * res["ar"]["infill_mse"]]
    k_star = min(ok) if ok else min(S["steps"], key=lambda k: rows[k]["infill_mse"])
    cmp = {
        "flow_steps": k_star,
        "comparable": bool(ok),
        "flow_mse": rows[k_star]["infill_mse"],
        "ar_mse": res["ar"]["infill_mse"],
        "latency_ratio_ar_over_flow": res["ar"]["latency_ms"] / rows[k_star]["latency_ms"],
        "batch_ratio_ar_over_flow": res["ar"]["batch_seconds"] / rows[k_star]["batch_seconds"],
        "flow_nfe": 2 * k_star,
        "ar_sequential_steps": res["ar"]["mean_span_frames"],
    }
    res["comparison"] = cmp
    log(f"[voicebox] comparison: {cmp}")

    # Latency against length (timing only): k held-out utterances back to back, 70% masked.
    # The AR model's sequential steps grow with the span, the flow's NFE do not.
    scaling = {}
    with torch.no_grad():
        for k in S["lengths"]:
            times: dict[str, list[float]] = {"ar": [], "flow": []}
            for i in range(S["length_reps"] + 1):  # the first pass is a warm-up
                parts = [data.test[(i * k + j) % len(data.test)] for j in range(k)]
                u = Utterance(torch.cat([p.frames for p in parts]),
                              torch.cat([p.phones for p in parts]), parts[0].speaker, "")  # fmt: skip
                b = collate([u]).to(dev)
                start, end, mask = eval_spans(b, 0.7, seed=seed + i)
                t_ar = _latency(lambda b=b, s=start, e=end: ar.infill(b.frames, b.phones, s, e),
                                dev)  # fmt: skip
                t_fl = _latency(lambda b=b, m=mask: infill(flow, b.frames, b.phones, m, b.valid,
                                steps=k_star, guidance=GUIDANCE, generator=g), dev)  # fmt: skip
                if i > 0:
                    times["ar"].append(t_ar)
                    times["flow"].append(t_fl)
            ar_ms = 1000 * statistics.median(times["ar"])
            fl_ms = 1000 * statistics.median(times["flow"])
            scaling[k] = {"frames": len(u), "ar_latency_ms": ar_ms, "flow_latency_ms": fl_ms,
                          "latency_ratio_ar_over_flow": ar_ms / fl_ms}  # fmt: skip
            log(f"[voicebox] {k} utterance(s) back to back: {scaling[k]}")
    res["length_scaling"] = scaling

    # The masked-span vs. full-utterance ablation, when the budget allows.
    left = budget_seconds - (time.perf_counter() - t0)
    if S["ablation"] and left > SHARES["ablation"] * budget_seconds:
        torch.manual_seed(seed)
        full = VoiceboxVelocity(data.n_mels, data.n_labels, **arch)
        losses, dt, _ = _timed_train(train_voicebox, dev, model=full, data=data, loss_on="full",
                                     generator=torch.Generator().manual_seed(seed),
                                     max_seconds=SHARES["ablation"] * budget_seconds,
                                     **train_kw)  # fmt: skip
        k = 4 if 4 in S["steps"] else S["steps"][-1]
        ev = evaluate_infill(full, data, classifier=clf, steps=k, guidance=GUIDANCE, device=dev,
                             seed=seed, without_context=False)  # fmt: skip
        res["ablation"] = {"iterations": len(losses), "steps": k,
                           "full_loss_infill_mse": ev["infill_mse"],
                           "full_loss_speaker_similarity": ev["speaker_similarity"],
                           "masked_loss_infill_mse": rows[k]["infill_mse"],
                           "masked_loss_speaker_similarity": rows[k]["speaker_similarity"]}  # fmt: skip
        log(f"[voicebox] masked vs full loss: {res['ablation']}")
    else:
        res["ablation"] = {"skipped": f"budget ({left:.0f}s left)"}
    if dev.type == "cuda":
        res["cuda_peak_memory_gb"] = torch.cuda.max_memory_allocated(dev) / 2**30
    res["seconds"] = time.perf_counter() - t0
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", choices=sorted(SIZES), default="cpu")
    ap.add_argument("--budget-seconds", type=float, default=600.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", default="", help="corpus cache (default: see voicebox.data)")
    ap.add_argument("--json", default="", help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda but CUDA is not available")
    name = (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
            else f"cpu x{os.cpu_count()} ({torch.get_num_threads()} torch threads)")  # fmt: skip
    print(f"device {name}; torch {torch.__version__}; size {args.size}; "
          f"budget {args.budget_seconds:.0f}s", flush=True)  # fmt: skip
    res = run_benchmark(args.size, device=args.device, budget_seconds=args.budget_seconds,
                        seed=args.seed, cache_dir=args.cache_dir or None,
                        log=lambda s: print(s, flush=True))  # fmt: skip
    c = res["comparison"]
    print(f"flow {c['flow_steps']} steps ({c['flow_nfe']} NFE): MSE {c['flow_mse']:.4f} vs AR "
          f"{c['ar_mse']:.4f} ({c['ar_sequential_steps']:.1f} sequential frames); AR/flow "
          f"latency x{c['latency_ratio_ar_over_flow']:.2f}, batch time "
          f"x{c['batch_ratio_ar_over_flow']:.2f}; total {res['seconds']:.0f}s", flush=True)  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=float))
    return res


if __name__ == "__main__":
    main()
