"""The experiment engine: the verbs (create, ask, tell, fail, best, ...) over any store.

Stateless generation: an ask takes the experiment's lock, loads a fresh snapshot (trials,
observations, generator and model state), runs the generator, and writes the new trials and
the updated state before releasing the lock. So any number of threads, processes or servers
can share one database without creating duplicate trials, and pending trials are always
known to the generator. Every request is validated in full before anything is written.
"""

from __future__ import annotations

import logging
import random
import re
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from assay.platform.analysis import BestArm, EffectsReport, arm_effects, best_arm
from assay.platform.errors import (
    ConflictError,
    InvalidTransitionError,
    NotFoundError,
    ObservationError,
    StorageBusyError,
    ValidationError,
)
from assay.platform.experiment import (
    Experiment,
    ExperimentConfig,
    ExperimentStatus,
    Observation,
    Trial,
    TrialState,
)
from assay.platform.generators import get_generator
from assay.platform.jobspec import Job, TrialReport
from assay.platform.space import SearchSpace
from assay.storage.base import (
    ExperimentSummary,
    NewTrial,
    ProjectSummary,
    Store,
    TrialEvent,
    name_arms,
)

log = logging.getLogger("assay.engine")

MAX_ASK = 100
#: Most arms in one batch trial (control included).
MAX_BATCH_ARMS = 64
#: Project names: URL-safe path segments (``/projects/{name}``), at most 200 characters.
PROJECT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"

#: Whole-ask attempts when the database stays busy (each attempt already retried inside).
ASK_ATTEMPTS = 4


def _retry_or_raise(e: StorageBusyError, attempt: int, verb: str, experiment_id: int) -> None:
    """The one retry policy of asks: the whole locked ask (snapshot, generation, insert,
    commit) runs again after a short jittered back-off when the store reports a transient
    failure (deadlock, serialization failure, locked database, trial-number clash); after
    ``ASK_ATTEMPTS`` the typed error reaches the caller (HTTP 503 with ``Retry-After``)."""
    if attempt >= ASK_ATTEMPTS:
        raise e
    log.info("%s on experiment %s retried (attempt %d) after: %s", verb, experiment_id, attempt, e)
    time.sleep(0.01 * 2**attempt * (1 + random.random()))


def _derive_seed(base: int, salt: int) -> int:
    return (base * 1_000_003 + salt * 7919 + 17) % (2**31 - 1)


class Engine:
    """The experiment verbs over a :class:`~assay.storage.base.Store`.

    Args:
        store: The backend.
        actor: Default actor recorded in the audit trail.
    """

    def __init__(self, store: Store, *, actor: str | None = None) -> None:
        self.store = store
        self.actor = actor
        self._configs: dict[int, ExperimentConfig] = {}

    def _config(self, experiment_id: int) -> ExperimentConfig:
        """The experiment's configuration, cached: configurations never change after creation.
        (Callers check visibility first, e.g. by loading the trial with its project.)"""
        config = self._configs.get(experiment_id)
        if config is None:
            if len(self._configs) > 10_000:
                self._configs.clear()
            config = self._configs[experiment_id] = self.store.get_experiment_config(experiment_id)
        return config

    # -- experiments -------------------------------------------------------------------------
    def create_experiment(
        self, spec: ExperimentConfig | Mapping[str, Any], *, project: str = "default"
    ) -> Experiment:
        """Validate and store an experiment (see :meth:`ExperimentConfig.from_dict`)."""
        config = spec if isinstance(spec, ExperimentConfig) else ExperimentConfig.from_dict(spec)
        generator = get_generator(config.generator, config.generator_settings)
        generator.validate_experiment(config)
        if config.job is not None:
            from assay.service.jobs.checks import check_job_spec

            check_job_spec(config.job)
        if config.seed is None:
            config.seed = secrets.randbelow(2**31 - 1)
        return self.store.create_experiment(config, project=project)

    def get_experiment(self, experiment_id: int, *, project: str | None = None) -> Experiment:
        return self.store.get_experiment(experiment_id, project=project)

    def list_experiments(
        self, *, project: str | None = None, status: ExperimentStatus | None = None
    ) -> list[ExperimentSummary]:
        return self.store.list_experiments(project=project, status=status)

    def set_status(
        self, experiment_id: int, status: ExperimentStatus | str, *, project: str | None = None
    ) -> Experiment:
        try:
            status = ExperimentStatus(status)
        except ValueError:
            raise ValidationError(
                f"status must be one of {[s.value for s in ExperimentStatus]}", field="status"
            ) from None
        return self.store.set_experiment_status(experiment_id, status, project=project)

    # -- projects ----------------------------------------------------------------------------
    def create_project(self, name: str) -> ProjectSummary:
        """Create an empty project (``ConflictError`` if it exists)."""
        if not isinstance(name, str) or not re.fullmatch(PROJECT_NAME_PATTERN, name):
            raise ValidationError(
                "name must be 1-200 letters, digits, '.', '_' or '-', starting with a letter "
                f"or digit; got {name!r}",
                field="name",
            )
        return self.store.create_project(name)

    def projects(self, *, project: str | None = None) -> list[ProjectSummary]:
        """Every project (``project=None``) or only ``project`` (what a key may see)."""
        return self.store.project_summaries(name=project)

    def get_project(self, name: str, *, project: str | None = None) -> ProjectSummary:
        """One project; another project's name is ``NotFoundError`` (names do not leak)."""
        if project is not None and name != project:
            raise NotFoundError(f"project {name!r} not found", details={"project": name})
        return self.store.get_project(name)

    # -- ask ---------------------------------------------------------------------------------
    def ask(
        self,
        experiment_id: int,
        n: int = 1,
        *,
        project: str | None = None,
        idempotency_key: str | None = None,
        start: bool = True,
        lease_seconds: float | None = None,
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
        """
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_ASK:
            raise ValidationError(f"n must be an integer in [1, {MAX_ASK}], got {n!r}", field="n")
        self._check_ask_options(idempotency_key, lease_seconds)
        for attempt in range(1, ASK_ATTEMPTS + 1):
            try:
                with self.store.lock_experiment(experiment_id, project=project) as lock:
                    if idempotency_key is not None:
                        previous = lock.trials_for_key(idempotency_key)
                        if previous is not None:
                            return previous
                    exp = lock.experiment
                    self._check_active(exp)
                    n = self._within_budget(exp, n)
                    return self._generate(lock, n, start, lease_seconds, idempotency_key, actor)
            except StorageBusyError as e:  # deadlock/serialization/busy/trial-number clash
                _retry_or_raise(e, attempt, "ask", experiment_id)
        raise AssertionError("unreachable")

    @staticmethod
    def _check_ask_options(idempotency_key: str | None, lease_seconds: float | None) -> None:
        if idempotency_key is not None and (
            not isinstance(idempotency_key, str) or not 1 <= len(idempotency_key) <= 200
        ):
            raise ValidationError(
                "idempotency_key must be 1-200 characters", field="idempotency_key"
            )
        if lease_seconds is not None and not 0 < lease_seconds <= 7 * 86400:
            raise ValidationError("lease_seconds must be in (0, 604800]", field="lease_seconds")

    @staticmethod
    def _check_active(exp: Experiment) -> None:
        if exp.status is not ExperimentStatus.ACTIVE:
            raise ConflictError(
                f"experiment {exp.id} is {exp.status.value}; only active experiments take asks",
                details={"status": exp.status.value},
            )

    def _generate(
        self,
        lock: Any,
        n: int,
        start: bool,
        lease_seconds: float | None,
        idempotency_key: str | None,
        actor: str | None,
    ) -> list[Trial]:
        """Run the generator on the locked snapshot and store ``n`` new single-arm trials."""
        exp = lock.experiment
        generator = get_generator(exp.config.generator, exp.config.generator_settings)
        seed = _derive_seed(exp.config.seed or 0, len(exp.trials))
        t0 = time.perf_counter()
        result = generator.generate(exp, n, seed=seed)
        info = {**result.info, "ask_seconds": round(time.perf_counter() - t0, 4)}
        log.info("experiment %s: generated %d candidate(s) %s", exp.id, n, info)
        state = TrialState.RUNNING if start else TrialState.CANDIDATE
        lease = (
            datetime.now(UTC) + timedelta(seconds=lease_seconds)
            if lease_seconds and start
            else None
        )
        index = len(exp.trials)
        new = [
            NewTrial(
                arms=name_arms(exp, index + k, [cand.parameters]),
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
        self._check_ask_options(idempotency_key, lease_seconds)
        for attempt in range(1, ASK_ATTEMPTS + 1):
            try:
                with self.store.lock_experiment(experiment_id, project=project) as lock:
                    if idempotency_key is not None:
                        previous = lock.trials_for_key(idempotency_key)
                        if previous is not None:
                            return previous[0]
                    exp = lock.experiment
                    self._check_active(exp)
                    self._within_budget(exp, 1)
                    fixed = self._batch_fixed_arms(exp, include or [], n_arms)
                    return self._generate_batch(
                        lock, fixed, n_arms - len(fixed), start, lease_seconds,
                        idempotency_key, actor,
                    )  # fmt: skip
            except StorageBusyError as e:
                _retry_or_raise(e, attempt, "ask_batch", experiment_id)
        raise AssertionError("unreachable")

    @staticmethod
    def _batch_fixed_arms(
        exp: Experiment, include: list[str | Mapping[str, Any]], n_arms: int
    ) -> list[dict[str, Any]]:
        """The control (if any) then the included arms, validated and without duplicates."""
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

    def _generate_batch(
        self,
        lock: Any,
        fixed: list[dict[str, Any]],
        n_new: int,
        start: bool,
        lease_seconds: float | None,
        idempotency_key: str | None,
        actor: str | None,
    ) -> Trial:
        exp = lock.experiment
        state, model_state, info = dict(exp.generator_state), None, {}
        candidates = []
        if n_new:
            generator = get_generator(exp.config.generator, exp.config.generator_settings)
            seed = _derive_seed(exp.config.seed or 0, len(exp.trials))
            t0 = time.perf_counter()
            # The carried-over arms run in this batch: fantasized with the new ones and never
            # proposed again (the control is already a baseline point and always avoided).
            included = fixed[1:] if exp.config.status_quo is not None else fixed
            result = generator.generate(exp, n_new, seed=seed, pending=included)
            info = {**result.info, "ask_seconds": round(time.perf_counter() - t0, 4)}
            log.info("experiment %s: generated a batch of %d arm(s) %s", exp.id, n_new, info)
            candidates = result.candidates
            state, model_state = result.generator_state, result.model_state or None
        arms = name_arms(exp, len(exp.trials), fixed + [c.parameters for c in candidates])
        generators = ["manual"] * len(fixed) + [c.generator for c in candidates]
        if exp.config.status_quo is not None:
            generators[0] = "status_quo"
        kinds = [g for g in generators[len(fixed) :]] or ["manual"]
        new = NewTrial(
            arms=arms,
            generator=max(set(kinds), key=kinds.count),
            state=TrialState.RUNNING if start else TrialState.CANDIDATE,
            lease_expires_at=(
                datetime.now(UTC) + timedelta(seconds=lease_seconds)
                if lease_seconds and start
                else None
            ),
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
        with self.store.lock_experiment(experiment_id) as lock:
            exp = lock.experiment
            if exp.status is not ExperimentStatus.ACTIVE:
                return []
            n = target_pending - reserve - sum(1 for t in exp.trials if t.state.is_pending)
            remaining = self.remaining_budget(exp)
            if remaining is not None:
                n = min(n, remaining - reserve)
            if n <= 0:
                return []
            return self._generate(lock, min(n, MAX_ASK), False, None, None, actor)

    @staticmethod
    def budget(exp: Experiment) -> int | None:
        """The trial budget: the job spec's ``max_trials`` or else the experiment's
        (:attr:`~assay.platform.experiment.ExperimentConfig.trial_budget`)."""
        return exp.config.trial_budget

    @classmethod
    def remaining_budget(cls, exp: Experiment) -> int | None:
        return exp.remaining_budget()

    @classmethod
    def _within_budget(cls, exp: Experiment, n: int) -> int:
        remaining = cls.remaining_budget(exp)
        if remaining is None:
            return n
        if remaining == 0:
            raise ConflictError(
                f"experiment {exp.id} has used its budget of {cls.budget(exp)} trials",
                details={"max_trials": cls.budget(exp)},
            )
        return min(n, remaining)

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
        with self.store.lock_experiment(experiment_id, project=project) as lock:
            exp = lock.experiment
            params = exp.search_space.validate(parameters)
            index = len(exp.trials)
            spec = NewTrial(
                arms=name_arms(exp, index, [params]),
                generator=generator,
                state=TrialState.RUNNING if start else TrialState.CANDIDATE,
                metadata=dict(metadata or {}),
            )
            return lock.add_trials([spec], actor=actor or self.actor)[0]

    # -- trial life cycle --------------------------------------------------------------------
    def get_trial(self, trial_id: int, *, project: str | None = None) -> Trial:
        return self.store.get_trial(trial_id, project=project)

    def list_trials(self, experiment_id: int, **kwargs: Any) -> list[Trial]:
        return self.store.list_trials(experiment_id, **kwargs)

    def _validate_observations(
        self, trial: Trial, raw: Mapping[str, Any], *, batch: bool
    ) -> dict[str, dict[str, Observation]]:
        config = self._config(trial.experiment_id)
        if not batch:
            if len(trial.arms) != 1:
                raise ObservationError(
                    f"trial {trial.id} has {len(trial.arms)} arms; use tell_batch with "
                    "{arm_name: {metric: value}}",
                    field="observations",
                )
            return {trial.arms[0].name: config.parse_observations(raw)}
        if not isinstance(raw, Mapping) or not raw:
            raise ObservationError(
                "observations must be {arm_name: {metric: value}}", field="observations"
            )
        names = {a.name for a in trial.arms}
        out = {}
        for arm_name, obs in raw.items():
            if arm_name not in names:
                raise ObservationError(
                    f"trial {trial.id} has no arm {arm_name!r}; its arms are {sorted(names)}",
                    field=f"observations.{arm_name}",
                )
            try:
                out[arm_name] = config.parse_observations(obs)
            except ObservationError as e:  # name the arm too: observations.<arm>.<metric>
                field = (e.field or "observations").replace(
                    "observations", f"observations.{arm_name}", 1
                )
                raise ObservationError(f"arm {arm_name!r}: {e.message}", field=field) from e
        self._check_batch_against_control(trial, config, out)
        return out

    @staticmethod
    def _check_batch_against_control(
        trial: Trial, config: ExperimentConfig, out: Mapping[str, Mapping[str, Observation]]
    ) -> None:
        """A batch with the control arm is analysed against it: the control must report every
        metric any arm reports, and (when the model relativizes) the objective and constrained
        metrics need their SEMs — the delta-method intervals are built from them."""
        if config.status_quo is None or len(trial.arms) < 2:
            return
        sig = SearchSpace.signature(config.status_quo)
        control = next(
            (a.name for a in trial.arms if SearchSpace.signature(a.parameters) == sig), None
        )
        if control is None:
            return
        reported = {m for arm, obs in out.items() if arm != control for m in obs}
        have = set(out.get(control, {}))
        if reported and not have:
            raise ObservationError(
                f"batch trial {trial.id} lacks data for its control arm {control!r}: effects "
                "are measured against the control of the same batch",
                field=f"observations.{control}",
            )
        missing = sorted(reported - have)
        if missing:
            raise ObservationError(
                f"batch trial {trial.id}: the control arm {control!r} has no {missing[0]!r}, "
                "which other arms report",
                field=f"observations.{control}.{missing[0]}",
            )
        if not config.generator_settings.get("relativize", True):
            return
        modelled = set(config.modelled_metrics)
        for arm, obs in out.items():
            for m, o in obs.items():
                if m in modelled and o.sem is None:
                    raise ObservationError(
                        f"batch trial {trial.id}: {arm!r} reports {m!r} without a standard "
                        "error; relative effects against the control need (mean, sem[, n])",
                        field=f"observations.{arm}.{m}.sem",
                    )

    def tell(
        self,
        trial_id: int,
        observations: Mapping[str, Any],
        *,
        project: str | None = None,
        actor: str | None = None,
    ) -> Trial:
        """Complete a single-arm trial with ``{metric: value}`` (see ``Observation.parse``).

        Raises ``ObservationError`` (unknown metric, non-finite value, negative SEM) or
        ``InvalidTransitionError`` (already told/failed); nothing is stored then.
        """
        return self._complete(trial_id, observations, False, project, actor)

    def tell_batch(
        self,
        trial_id: int,
        observations: Mapping[str, Mapping[str, Any]],
        *,
        project: str | None = None,
        actor: str | None = None,
    ) -> Trial:
        """Complete a (batch) trial with ``{arm_name: {metric: value}}``."""
        return self._complete(trial_id, observations, True, project, actor)

    def _complete(
        self,
        trial_id: int,
        raw: Mapping[str, Any],
        batch: bool,
        project: str | None,
        actor: str | None,
    ) -> Trial:
        # Validation runs inside the store's transaction on the trial as stored, so the check
        # and the write see the same state; a rejected tell writes nothing.
        return self.store.transition_trial(
            trial_id,
            TrialState.COMPLETED,
            project=project,
            observations=lambda trial: self._validate_observations(trial, raw, batch=batch),
            actor=actor or self.actor,
        )

    def start(
        self,
        trial_id: int,
        *,
        project: str | None = None,
        lease_seconds: float | None = None,
        actor: str | None = None,
    ) -> Trial:
        """Mark a candidate trial running (a compare-and-set claim)."""
        lease = datetime.now(UTC) + timedelta(seconds=lease_seconds) if lease_seconds else None
        return self.store.transition_trial(
            trial_id,
            TrialState.RUNNING,
            project=project,
            lease_expires_at=lease,
            actor=actor or self.actor,
            expected_states=[TrialState.CANDIDATE],
        )

    def fail(
        self,
        trial_id: int,
        reason: str | None = None,
        *,
        project: str | None = None,
        actor: str | None = None,
    ) -> Trial:
        """Mark a trial failed (its parameters stay known, so they are not proposed again)."""
        return self._end(trial_id, TrialState.FAILED, reason, project, actor)

    def abandon(
        self,
        trial_id: int,
        reason: str | None = None,
        *,
        project: str | None = None,
        actor: str | None = None,
    ) -> Trial:
        """Mark a trial abandoned (never evaluated; its arm may be proposed again)."""
        return self._end(trial_id, TrialState.ABANDONED, reason, project, actor)

    def early_stop(
        self,
        trial_id: int,
        reason: str | None = None,
        *,
        project: str | None = None,
        actor: str | None = None,
    ) -> Trial:
        return self._end(trial_id, TrialState.EARLY_STOPPED, reason, project, actor)

    def _end(
        self,
        trial_id: int,
        state: TrialState,
        reason: str | None,
        project: str | None,
        actor: str | None,
    ) -> Trial:
        if reason is not None and (not isinstance(reason, str) or len(reason) > 10_000):
            raise ValidationError("reason must be a string of at most 10000 chars", field="reason")
        return self.store.transition_trial(
            trial_id, state, project=project, reason=reason, actor=actor or self.actor
        )

    def heartbeat(
        self, trial_id: int, lease_seconds: float = 60.0, *, project: str | None = None
    ) -> Trial:
        if not 0 < lease_seconds <= 7 * 86400:
            raise ValidationError("lease_seconds must be in (0, 604800]", field="lease_seconds")
        return self.store.heartbeat(
            trial_id, datetime.now(UTC) + timedelta(seconds=lease_seconds), project=project
        )

    def events(
        self,
        *,
        experiment_id: int | None = None,
        trial_id: int | None = None,
        after: int = 0,
        project: str | None = None,
    ) -> list[TrialEvent]:
        """Audit events in order (``id > after``), checking visibility when a project is given."""
        if project is not None and experiment_id is not None:
            self.store.count_trials(experiment_id, project=project)  # NotFoundError if hidden
        if project is not None and trial_id is not None:
            self.store.get_trial(trial_id, project=project)
        return self.store.list_events(experiment_id=experiment_id, trial_id=trial_id, after=after)

    # -- jobs (runs) ------------------------------------------------------------------------
    def set_run(self, experiment_id: int, action: str, *, project: str | None = None) -> str:
        """``start`` / ``resume`` (run state ``running``) or ``pause``; returns the new state.

        Resuming a ``failing`` experiment makes it active again (after you fixed the job).
        """
        exp_config = self.store.get_experiment_config(experiment_id, project=project)
        if exp_config.job is None:
            raise ConflictError(
                f"experiment {experiment_id} has no job spec; create it with 'job' to run trials "
                "as jobs",
                field="job",
            )
        if action in ("start", "resume"):
            exp = self.store.get_experiment(experiment_id, project=project)
            if exp.status is ExperimentStatus.FAILING:
                self.store.set_experiment_status(experiment_id, ExperimentStatus.ACTIVE)
            elif exp.status is not ExperimentStatus.ACTIVE:
                raise ConflictError(
                    f"experiment {experiment_id} is {exp.status.value}; make it active first",
                    details={"status": exp.status.value},
                )
            state = "running"
        elif action == "pause":
            state = "paused"
        else:
            raise ValidationError(f"unknown run action {action!r}", field="action")
        self.store.set_run_state(experiment_id, state, project=project)
        return state

    def jobs(self, experiment_id: int, *, project: str | None = None) -> list[Job]:
        self.store.get_experiment_config(experiment_id, project=project)
        return self.store.list_jobs(experiment_id=experiment_id)

    def reports(self, trial_id: int, *, project: str | None = None) -> list[TrialReport]:
        return self.store.list_reports(trial_id, project=project)

    def cancel_trial(self, trial_id: int, *, project: str | None = None) -> Job | None:
        """Ask the worker running the trial's job to kill it (the trial becomes abandoned).
        A trial without a job yet is abandoned directly."""
        job = self.store.job_for_trial(trial_id, project=project)
        if job is not None and job.state.is_active:
            return self.store.update_job(job.id, cancel_requested=True)
        trial = self.store.get_trial(trial_id, project=project)
        if trial.state.is_terminal:
            raise InvalidTransitionError(
                f"trial {trial_id} is {trial.state.value}; there is nothing to cancel",
                details={"trial_id": trial_id, "state": trial.state.value},
            )
        self.abandon(trial_id, "cancelled by request", project=project)
        return job

    def report(
        self,
        trial_id: int,
        step: int | None,
        metrics: Mapping[str, Any],
        *,
        project: str | None = None,
    ) -> TrialReport:
        """Store an intermediate report of a running trial (a learning-curve point)."""
        from assay.service.reporting import _clean

        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
            raise ValidationError("step must be a non-negative integer", field="step")
        if not isinstance(metrics, Mapping) or not metrics:
            raise ValidationError("metrics must be a non-empty object", field="metrics")
        clean = _clean(dict(metrics))
        trial = self.store.get_trial(trial_id, project=project)
        if trial.state is not TrialState.RUNNING:
            raise InvalidTransitionError(
                f"trial {trial_id} is {trial.state.value}; only running trials take reports",
                details={"trial_id": trial_id, "state": trial.state.value},
            )
        return self.store.add_report(trial_id, step, clean)

    # -- analysis ----------------------------------------------------------------------------
    def effects(self, experiment_id: int, *, project: str | None = None) -> EffectsReport:
        """Each arm's % effects against the control (see
        :func:`assay.platform.analysis.arm_effects`)."""
        return arm_effects(self.store.get_experiment(experiment_id, project=project))

    def best(self, experiment_id: int, *, project: str | None = None) -> BestArm:
        """The model-based recommendation (see :func:`assay.platform.analysis.best_arm`)."""
        return best_arm(self.store.get_experiment(experiment_id, project=project))
