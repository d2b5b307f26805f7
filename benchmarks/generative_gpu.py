"""Generative workloads at a larger scale on one GPU: metrics and throughput in one script.

Runs, in order, within ``--budget-seconds`` (default 450 s, under 8 minutes on one H100):

1. base flows — flow matching on 8 Gaussians (MLP) and on the digits (U-Net), plus the digits
   classifier; throughput in training iterations/s and ODE samples/s;
2. Adjoint Matching — (a) 2-D faithfulness: memoryless vs. constant-σ fine-tuning, sliced W2 to
   the exact tilted target; (b) digits with the classifier reward: reward / FD / diversity
   before and after; iterations/s and samples/s;
3. D-Flow — 2-D constraint (true log-density vs. optimising x1 directly) and digits inpainting
   (PSNR vs. masked-noise and mean-fill baselines); solved samples/s;
4. GSBM — Stunnel and Vneck against plain bridge matching (marginal distances, obstacle cost,
   collision rate); matching iterations/s;
5. Voicebox — masked-span flow vs. an autoregressive baseline of the same size and the
   full-utterance-loss ablation on the espeak-ng corpus (``benchmarks/voicebox.py``): infill
   error, speaker similarity, latency/batch-time ratios at comparable error, peak memory and
   GPU utilisation;
6. CM3Leon — retrieval-augmented pre-training vs. none at equal steps (held-out NLL), SFT,
   text→image accuracy with plain / CFG / TopK contrastive decoding, Fréchet distance,
   captioning; training tokens/s, samples/s, peak device memory and utilisation.

Every training loop (the classifier's, D-Flow's L-BFGS and GSBM's path fitting included) also
stops at its share of the budget, and a section that would start past the budget is skipped
(and reported as such). Needs only torch, numpy, scipy, scikit-learn and
torchdiffeq besides the repository itself.

Usage::

    python benchmarks/generative_gpu.py --device cuda                 # the real run
    python benchmarks/generative_gpu.py --device cpu --tiny           # smoke test, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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

from assay.generative import adjoint_matching as am  # noqa: E402
from assay.generative import cm3leon as cm  # noqa: E402
from assay.generative import dflow as df  # noqa: E402
from assay.generative import gsbm as gs  # noqa: E402
from assay.generative.data import EightGaussians, load_digits_tensor  # noqa: E402
from assay.generative.flow_matching import (  # noqa: E402
    MLPVelocity,
    UNetVelocity,
    ode_sample,
    train_flow_matching,
)
from assay.generative.metrics import sliced_wasserstein, total_variation  # noqa: E402
from assay.generative.rewards import (  # noqa: E402
    ClassifierLogProb,
    LinearReward,
    train_digits_classifier,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import voicebox as voicebox_bench  # noqa: E402  (benchmarks/voicebox.py)

#: Sizes for the GPU run and for the CPU smoke test. ``share`` is each section's fraction of
#: the time budget (its training loops stop when their share is used up).
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "toy_iters": 4000, "toy_batch": 2048, "digits_iters": 6000, "digits_batch": 256,
        "unet_channels": 64, "clf_iters": 2000, "ode_samples": 20000,
        "am_toy_iters": 500, "am_toy_batch": 512, "am_toy_steps": 20, "am_target_samples": 100000,
        "am_digits_iters": 300, "am_digits_batch": 128, "am_digits_steps": 20,
        "am_eval": 1000, "dflow_2d_n": 2048, "dflow_images": 256, "dflow_iters": 50,
        "dflow_steps": 10, "gsbm_pairs": 2048, "gsbm_epochs": 5, "gsbm_match_iters": 3000,
        "gsbm_csoc_iters": 500, "gsbm_batch": 1024, "gsbm_eval": 4000, "gsbm_sim_steps": 200,
        "cm3_k": 2, "cm3_width": 128, "cm3_layers": 4, "cm3_heads": 4, "cm3_batch": 256,
        "cm3_pretrain": 3000, "cm3_sft": 1500, "cm3_retriever": 500, "cm3_eval": 1000,
        "voicebox_size": "full",
    },
    "tiny": {
        "toy_iters": 100, "toy_batch": 128, "digits_iters": 30, "digits_batch": 32,
        "unet_channels": 8, "clf_iters": 30, "ode_samples": 256,
        "am_toy_iters": 4, "am_toy_batch": 32, "am_toy_steps": 6, "am_target_samples": 2000,
        "am_digits_iters": 2, "am_digits_batch": 8, "am_digits_steps": 4,
        "am_eval": 64, "dflow_2d_n": 32, "dflow_images": 4, "dflow_iters": 3,
        "dflow_steps": 3, "gsbm_pairs": 32, "gsbm_epochs": 1, "gsbm_match_iters": 20,
        "gsbm_csoc_iters": 5, "gsbm_batch": 64, "gsbm_eval": 128, "gsbm_sim_steps": 20,
        "cm3_k": 1, "cm3_width": 16, "cm3_layers": 1, "cm3_heads": 2, "cm3_batch": 8,
        "cm3_pretrain": 4, "cm3_sft": 3, "cm3_retriever": 5, "cm3_eval": 16,
        "voicebox_size": "tiny",
    },
}  # fmt: skip
SHARE = {"base": 0.18, "am": 0.22, "dflow": 0.08, "gsbm": 0.28, "voicebox": 0.12, "cm3leon": 0.12}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Bench:
    """Collects ``section -> {metric: value}`` and prints them as they come."""

    def __init__(self, budget: float, device: torch.device) -> None:
        self.t0 = time.perf_counter()
        self.budget, self.device = budget, device
        self.results: dict[str, dict[str, Any]] = {}

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def share(self, name: str) -> float:
        """Seconds this section may use (its share, capped by what is left)."""
        return max(1.0, min(SHARE[name] * self.budget, self.budget - self.elapsed))

    def can_start(self, name: str) -> bool:
        if self.elapsed < self.budget - 5:
            return True
        self.results[name] = {"skipped": f"budget used ({self.elapsed:.0f}s)"}
        print(f"[{name}] skipped: budget used", flush=True)
        return False

    def put(self, section: str, **metrics: Any) -> None:
        self.results.setdefault(section, {}).update(metrics)
        text = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in metrics.items())  # fmt: skip
        print(f"[{section}] {text}  (t={self.elapsed:.0f}s)", flush=True)


def timed(dev_: torch.device, fn: Any, /, *args: Any, **kw: Any) -> tuple[Any, float]:
    _sync(dev_)
    t = time.perf_counter()
    out = fn(*args, **kw)
    _sync(dev_)
    return out, time.perf_counter() - t


def section_base(b: Bench, S: dict[str, Any], g: torch.Generator) -> dict[str, Any]:
    dev = b.device
    share = b.share("base")
    toy = EightGaussians()
    toy_model = MLPVelocity(2, hidden=256, layers=4)
    losses, dt = timed(dev, train_flow_matching, toy_model, lambda n: toy.sample(n, generator=g),
                       iterations=S["toy_iters"], batch_size=S["toy_batch"], lr=2e-3, device=dev,
                       generator=g, max_seconds=0.25 * share)  # fmt: skip
    with torch.no_grad():
        z = torch.randn(S["ode_samples"], 2, generator=g).to(dev)
        x, ds = timed(dev, ode_sample, toy_model, z, steps=50)
    b.put("fm_toy", train_iters_per_s=len(losses) / dt, ode_samples_per_s=len(z) / ds,
          sliced_w2=float(sliced_wasserstein(x.cpu(), toy.sample(len(z), generator=g))),
          mean_log_density=float(toy.log_prob(x.cpu()).mean()))  # fmt: skip

    xd, _ = load_digits_tensor("train")
    xd = xd.to(dev)
    unet = UNetVelocity(S["unet_channels"])
    losses, dt = timed(dev, train_flow_matching, unet,
                       lambda n: xd[torch.randint(0, len(xd), (n,), generator=g).to(dev)],
                       iterations=S["digits_iters"], batch_size=S["digits_batch"], lr=2e-3,
                       device=dev, generator=g, max_seconds=0.6 * share)  # fmt: skip
    clf, acc = train_digits_classifier(iterations=S["clf_iters"], device=dev,
                                       max_seconds=0.1 * share)  # fmt: skip
    clf = clf.to(dev)
    for p in clf.parameters():
        p.requires_grad_(False)
    for p in unet.parameters():
        p.requires_grad_(False)
    for p in toy_model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        z = torch.randn(min(S["ode_samples"], 5000), 1, 8, 8, generator=g).to(dev)
        imgs, ds = timed(dev, ode_sample, unet, z, steps=20)
    x_test, _ = load_digits_tensor("test")
    base_m = am.digits_metrics(imgs[:1000], clf, 3, *am.real_digit_features(clf, 3))
    b.put("fm_digits", train_iters_per_s=len(losses) / dt, iterations=len(losses),
          final_loss=sum(losses[-50:]) / len(losses[-50:]), ode_samples_per_s=len(z) / ds,
          fd_all=base_m["fd_all"], diversity=base_m["diversity"], classifier_test_acc=acc)  # fmt: skip
    return {"toy": toy_model, "unet": unet, "clf": clf, "x_test": x_test}


def section_am(b: Bench, S: dict[str, Any], m: dict[str, Any], g: torch.Generator) -> None:
    dev = b.device
    share = b.share("am")
    toy, reward = EightGaussians(), LinearReward([1.0, 0.0]).to(dev)
    K = S["am_toy_steps"]
    base_s = am.sample(m["toy"], S["am_target_samples"], (2,), num_steps=K, device=dev,
                       generator=g)  # fmt: skip
    w = am.tilted_weights(reward(base_s.to(dev)).cpu(), 1.0)
    modes_t = torch.bincount(toy.component(base_s), weights=w.float(), minlength=8).float()
    n_eval = min(4000, len(base_s))
    d_base = float(sliced_wasserstein(base_s[:n_eval], base_s, y_weights=w))
    row: dict[str, Any] = {"sw_base_to_target": d_base}
    for sch in ("memoryless", "constant"):
        (ft, hist), dt = timed(dev, am.adjoint_matching, m["toy"], reward, lam=1.0, schedule=sch,
                               num_steps=K, iterations=S["am_toy_iters"],
                               batch_size=S["am_toy_batch"], lr=1e-3, device=dev, generator=g,
                               max_seconds=0.25 * share)  # fmt: skip
        s = am.sample(ft, n_eval, (2,), schedule=am.make_schedule(sch, 1.0), num_steps=K,
                      device=dev, generator=g)  # fmt: skip
        modes = torch.bincount(toy.component(s), minlength=8).float()
        row[f"{sch}_sw_to_target"] = float(sliced_wasserstein(s, base_s, y_weights=w))
        row[f"{sch}_mode_tv"] = total_variation(modes, modes_t)
        row[f"{sch}_iters_per_s"] = len(hist["loss"]) / dt
    b.put("am_toy", **row)

    reward_d = ClassifierLogProb(m["clf"], 3)
    real = am.real_digit_features(m["clf"], 3)
    (ft, hist), dt = timed(dev, am.adjoint_matching, m["unet"], reward_d, lam=1.0,
                           num_steps=S["am_digits_steps"], iterations=S["am_digits_iters"],
                           batch_size=S["am_digits_batch"], lr=3e-4, loss_steps=10,
                           sample_shape=(1, 8, 8), device=dev, generator=g,
                           max_seconds=0.45 * share)  # fmt: skip
    (s, ds) = timed(dev, am.sample, ft, S["am_eval"], (1, 8, 8), num_steps=20, device=dev,
                    generator=g)  # fmt: skip
    base = am.sample(m["unet"], S["am_eval"], (1, 8, 8), num_steps=20, device=dev, generator=g)
    after = am.digits_metrics(s.to(dev), m["clf"], 3, *real)
    before = am.digits_metrics(base.to(dev), m["clf"], 3, *real)
    b.put("am_digits", iters_per_s=len(hist["loss"]) / dt, iterations=len(hist["loss"]),
          sde_samples_per_s=S["am_eval"] / ds, reward_before=before["reward"],
          reward_after=after["reward"], acc3_before=before["target_accuracy"],
          acc3_after=after["target_accuracy"], fd3_before=before["fd"], fd3_after=after["fd"], fd_all_before=before["fd_all"],
          fd_all_after=after["fd_all"],
          diversity_before=before["diversity"], diversity_after=after["diversity"])  # fmt: skip


def section_dflow(b: Bench, S: dict[str, Any], m: dict[str, Any], g: torch.Generator) -> None:
    dev = b.device
    share = b.share("dflow")
    # constraint2d runs two L-BFGS solves (D-Flow and the x1 baseline), each capped at 0.2
    res, dt = timed(dev, df.constraint2d, m["toy"], EightGaussians(), target=0.0,
                    n=S["dflow_2d_n"], reg_weight=1e-3, alpha=0.1, max_iter=S["dflow_iters"],
                    lr=1.0, steps=S["dflow_steps"], device=dev, generator=g,
                    max_seconds=0.2 * share)  # fmt: skip
    b.put(
        "dflow_2d",
        samples_per_s=S["dflow_2d_n"] / dt,
        **{
            k: res[k]
            for k in (
                "constraint_error",
                "mean_log_density",
                "x1_direct_log_density",
                "x1_direct_constraint_error",
            )
        },
    )
    x_train, _ = load_digits_tensor("train")
    imgs = m["x_test"][: S["dflow_images"]]
    (_, res), dt = timed(
        dev,
        df.inpainting,
        m["unet"],
        imgs,
        reg_weight=1e-2,
        alpha=0.1,
        max_iter=S["dflow_iters"],
        lr=1.0,
        steps=S["dflow_steps"],
        fill=x_train.mean(0, keepdim=True),
        device=dev,
        generator=g,
        max_seconds=0.5 * share,
    )
    b.put(
        "dflow_inpaint",
        images_per_s=len(imgs) / dt,
        lbfgs_evals_per_s=res["function_evals"] / dt,
        **{
            k: res[k]
            for k in (
                "psnr",
                "psnr_full",
                "baseline_noise_psnr",
                "baseline_mean_psnr",
                "observed_mse",
                "x0_norm_ratio",
            )
        },
    )


def section_gsbm(b: Bench, S: dict[str, Any], g: torch.Generator) -> None:
    dev = b.device
    share = b.share("gsbm")
    for name in ("stunnel", "vneck"):
        for state_cost in (True, False):
            label = f"gsbm_{name}" if state_cost else f"bm_{name}"
            if b.elapsed > b.budget - 10:
                b.results[label] = {"skipped": f"budget used ({b.elapsed:.0f}s)"}
                print(f"[{label}] skipped: budget used", flush=True)
                continue
            res, dt = timed(dev, gs.gsbm, gs.TASKS[name], state_cost=state_cost,
                            epochs=S["gsbm_epochs"], pairs=S["gsbm_pairs"],
                            csoc_iterations=S["gsbm_csoc_iters"],
                            matching_iterations=S["gsbm_match_iters"],
                            batch_size=S["gsbm_batch"], sim_steps=S["gsbm_sim_steps"],
                            device=dev, generator=g, max_seconds=0.2 * share,
                            csoc_max_seconds=0.05 * share)  # fmt: skip
            iters = sum(len(x) for x in res["match_losses"])
            ev, de = timed(dev, gs.evaluate, res, n=S["gsbm_eval"], sim_steps=S["gsbm_sim_steps"],
                           device=dev, generator=g)  # fmt: skip
            b.put(label, match_iters_per_s=iters / dt, sim_samples_per_s=S["gsbm_eval"] / de,
                  **ev)  # fmt: skip


def section_voicebox(b: Bench, S: dict[str, Any], seed: int) -> None:
    """``benchmarks/voicebox.py`` within this section's share of the budget."""
    res = voicebox_bench.run_benchmark(S["voicebox_size"], device=b.device,
                                       budget_seconds=b.share("voicebox"), seed=seed,
                                       log=lambda s: None)  # fmt: skip
    flow, ar, cmp = res["flow"], res["ar"], res["comparison"]
    k = cmp["flow_steps"]
    row = flow["by_steps"][k]
    b.put("voicebox", flow_params=flow["params"], ar_params=ar["params"],
          flow_train_iters_per_s=flow["train_iters_per_s"],
          flow_train_utterances_per_s=flow["train_utterances_per_s"],
          infill_mse=row["infill_mse"],
          infill_mse_no_context=flow.get("infill_mse_no_context", float("nan")),
          speaker_similarity=row["speaker_similarity"], flow_steps=k, ar_mse=ar["infill_mse"],
          comparable=cmp["comparable"], latency_ratio_ar_over_flow=cmp["latency_ratio_ar_over_flow"],
          batch_ratio_ar_over_flow=cmp["batch_ratio_ar_over_flow"],
          flow_latency_ms=row["latency_ms"], ar_latency_ms=ar["latency_ms"],
          **{k2: v for k2, v in res["ablation"].items() if k2 != "skipped"},
          **({"cuda_peak_memory_gb": res["cuda_peak_memory_gb"]}
             if "cuda_peak_memory_gb" in res else {}),
          **({"gpu_utilisation_pct": flow["gpu_utilisation_pct"]}
             if "gpu_utilisation_pct" in flow else {}))  # fmt: skip


def device_stats(dev: torch.device) -> dict[str, Any]:
    """Peak allocated memory (GiB) since the last reset and, where NVML answers, the GPU's
    current utilisation (%)."""
    if dev.type != "cuda":
        return {}
    out: dict[str, Any] = {"peak_mem_gib": torch.cuda.max_memory_allocated(dev) / 2**30}
    with contextlib.suppress(Exception):  # no NVML / pynvml: utilisation is not reported
        out["gpu_util_pct"] = float(torch.cuda.utilization(dev))
    return out


def section_cm3leon(b: Bench, S: dict[str, Any], m: dict[str, Any], g: torch.Generator) -> None:
    """Retrieval-augmented pre-training vs. none at equal steps, SFT, decoding comparison."""
    dev = b.device
    share = b.share("cm3leon")
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    corpus = cm.load_corpus(32, seed=0)
    k = S["cm3_k"]
    retrieval = cm.build_retrieval(corpus, cm.train_retriever(corpus, steps=S["cm3_retriever"]), k)
    size = {"width": S["cm3_width"], "layers": S["cm3_layers"], "heads": S["cm3_heads"]}
    row: dict[str, Any] = {}
    steps = S["cm3_pretrain"]
    models = {}
    for kk in (k, 0):  # the no-retrieval model gets the steps the retrieval model managed
        torch.manual_seed(0)
        model = cm.new_model(32, kk, **size)
        s = cm.TrainSettings(k=kk, steps=steps, batch_size=S["cm3_batch"], lr=1e-3,
                             max_seconds=0.3 * share)  # fmt: skip
        losses, dt = timed(dev, cm.pretrain, model, corpus, retrieval if kk else None, s,
                           device=dev, generator=g)  # fmt: skip
        steps = len(losses)
        tokens = len(losses) * S["cm3_batch"] * (kk * cm.DOC_LEN + cm.MAIN_LEN)
        row[f"pretrain_k{kk}_tokens_per_s"] = tokens / dt
        row[f"pretrain_k{kk}_steps"] = len(losses)
        row[f"heldout_nll_k{kk}"] = cm.heldout_nll(
            model, corpus, retrieval["test"] if kk else None, kk, device=dev
        )
        models[kk] = model
    model = models[k]
    s = cm.TrainSettings(k=k, steps=S["cm3_sft"], batch_size=S["cm3_batch"], lr=1e-3,
                         retrieval_dropout=0.3, max_seconds=0.2 * share)  # fmt: skip
    sft, dt = timed(dev, cm.finetune, model, corpus, retrieval, s, device=dev, generator=g)
    row["sft_steps"] = len(sft)
    row["sft_steps_per_s"] = len(sft) / dt
    decodings = {"plain": cm.Decoding("plain"), "cfg": cm.Decoding("cfg", cfg_weight=3.0),
                 "contrastive": cm.Decoding("contrastive", alpha=0.1)}  # fmt: skip
    ev = cm.evaluate(model, corpus, retrieval, k, m["clf"], decodings, samples=S["cm3_eval"],
                     device=dev, generator=g)  # fmt: skip
    row.update(ev)
    row.update(device_stats(dev))
    b.put("cm3leon", **row)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--budget-seconds", type=float, default=450.0)
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (CPU smoke test)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="", help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but CUDA is not available")
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    S = SIZES["tiny" if args.tiny else "full"]
    b = Bench(args.budget_seconds, dev)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu x{os.cpu_count()}"
    print(f"device {name}; torch {torch.__version__}; budget {args.budget_seconds:.0f}s; "
          f"sizes {'tiny' if args.tiny else 'full'}", flush=True)  # fmt: skip
    models = section_base(b, S, g)
    if b.can_start("am"):
        section_am(b, S, models, g)
    if b.can_start("dflow"):
        section_dflow(b, S, models, g)
    if b.can_start("gsbm"):
        section_gsbm(b, S, g)
    if b.can_start("voicebox"):
        section_voicebox(b, S, args.seed)
    if b.can_start("cm3leon"):
        section_cm3leon(b, S, models, g)
    b.results["total_seconds"] = {"value": b.elapsed}
    print(f"total {b.elapsed:.1f}s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(b.results, indent=2, default=float))
    return b.results


if __name__ == "__main__":
    main()
