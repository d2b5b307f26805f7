"""``/experiments``: create, list, get, update; ask, ask_batch; attach; trials, observations,
events, effects, best."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from assay.platform.analysis import arm_effects
from assay.platform.experiment import ExperimentStatus, TrialState
from assay.platform.pareto_report import recommend
from assay.service.deps import (
    EngineDep,
    EventCursor,
    ExperimentId,
    PageLimit,
    PageOffset,
    PrincipalDep,
    check_job_spec_allowed,
)
from assay.service.limits import GENERATOR_CAPS, check_generator_settings, data_version
from assay.service.schemas import (
    AskBatchRequest,
    AskRequest,
    AskResponse,
    AttachRequest,
    BestArmPublic,
    CurvePublic,
    CurvesPublic,
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
    ParetoPublic,
    StoppingPublic,
    TrialList,
    TrialPublic,
)

router = APIRouter(prefix="/experiments", tags=["experiments"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ExperimentPublic)
def create_experiment(
    body: ExperimentCreate, engine: EngineDep, who: PrincipalDep, request: Request
):
    """Create an experiment. Definitions are validated in full before anything is stored.
    A ``job`` spec is code this server will run: outside the server's allowlist it is 403
    (see the README's Security section)."""
    spec = body.to_spec()
    settings = request.app.state.settings
    check_generator_settings(spec.get("generator_settings") or {},
                             {**GENERATOR_CAPS, **settings.generator_caps})  # fmt: skip
    check_job_spec_allowed(request, who, spec.get("job"))
    exp = engine.create_experiment(spec, project=who.write_project)
    return ExperimentPublic.from_domain(exp)


@router.get("", response_model=ExperimentList)
def list_experiments(
    engine: EngineDep,
    who: PrincipalDep,
    status: ExperimentStatus | None = None,
    offset: PageOffset = 0,
    limit: PageLimit = 1000,
):
    """Experiments, paginated (``offset``, ``limit`` <= 1000; ``total`` counts all)."""
    rows = engine.list_experiments(project=who.project, status=status)
    return ExperimentList(
        experiments=[ExperimentSummaryPublic.from_domain(r) for r in rows[offset : offset + limit]],
        total=len(rows), offset=offset, limit=limit,
    )  # fmt: skip


@router.get("/{experiment_id}", response_model=ExperimentPublic)
def get_experiment(experiment_id: ExperimentId, engine: EngineDep, who: PrincipalDep):
    return ExperimentPublic.from_domain(engine.get_experiment(experiment_id, project=who.project))


@router.patch("/{experiment_id}", response_model=ExperimentPublic)
def update_experiment(
    experiment_id: ExperimentId, body: ExperimentUpdate, engine: EngineDep, who: PrincipalDep
):
    """Change status (``active``, ``paused``, ``completed``, ``archived``; ``reason`` says why,
    kept with the status as ``status_reason``, cut at 2000 characters) and/or the
    definition: ``bounds`` ``{param: [lower, upper]}``, ``add_values`` / ``remove_values``
    ``{param: [...]}``, ``add_parameters`` ``[{<parameter spec>, "default": value}]`` (past trials are read with
    the default), ``outcome_constraints`` (the new list), ``generator``, ``generator_settings``, with a
    ``reason``. Each definition change is a new version (``GET .../versions``); past trials
    keep theirs; trials outside a narrowed space inform the model but are never proposed or
    recommended. Validated in full before anything is stored."""
    changes = body.definition_changes()
    if changes:
        engine.update_experiment(
            experiment_id, changes, project=who.project, reason=body.reason, actor=who.actor
        )
    if body.status is not None:
        exp = engine.set_status(
            experiment_id, body.status, project=who.project, reason=body.reason, actor=who.actor
        )
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
def ask(
    experiment_id: ExperimentId,
    body: AskRequest,
    engine: EngineDep,
    who: PrincipalDep,
    request: Request,
):
    """Generate ``n`` new trials (noisy-constrained EI by default). Safe to retry with an
    ``idempotency_key``."""
    trials = request.app.state.model_work.run(
        lambda: engine.ask(
            experiment_id,
            body.n,
            project=who.project,
            idempotency_key=body.idempotency_key,
            start=body.start,
            lease_seconds=body.lease_seconds,
            fixed=body.fixed,
            actor=who.actor,
        )
    )
    return AskResponse(trials=[TrialPublic.from_domain(t) for t in trials])


@router.post(
    "/{experiment_id}/trials:ask_batch",
    status_code=status.HTTP_201_CREATED,
    response_model=TrialPublic,
)
def ask_batch(
    experiment_id: ExperimentId,
    body: AskBatchRequest,
    engine: EngineDep,
    who: PrincipalDep,
    request: Request,
):
    """One batch trial of ``n_arms`` arms deployed together (an A/B-test round): the control
    arm first, then ``include``d arms, then new arms from batch noisy-constrained EI. Safe to
    retry with an ``idempotency_key``. Complete it with ``POST /trials/{id}:complete`` and
    ``{"arms": {arm_name: {metric: [mean, sem, n]}}}``."""
    t = request.app.state.model_work.run(
        lambda: engine.ask_batch(
            experiment_id,
            body.n_arms,
            include=body.include,
            project=who.project,
            idempotency_key=body.idempotency_key,
            start=body.start,
            lease_seconds=body.lease_seconds,
            actor=who.actor,
        )
    )
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
def list_observations(
    experiment_id: ExperimentId,
    engine: EngineDep,
    who: PrincipalDep,
    offset: PageOffset = 0,
    limit: PageLimit = 1000,
):
    """Observation rows (trial, arm, metric), paginated."""
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
    return ObservationList(
        observations=rows[offset : offset + limit], total=len(rows), offset=offset, limit=limit
    )


@router.get("/{experiment_id}/events", response_model=EventList)
def list_events(
    experiment_id: ExperimentId,
    engine: EngineDep,
    who: PrincipalDep,
    after: EventCursor = 0,
    limit: PageLimit = 1000,
):
    """The audit trail in order; page and poll with ``after`` = the last id you saw (a full
    page of ``limit`` events means more may follow)."""
    engine.get_experiment(experiment_id, project=who.project)
    events = engine.events(experiment_id=experiment_id, after=after)[:limit]
    return EventList(events=[EventPublic.from_domain(e) for e in events], limit=limit)


@router.get("/{experiment_id}/effects", response_model=EffectsPublic)
def effects(experiment_id: ExperimentId, engine: EngineDep, who: PrincipalDep, request: Request):
    """Each arm's % effect against the control of its batches (delta-method 95% CIs), pooled
    over batches, with the model's estimates, P(each constraint), P(feasible) and P(best).
    Needs a control arm (``status_quo``): 400 otherwise. Cached per data version."""
    return _analysis(request, engine, who, experiment_id, "effects", arm_effects,
                     EffectsPublic.from_domain)  # fmt: skip


@router.get("/{experiment_id}/pareto", response_model=ParetoPublic)
def pareto(experiment_id: ExperimentId, engine: EngineDep, who: PrincipalDep):
    """Several objectives: the model's Pareto front among the observed arms (posterior means
    with 95% intervals, P(on the front), P(feasible)), the raw observed front, the hypervolume
    of both against the reference point, and the hypervolume per trial. 422 for an experiment
    with one objective (see ``/best``); 404 before any arm has every objective observed."""
    return ParetoPublic.from_domain(engine.pareto(experiment_id, project=who.project))


@router.get("/{experiment_id}/best", response_model=BestArmPublic)
def best(experiment_id: ExperimentId, engine: EngineDep, who: PrincipalDep, request: Request):
    """The model's recommended arm: best posterior mean among arms feasible with high
    probability, with 95% credible intervals; with several objectives, the Pareto front.
    Cached per data version."""
    return _analysis(request, engine, who, experiment_id, "best", recommend,
                     BestArmPublic.from_domain)  # fmt: skip


def _analysis(request, engine, who, experiment_id, kind, analyse, public):  # type: ignore[no-untyped-def]
    """``public(analyse(experiment))`` in the server's model pool, cached per (experiment,
    data version): the same data never refits; a failure (400/422) is not cached."""
    exp = engine.get_experiment(experiment_id, project=who.project)
    key = (kind, experiment_id, data_version(exp))
    return request.app.state.model_work.cached(key, lambda: public(analyse(exp)))


@router.get("/{experiment_id}/stopping", response_model=StoppingPublic)
def stopping(experiment_id: ExperimentId, engine: EngineDep, who: PrincipalDep):
    """Is the experiment done? The ``stopping`` rule's recommendation (``improvement``: the
    best feasible value has not improved by more than the noise over the last trials;
    ``model``: no point is likely to improve on the recommended arm by the margin) with its
    figures; without a rule, ``rule="none"`` and the improvement rule's advice."""
    return StoppingPublic.from_domain(engine.stopping(experiment_id, project=who.project))


@router.get("/{experiment_id}/curves", response_model=CurvesPublic)
def curves(experiment_id: ExperimentId, engine: EngineDep, who: PrincipalDep):
    """Every trial's learning curve (its reports) and the early-stopping rule's line."""
    data = engine.curves(experiment_id, project=who.project)
    return CurvesPublic(
        metric=data["metric"],
        curves=[CurvePublic.from_domain(c) for c in data["curves"]],
        rule_line=data["rule_line"],
    )
