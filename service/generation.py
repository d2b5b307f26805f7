"""Generation: every way a trial comes into being, under the experiment's lock.

Stateless generation: an ask takes the experiment's lock, loads a fresh snapshot (trials,
observations, generator and model state), runs the generator, and writes the new trials and
the updated state before releasing the lock. So any number of threads, processes or servers
can share one database without creating duplicate trials, and pending trials are always
known to the generator.

This module owns:

* the one retry policy of locked asks (:func:`run_locked`): the whole unit of work runs again
  when the store reports a transient failure, for ``ask``, ``ask_batch``, ``attach_trial``
  and the orchestrator's ``fill_candidates`` alike;
* the seed each ask derives from the experiment's seed (:func:`derive_seed`);
* the checks that run before a generator does (ask options, an active experiment, the trial
  budget);
* the choice of a batch's fixed arms (:func:`batch_fixed_arms`: the control first, then the
  carried-over arms);
* the verbs themselves, as :class:`Generation` (which :class:`~assay.service.engine.Engine`
  inherits).

May import: :mod:`assay.platform` (domain objects, generators) and
:mod:`assay.storage.base` (the store interface). Nothing of HTTP, the client or the jobs
package.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from assay.platform.early_stopping import early_stopped_values
from assay.platform.errors import (
    AssayError,
    ConflictError,
    LockTimeoutError,
    NotFoundError,
    StorageBusyError,
    ValidationError,
)
from assay.platform.experiment import (
    Experiment,
    ExperimentConfig,
    ExperimentStatus,
    Trial,
    TrialState,
)
from assay.platform.generators import get_generator
from assay.platform.space import SearchSpace
from assay.service.observability import LOCK_RETRIES, LOCK_WAIT_SECONDS, observe_generation
from assay.storage.base import ExperimentLock, NewTrial, Store

log = logging.getLogger("assay.engine")

#: Most single-arm trials one ask creates.
MAX_ASK = 100
#: Most arms in one batch trial (control included).
MAX_BATCH_ARMS = 64
#: Whole-ask attempts when the database stays busy (each attempt already retried inside).
ASK_ATTEMPTS = 4
#: Longest lease a running trial may take, in seconds (a week).
MAX_LEASE_S = 7 * 86400

T = TypeVar("T")


def run_locked(
    store: Store,
    experiment_id: int,
    work: Callable[[ExperimentLock], T],
    *,
    verb: str,
    project: str | None = None,
) -> T:
    """Run ``work`` on a locked, fresh snapshot of the experiment: the one retry policy of
    every locked ask.

    The whole unit of work (snapshot, generation, insert, commit) runs again after a short
    jittered exponential back-off when the store reports a transient failure (deadlock,
    serialization failure, locked database, trial-number clash: ``StorageBusyError``); a
    failed attempt wrote nothing, so running it again is safe. After :data:`ASK_ATTEMPTS`
    the typed error reaches the caller (HTTP 503 with ``Retry-After``).

    Args:
        store: The backend.
        experiment_id: The experiment to lock.
        work: What to do under the lock; receives the :class:`ExperimentLock`.
        verb: Names the ask in the log.
        project: Visibility check (``NotFoundError`` for another project's experiment).
    """
    for attempt in range(1, ASK_ATTEMPTS + 1):
        try:
            waited = time.perf_counter()
            with store.lock_experiment(experiment_id, project=project) as lock:
                LOCK_WAIT_SECONDS.labels(verb).observe(time.perf_counter() - waited)
                return work(lock)
        except StorageBusyError as e:
            if attempt >= ASK_ATTEMPTS or isinstance(e, LockTimeoutError):
                raise  # a lock wait is already bounded: waiting again would multiply it
            LOCK_RETRIES.labels(verb).inc()
            log.info(
                "%s on experiment %s retried (attempt %d) after: %s",
                verb, experiment_id, attempt, e,
            )  # fmt: skip
            time.sleep(0.01 * 2**attempt * (1 + random.random()))
    raise AssertionError("unreachable")


def with_early_stopped(store: Store, exp: Experiment, generator: Any) -> Experiment:
    """The snapshot a model-based generator should see under its ``early_stopped`` setting:
    ``exp`` itself for ``"exclude"`` (the default) or when no trial was early-stopped, else a
    view in which each early-stopped trial carries the values
    :func:`~assay.platform.early_stopping.early_stopped_values` derives from its reports (one
    read of the experiment's curves per ask)."""
    mode = getattr(getattr(generator, "settings", None), "early_stopped", "exclude")
    if mode == "exclude" or not any(t.state is TrialState.EARLY_STOPPED for t in exp.trials):
        return exp
    values = early_stopped_values(store.experiment_curves(exp), exp.config.modelled_metrics, mode)
    return exp.with_early_stopped_data(values)


def with_fixed(exp: Experiment, fixed: Mapping[str, Any] | None) -> Experiment:
    """A view of ``exp`` for one ask with some parameters held at given values (Ax's
    ``fixed_parameters``): those parameters become fixed parameters of the view's search
    space, so the generator optimizes only the others. The fixed parameters are not modelled
    in that ask (observations at other values of them are pooled); the stored experiment is
    unchanged. Unknown names or values outside a parameter's domain are a
    ``ValidationError`` naming ``fixed.<name>``."""
    if not fixed:
        return exp
    if not isinstance(fixed, Mapping):
        raise ValidationError("fixed must be an object {parameter: value}", field="fixed")
    space = exp.config.search_space
    values = {}
    for name, value in fixed.items():
        if name not in space:
            raise ValidationError(
                f"fixed: unknown parameter {name!r}; the search space has {space.names}",
                field=f"fixed.{name}",
            )
        try:
            values[name] = space[name].validate(value)
        except AssayError as e:
            raise ValidationError(f"fixed.{name}: {e}", field=f"fixed.{name}") from None
    d = exp.config.to_dict()
    d["parameters"] = [
        {"name": p["name"], "type": "fixed", "value": values[p["name"]]}
        if p["name"] in values
        else p
        for p in d["parameters"]
    ]
    sq = d.get("status_quo")
    if sq is not None and any(sq.get(k) != v for k, v in values.items()):
        d["status_quo"] = None
    view = copy.copy(exp)
    view.config = ExperimentConfig.from_dict(d)
    view.config.seed = exp.config.seed
    return view


def derive_seed(base: int, salt: int) -> int:
    """The seed of one ask: the experiment's seed mixed with the trial count, so proposals
    are reproducible for the same data and differ from ask to ask."""
    return (base * 1_000_003 + salt * 7919 + 17) % (2**31 - 1)


def check_ask_options(idempotency_key: str | None, lease_seconds: float | None) -> None:
    """``idempotency_key`` is 1-200 characters; ``lease_seconds`` is in ``(0, a week]``."""
    if idempotency_key is not None and (
        not isinstance(idempotency_key, str) or not 1 <= len(idempotency_key) <= 200
    ):
        raise ValidationError("idempotency_key must be 1-200 characters", field="idempotency_key")
    if lease_seconds is not None and not 0 < lease_seconds <= MAX_LEASE_S:
        raise ValidationError("lease_seconds must be in (0, 604800]", field="lease_seconds")


def check_active(exp: Experiment) -> None:
    """Only active experiments take asks (``ConflictError`` naming the status)."""
    if exp.status is not ExperimentStatus.ACTIVE:
        raise ConflictError(
            f"experiment {exp.id} is {exp.status.value}; only active experiments take asks",
            details={"status": exp.status.value},
        )


def within_budget(exp: Experiment, n: int) -> int:
    """How many of ``n`` new trials the trial budget still allows (``ConflictError`` when
    it is used up; see :meth:`~assay.platform.experiment.Experiment.remaining_budget`)."""
    remaining = exp.remaining_budget()
    if remaining is None:
        return n
    if remaining == 0:
        budget = exp.config.trial_budget
        raise ConflictError(
            f"experiment {exp.id} has used its budget of {budget} trials",
            details={"max_trials": budget},
        )
    return min(n, remaining)


def lease_until(lease_seconds: float | None, start: bool) -> datetime | None:
    """The heartbeat deadline of a trial created running (``None``: no lease)."""
    if not lease_seconds or not start:
        return None
    return datetime.now(UTC) + timedelta(seconds=lease_seconds)


def batch_fixed_arms(
    exp: Experiment, include: list[str | Mapping[str, Any]], n_arms: int
) -> list[dict[str, Any]]:
    """The arms a batch trial deploys whatever the generator proposes: the control (if the
    experiment has one) first, then ``include`` (arm names, or parameter objects validated
    against the search space), without duplicates.

    Raises:
        NotFoundError: an unknown arm name.
        ValidationError: a bad parameter object, a duplicate, or more fixed arms than
            ``n_arms``; ``field`` is ``include[i]`` (or ``include``).
    """
    space = exp.search_space
    fixed: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    if exp.config.status_quo is not None:
        fixed.append(dict(exp.config.status_quo))
        seen.add(SearchSpace.signature(exp.config.status_quo))
    known = exp.arms_by_name()
    for i, item in enumerate(include):
        where = f"include[{i}]"
        if isinstance(item, str):
            if item not in known:
                raise NotFoundError(
                    f"{where}: experiment {exp.id} has no arm {item!r}", field=where
                )
            params = dict(known[item].parameters)
        elif isinstance(item, Mapping):
            try:
                params = space.validate(item)
            except ValidationError as e:
                raise ValidationError(f"{where}: {e.message}", field=where) from e
        else:
            raise ValidationError(
                f"{where}: expected an arm name or a parameter object", field=where
            )
        sig = SearchSpace.signature(params)
        if sig in seen:
            raise ValidationError(
                f"{where}: that arm is already in the batch (the control is always included)",
                field=where,
            )
        seen.add(sig)
        fixed.append(params)
    if len(fixed) > n_arms:
        raise ValidationError(
            f"include: the control and {len(include)} included arm(s) exceed n_arms={n_arms}",
            field="include",
        )
    return fixed


class Generation:
    """The verbs that create trials: ``ask``, ``ask_batch``, ``attach_trial`` and
    ``fill_candidates``, each one locked unit of work run by :func:`run_locked`.

    A mixin with no state of its own: :class:`~assay.service.engine.Engine` composes it and
    sets ``store`` (the backend) and ``actor`` (who the audit trail records by default).
    """

    store: Store
    actor: str | None

    def ask(
        self,
        experiment_id: int,
        n: int = 1,
        *,
        project: str | None = None,
        idempotency_key: str | None = None,
        start: bool = True,
        lease_seconds: float | None = None,
        fixed: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> list[Trial]:
        """Generate ``n`` new single-arm trials.

        Args:
            experiment_id: The experiment.
            n: How many trials (each built with the previous ones pending).
            idempotency_key: A retried ask with the same key returns the same trials.
            start: Create them ``running`` (the caller evaluates them now) rather than
                ``candidate`` (queued for a worker to claim).
            lease_seconds: Heartbeat deadline for running trials (``None``: no lease).
            fixed: ``{parameter: value}`` held for this ask only (see :func:`with_fixed`).
        """
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_ASK:
            raise ValidationError(f"n must be an integer in [1, {MAX_ASK}], got {n!r}", field="n")
        check_ask_options(idempotency_key, lease_seconds)

        def work(lock: ExperimentLock) -> list[Trial]:
            if idempotency_key is not None:
                previous = lock.trials_for_key(idempotency_key)
                if previous is not None:
                    return previous
            check_active(lock.experiment)
            k = within_budget(lock.experiment, n)
            return self._generate(lock, k, start, lease_seconds, idempotency_key, actor, fixed)

        return run_locked(self.store, experiment_id, work, verb="ask", project=project)

    def ask_batch(
        self,
        experiment_id: int,
        n_arms: int = 8,
        *,
        include: list[str | Mapping[str, Any]] | None = None,
        project: str | None = None,
        idempotency_key: str | None = None,
        start: bool = True,
        lease_seconds: float | None = None,
        actor: str | None = None,
    ) -> Trial:
        """One batch trial: ``n_arms`` arms deployed together (one round of an A/B test).

        The experiment's control arm (``status_quo``) is always in the batch, exactly once
        and first; ``include`` carries existing arms over (by name, or by parameters: an
        assignment equal to a known arm reuses its name); the rest are new arms from the
        generator, chosen greedily as a batch with every other arm of the batch and every
        running trial pending (noisy-constrained EI with ``q = n_new``). In an experiment
        run in batches the first batch is the quasi-random initial design. Counts as one
        trial against ``max_trials``.

        Raises:
            ValidationError: ``n_arms`` out of range, an unknown or duplicate ``include``
                entry, or more included arms than ``n_arms`` allows.
        """
        if (
            not isinstance(n_arms, int)
            or isinstance(n_arms, bool)
            or not (2 <= n_arms <= MAX_BATCH_ARMS)
        ):
            raise ValidationError(
                f"n_arms must be an integer in [2, {MAX_BATCH_ARMS}], got {n_arms!r}",
                field="n_arms",
            )
        if include is not None and (not isinstance(include, list) or len(include) > n_arms):
            raise ValidationError(
                f"include must be a list of at most n_arms={n_arms} arm names or parameter objects",
                field="include",
            )
        check_ask_options(idempotency_key, lease_seconds)

        def work(lock: ExperimentLock) -> Trial:
            if idempotency_key is not None:
                previous = lock.trials_for_key(idempotency_key)
                if previous is not None:
                    return previous[0]
            exp = lock.experiment
            check_active(exp)
            within_budget(exp, 1)
            fixed = batch_fixed_arms(exp, include or [], n_arms)
            return self._generate_batch(
                lock, fixed, n_arms - len(fixed), start, lease_seconds, idempotency_key, actor
            )

        return run_locked(self.store, experiment_id, work, verb="ask_batch", project=project)

    def attach_trial(
        self,
        experiment_id: int,
        parameters: Mapping[str, Any],
        *,
        project: str | None = None,
        start: bool = True,
        actor: str | None = None,
        generator: str = "manual",
        metadata: Mapping[str, Any] | None = None,
    ) -> Trial:
        """Add a trial with given parameters (validated against the search space): a
        user's own arm (``manual``) or a job retry of an existing arm (``retry``)."""

        def work(lock: ExperimentLock) -> Trial:
            exp = lock.experiment
            params = exp.search_space.validate(parameters)
            spec = NewTrial(
                arms=exp.name_arms(len(exp.trials), [params]),
                generator=generator,
                state=TrialState.RUNNING if start else TrialState.CANDIDATE,
                metadata=dict(metadata or {}),
            )
            return lock.add_trials([spec], actor=actor or self.actor)[0]

        return run_locked(self.store, experiment_id, work, verb="attach_trial", project=project)

    def fill_candidates(
        self,
        experiment_id: int,
        target_pending: int,
        *,
        reserve: int = 0,
        actor: str | None = None,
    ) -> list[Trial]:
        """Queue candidate trials until ``target_pending`` trials are pending (candidate or
        running), within the budget: how the orchestrator keeps ``parallelism`` jobs busy.
        ``reserve`` slots (and budget) are held back, e.g. for failed jobs about to be
        retried. Several workers may call this at once; the experiment lock keeps the count
        exact."""

        def work(lock: ExperimentLock) -> list[Trial]:
            exp = lock.experiment
            if exp.status is not ExperimentStatus.ACTIVE:
                return []
            n = target_pending - reserve - sum(1 for t in exp.trials if t.state.is_pending)
            remaining = exp.remaining_budget()
            if remaining is not None:
                n = min(n, remaining - reserve)
            if n <= 0:
                return []
            return self._generate(lock, min(n, MAX_ASK), False, None, None, actor)

        return run_locked(self.store, experiment_id, work, verb="fill_candidates")

    # -- under the lock ----------------------------------------------------------------------
    def _generate(
        self,
        lock: ExperimentLock,
        n: int,
        start: bool,
        lease_seconds: float | None,
        idempotency_key: str | None,
        actor: str | None,
        fixed: Mapping[str, Any] | None = None,
    ) -> list[Trial]:
        """Run the generator on the locked snapshot and store ``n`` new single-arm trials."""
        exp = lock.experiment
        generator = get_generator(exp.config.generator, exp.config.generator_settings)
        seed = derive_seed(exp.config.seed or 0, len(exp.trials))
        t0 = time.perf_counter()
        view = with_fixed(with_early_stopped(self.store, exp, generator), fixed)
        result = generator.generate(view, n, seed=seed)
        info = {**result.info, "ask_seconds": round(time.perf_counter() - t0, 4)}
        if fixed:
            info["fixed"] = dict(fixed)
        observe_generation("ask", len(result.candidates), info)
        log.info("experiment %s: generated %d candidate(s) %s", exp.id, n, info)
        state = TrialState.RUNNING if start else TrialState.CANDIDATE
        lease = lease_until(lease_seconds, start)
        index = len(exp.trials)
        new = [
            NewTrial(
                arms=exp.name_arms(index + k, [cand.parameters]),
                generator=cand.generator,
                state=state,
                lease_expires_at=lease,
                metadata={**cand.metadata, "generation": info} if k == 0 else cand.metadata,
            )
            for k, cand in enumerate(result.candidates)
        ]
        return lock.add_trials(
            new,
            idempotency_key=idempotency_key,
            actor=actor or self.actor,
            generator_state=result.generator_state,
            model_state=result.model_state or None,
        )

    def _generate_batch(
        self,
        lock: ExperimentLock,
        fixed: list[dict[str, Any]],
        n_new: int,
        start: bool,
        lease_seconds: float | None,
        idempotency_key: str | None,
        actor: str | None,
    ) -> Trial:
        """Store one batch trial: the ``fixed`` arms and ``n_new`` arms from the generator."""
        exp = lock.experiment
        state, model_state, info = dict(exp.generator_state), None, {}
        candidates = []
        if n_new:
            generator = get_generator(exp.config.generator, exp.config.generator_settings)
            seed = derive_seed(exp.config.seed or 0, len(exp.trials))
            t0 = time.perf_counter()
            # The carried-over arms run in this batch: fantasized with the new ones and never
            # proposed again (the control is already a baseline point and always avoided).
            included = fixed[1:] if exp.config.status_quo is not None else fixed
            view = with_early_stopped(self.store, exp, generator)
            result = generator.generate(view, n_new, seed=seed, pending=included)
            info = {**result.info, "ask_seconds": round(time.perf_counter() - t0, 4)}
            observe_generation("ask_batch", len(result.candidates), info)
            log.info("experiment %s: generated a batch of %d arm(s) %s", exp.id, n_new, info)
            candidates = result.candidates
            state, model_state = result.generator_state, result.model_state or None
        arms = exp.name_arms(len(exp.trials), fixed + [c.parameters for c in candidates])
        generators = ["manual"] * len(fixed) + [c.generator for c in candidates]
        if exp.config.status_quo is not None:
            generators[0] = "status_quo"
        kinds = [g for g in generators[len(fixed) :]] or ["manual"]
        new = NewTrial(
            arms=arms,
            generator=max(set(kinds), key=kinds.count),
            state=TrialState.RUNNING if start else TrialState.CANDIDATE,
            lease_expires_at=lease_until(lease_seconds, start),
            metadata={
                "batch": True,
                "arm_generators": {name: g for (name, _), g in zip(arms, generators, strict=True)},
                "generation": info,
            },
        )
        return lock.add_trials(
            [new],
            idempotency_key=idempotency_key,
            actor=actor or self.actor,
            generator_state=state,
            model_state=model_state,
        )[0]
