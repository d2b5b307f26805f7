"""``/trials/{id}``: get, complete, fail, abandon, start, early-stop, heartbeat, events."""

from __future__ import annotations

from fastapi import APIRouter

from assay.platform.errors import NotFoundError, ObservationError
from assay.service.deps import (
    EngineDep,
    EventCursor,
    JobPrincipalDep,
    PageLimit,
    PrincipalDep,
    TrialId,
)
from assay.service.schemas import (
    CompleteRequest,
    EventList,
    EventPublic,
    HeartbeatRequest,
    ReasonRequest,
    StartRequest,
    StopDecisionPublic,
    TrialPublic,
    observation_value,
)

router = APIRouter(prefix="/trials", tags=["trials"])


@router.get("/{trial_id}", response_model=TrialPublic)
def get_trial(trial_id: TrialId, engine: EngineDep, who: PrincipalDep):
    return TrialPublic.from_domain(engine.get_trial(trial_id, project=who.project))


@router.post("/{trial_id}:complete", response_model=TrialPublic)
def complete(trial_id: TrialId, body: CompleteRequest, engine: EngineDep, who: PrincipalDep):
    """Store the trial's observations and mark it completed (once)."""
    if (body.observations is None) == (body.arms is None):
        raise ObservationError(
            "give exactly one of 'observations' (single-arm trial) or 'arms' (batch trial)",
            field="observations",
        )
    if body.observations is not None:
        obs = {m: observation_value(v) for m, v in body.observations.items()}
        t = engine.tell(trial_id, obs, project=who.project, actor=who.actor)
    else:
        arms = {
            a: {m: observation_value(v) for m, v in obs.items()}
            for a, obs in (body.arms or {}).items()
        }
        t = engine.tell_batch(trial_id, arms, project=who.project, actor=who.actor)
    return TrialPublic.from_domain(t)


@router.post("/{trial_id}:fail", response_model=TrialPublic)
def fail(trial_id: TrialId, body: ReasonRequest, engine: EngineDep, who: PrincipalDep):
    return TrialPublic.from_domain(
        engine.fail(trial_id, body.reason, project=who.project, actor=who.actor)
    )


@router.post("/{trial_id}:abandon", response_model=TrialPublic)
def abandon(trial_id: TrialId, body: ReasonRequest, engine: EngineDep, who: PrincipalDep):
    return TrialPublic.from_domain(
        engine.abandon(trial_id, body.reason, project=who.project, actor=who.actor)
    )


@router.post("/{trial_id}:early_stop", response_model=TrialPublic)
def early_stop(trial_id: TrialId, body: ReasonRequest, engine: EngineDep, who: PrincipalDep):
    return TrialPublic.from_domain(
        engine.early_stop(trial_id, body.reason, project=who.project, actor=who.actor)
    )


@router.get("/{trial_id}/should_stop", response_model=StopDecisionPublic)
def should_stop(trial_id: TrialId, engine: EngineDep, who: PrincipalDep):
    """Whether the experiment's early-stopping rule would stop this running trial now, with
    the reasoning and the numbers (a loop that runs its own trials asks this after each
    report, then calls ``:early_stop``)."""
    return StopDecisionPublic.from_domain(engine.should_stop(trial_id, project=who.project))


@router.post("/{trial_id}:start", response_model=TrialPublic)
def start(trial_id: TrialId, body: StartRequest, engine: EngineDep, who: PrincipalDep):
    """Claim a candidate trial (compare-and-set to running)."""
    return TrialPublic.from_domain(
        engine.start(
            trial_id, project=who.project, lease_seconds=body.lease_seconds, actor=who.actor
        )
    )


@router.post("/{trial_id}:heartbeat", response_model=TrialPublic)
def heartbeat(trial_id: TrialId, body: HeartbeatRequest, engine: EngineDep, who: JobPrincipalDep):
    """Extend a running trial's lease by ``lease_seconds`` from now (a job's scoped token may
    heartbeat its own trial)."""
    if who.trial_scope is not None and who.trial_scope != trial_id:
        raise NotFoundError(f"trial {trial_id} not found", details={"trial_id": trial_id})
    return TrialPublic.from_domain(
        engine.heartbeat(trial_id, body.lease_seconds, project=who.project)
    )


@router.get("/{trial_id}/events", response_model=EventList)
def trial_events(
    trial_id: TrialId,
    engine: EngineDep,
    who: PrincipalDep,
    after: EventCursor = 0,
    limit: PageLimit = 1000,
):
    """The trial's audit trail in order; page with ``after`` = the last id you saw."""
    engine.get_trial(trial_id, project=who.project)
    events = engine.events(trial_id=trial_id, after=after)[:limit]
    return EventList(events=[EventPublic.from_domain(e) for e in events], limit=limit)
