"""``/experiments``: create, list, get, update; ask, ask_batch; attach; trials, observations,
events, effects, best."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from assay.platform.experiment import ExperimentStatus, TrialState
from assay.service.deps import EngineDep, EventCursor, ExperimentId, PrincipalDep
from assay.service.schemas import (
    AskBatchRequest,
    AskRequest,
    AskResponse,
    AttachRequest,
    BestArmPublic,
    EffectsPublic,
    EventList,
    EventPublic,
    ExperimentCreate,
    ExperimentList,
    ExperimentPublic,
    ExperimentSummaryPublic,
    ExperimentUpdate,
    ExperimentVersionList,
    ExperimentVersionPublic,
    ObservationList,
    ObservationRowPublic,
    TrialList,
    TrialPublic,
)

router = APIRouter(prefix="/experiments", tags=["experiments"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ExperimentPublic)
def create_experiment(body: ExperimentCreate, engine: EngineDep, who: PrincipalDep):
    """Create an experiment. Definitions are validated in full before anything is stored."""
    exp = engine.create_experiment(body.to_spec(), project=who.write_project)
    return ExperimentPublic.from_domain(exp)


@router.get("", response_model=ExperimentList)
def list_experiments(engine: EngineDep, who: PrincipalDep, status: ExperimentStatus | None = None):
    rows = engine.list_experiments(project=who.project, status=status)
    return ExperimentList(experiments=[ExperimentSummaryPublic.from_domain(r) for r in rows])


@router.get("/{experiment_id}", response_model=ExperimentPublic)
def get_experiment(experiment_id: ExperimentId, engine: EngineDep, who: PrincipalDep):
    return ExperimentPublic.from_domain(engine.get_experiment(experiment_id, project=who.project))


@router.patch("/{experiment_id}", response_model=ExperimentPublic)
def update_experiment(
    experiment_id: ExperimentId, body: ExperimentUpdate, engine: EngineDep, who: PrincipalDep
):
    """Change status (``active``, ``paused``, ``completed``, ``archived``) and/or the
    definition: ``bounds`` ``{param: [lower, upper]}``, ``add_values`` ``{param: [...]}``,
    ``outcome_constraints`` (the new list), ``generator``, ``generator_settings``, with a
    ``reason``. Each definition change is a new version (``GET .../versions``); past trials
    keep theirs; trials outside a narrowed space inform the model but are never proposed or
    recommended. Validated in full before anything is stored."""
    changes = body.definition_changes()
    if changes:
        engine.update_experiment(
            experiment_id, changes, project=who.project, reason=body.reason, actor=who.actor
        )
    if body.status is not None:
        exp = engine.set_status(experiment_id, body.status, project=who.project)
    else:
        exp = engine.get_experiment(experiment_id, project=who.project)
    return ExperimentPublic.from_domain(exp)


@router.get("/{experiment_id}/versions", response_model=ExperimentVersionList)
def experiment_versions(experiment_id: ExperimentId, engine: EngineDep, who: PrincipalDep):
    """The definition's versions, oldest first: what changed, who, why, and
    ``trial_count`` (trials from that index on were generated under it)."""
    rows = engine.experiment_versions(experiment_id, project=who.project)
    return ExperimentVersionList(versions=[ExperimentVersionPublic(**v.to_dict()) for v in rows])


@router.post("/{experiment_id}/trials:ask", response_model=AskResponse)
def ask(experiment_id: ExperimentId, body: AskRequest, engine: EngineDep, who: PrincipalDep):
    """Generate ``n`` new trials (noisy-constrained EI by default). Safe to retry with an
    ``idempotency_key``."""
    trials = engine.ask(
        experiment_id, body.n, project=who.project, idempotency_key=body.idempotency_key,
        start=body.start, lease_seconds=body.lease_seconds, fixed=body.fixed, actor=who.actor,
    )  # fmt: skip
    return AskResponse(trials=[TrialPublic.from_domain(t) for t in trials])


@router.post(
    "/{experiment_id}/trials:ask_batch",
    status_code=status.HTTP_201_CREATED,
    response_model=TrialPublic,
)
def ask_batch(
    experiment_id: ExperimentId, body: AskBatchRequest, engine: EngineDep, who: PrincipalDep
):
    """One batch trial of ``n_arms`` arms deployed together (an A/B-test round): the control
    arm first, then ``include``d arms, then new arms from batch noisy-constrained EI. Safe to
    retry with an ``idempotency_key``. Complete it with ``POST /trials/{id}:complete`` and
    ``{"arms": {arm_name: {metric: [mean, sem, n]}}}``."""
    t = engine.ask_batch(
        experiment_id, body.n_arms, include=body.include, project=who.project,
        idempotency_key=body.idempotency_key, start=body.start,
        lease_seconds=body.lease_seconds, actor=who.actor,
    )  # fmt: skip
    return TrialPublic.from_domain(t)


@router.post(
    "/{experiment_id}/trials", status_code=status.HTTP_201_CREATED, response_model=TrialPublic
)
def attach_trial(
    experiment_id: ExperimentId, body: AttachRequest, engine: EngineDep, who: PrincipalDep
):
    """Add a trial with your own parameters (e.g. a baseline)."""
    t = engine.attach_trial(
        experiment_id, body.parameters, project=who.project, start=body.start, actor=who.actor
    )
    return TrialPublic.from_domain(t)


@router.get("/{experiment_id}/trials", response_model=TrialList)
def list_trials(
    experiment_id: ExperimentId,
    engine: EngineDep,
    who: PrincipalDep,
    state: Annotated[list[TrialState] | None, Query()] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
):
    """Trials by index, filtered by ``state`` (repeatable), paginated."""
    trials = engine.store.list_trials(
        experiment_id, project=who.project, states=state, offset=offset, limit=limit
    )
    total = engine.store.count_trials(experiment_id, project=who.project, states=state)
    return TrialList(
        trials=[TrialPublic.from_domain(t) for t in trials], total=total, offset=offset, limit=limit
    )


@router.get("/{experiment_id}/observations", response_model=ObservationList)
def list_observations(experiment_id: ExperimentId, engine: EngineDep, who: PrincipalDep):
    exp = engine.get_experiment(experiment_id, project=who.project)
    rows = [
        ObservationRowPublic(
            trial_id=t.id, trial_index=t.index, arm=arm, metric=o.metric, mean=o.mean, sem=o.sem,
            n=o.n,
        )
        for t in exp.trials
        for arm, obs in t.observations.items()
        for o in obs.values()
    ]  # fmt: skip
    return ObservationList(observations=rows)


@router.get("/{experiment_id}/events", response_model=EventList)
def list_events(
    experiment_id: ExperimentId,
    engine: EngineDep,
    who: PrincipalDep,
    after: EventCursor = 0,
):
    """The audit trail in order; poll with ``after`` = the last id you saw."""
    engine.get_experiment(experiment_id, project=who.project)
    events = engine.events(experiment_id=experiment_id, after=after)
    return EventList(events=[EventPublic.from_domain(e) for e in events])


@router.get("/{experiment_id}/effects", response_model=EffectsPublic)
def effects(experiment_id: ExperimentId, engine: EngineDep, who: PrincipalDep):
    """Each arm's % effect against the control of its batches (delta-method 95% CIs), pooled
    over batches, with the model's estimates, P(each constraint), P(feasible) and P(best).
    Needs a control arm (``status_quo``): 400 otherwise."""
    return EffectsPublic.from_domain(engine.effects(experiment_id, project=who.project))


@router.get("/{experiment_id}/best", response_model=BestArmPublic)
def best(experiment_id: ExperimentId, engine: EngineDep, who: PrincipalDep):
    """The model's recommended arm: best posterior mean among arms feasible with high
    probability, with 95% credible intervals."""
    return BestArmPublic.from_domain(engine.best(experiment_id, project=who.project))
