"""Voicebox-style speech infilling at toy scale (Le et al., 2023), the algorithm side.

Voicebox is a non-autoregressive flow-matching model over speech frames, conditioned on a
frame-level phone alignment and on the audio around a masked span; trained with the
masked-span objective, sampled with classifier-free guidance and a few ODE steps. Here:

* :mod:`~assay.generative.voicebox.data` — speech synthesised with espeak-ng in several voices
  (the speakers), log-mel frames, phonemes aligned by espeak's own phoneme events, cached;
  ``python -m assay.generative.voicebox.data --out DIR`` builds it;
* :mod:`~assay.generative.voicebox.model` — the velocity Transformer, the autoregressive
  baseline of the same size, a speaker classifier;
* :mod:`~assay.generative.voicebox.infill` — masks, the loss, training, guided ODE infilling,
  evaluation (infill error with/without context, speaker similarity, voice prompting).

The job entry point is :func:`assay.generative.workloads.voicebox.run`. This package imports
torch, numpy, the standard library, :mod:`assay.generative.flow_matching`,
:mod:`assay.platform.errors` and ``assay.report`` only — never a workload module,
``assay.service`` or ``assay.storage``.
"""
