"""The client's HTTP backend: the experiment verbs (:class:`~assay.service.verbs.ExperimentVerbs`)
over the REST API (httpx).

Retries are safe by construction: reads are idempotent; an ask always carries an idempotency
key (generated when the caller gives none), so a retried ask returns the trials the server
already created; a retried tell/fail that finds the trial already in the requested state with
the same observations counts as success. Server errors come back as the same typed
exceptions the in-process client raises.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from assay.platform import errors as E
from assay.platform.analysis import BestArm, EffectsReport
from assay.platform.early_stopping import StopDecision
from assay.platform.experiment import (
    Experiment,
    ExperimentConfig,
    ExperimentStatus,
    Observation,
    Trial,
    TrialState,
)
from assay.platform.jobspec import Job, JobState, TrialReport
from assay.platform.pareto_report import ParetoReport
from assay.platform.stopping import StoppingDecision
from assay.service.errors import error_from_body
from assay.service.interchange import ImportReport, ImportResult
from assay.service.schemas import (
    BestArmPublic,
    EffectsPublic,
    EventPublic,
    ExperimentPublic,
    ExperimentSummaryPublic,
    JobPublic,
    ParetoPublic,
    StopDecisionPublic,
    StoppingPublic,
    TrialPublic,
)
from assay.storage.base import ExperimentSummary, ExperimentVersion, ProjectSummary, TrialEvent
from assay.storage.webhooks import Delivery, Webhook

#: Rows per page when the client pages through a list (the server's maximum).
PAGE = 1000


class ServiceUnavailableError(E.StorageError):
    """The server could not be reached (after retries)."""

    code = "service_unavailable"


def decode_error(response: httpx.Response) -> E.AssayError:
    """The typed error an error answer stands for (:func:`.errors.error_from_body`)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    return error_from_body(response.status_code, body, response.text)


def _json_value(v: Any) -> Any:
    if isinstance(v, Observation):
        return {"mean": v.mean, "sem": v.sem, "n": v.n}
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, float) and not math.isfinite(v):
        # JSON has no NaN/inf: send a string so the server rejects it with a clear message.
        return str(v)
    return v


class RemoteEngine:
    """The experiment verbs (:class:`~assay.service.verbs.ExperimentVerbs`) against
    ``base_url`` (e.g. ``http://127.0.0.1:8000``).

    Args:
        base_url: The server's root URL.
        token: API key (``Authorization: Bearer``); optional in local no-auth mode.
        timeout: Seconds per request.
        retries: Attempts for retry-safe requests on connection errors and 502/503/504.
    """

    def __init__(
        self, base_url: str, token: str | None = None, *, timeout: float = 120.0, retries: int = 5
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + "/api/v1", headers=headers, timeout=timeout
        )
        self.retries = retries
        self.last_attempts = 0

    def close(self) -> None:
        self._http.close()

    # -- transport ---------------------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        retry: bool = True,
    ) -> tuple[Any, int]:
        """Returns ``(json, attempts)``; raises the typed error for 4xx/5xx answers."""
        delay = 0.1
        attempts = self.retries if retry else 1
        for attempt in range(1, attempts + 1):
            self.last_attempts = attempt
            try:
                r = self._http.request(method, path, json=json, params=params)
            except httpx.TransportError as e:
                if attempt == attempts:
                    raise ServiceUnavailableError(f"cannot reach the Assay server: {e}") from e
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if r.status_code in (502, 503, 504) and attempt < attempts:
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if r.status_code >= 400:
                raise decode_error(r)
            return r.json(), attempt
        raise AssertionError("unreachable")

    def _get(self, path: str, **params: Any) -> Any:
        return self._request(
            "GET", path, params={k: v for k, v in params.items() if v is not None}
        )[0]

    def _all_pages(self, path: str, key: str, *, cursor: bool = False, **params: Any) -> list:
        """Every row of a paginated list: by ``offset``, or (``cursor``) by ``after`` = the
        last row's id; a short page is the last."""
        rows: list = []
        while True:
            page = (
                {"after": rows[-1]["id"] if rows else params.pop("after", 0)}
                if cursor
                else {"offset": len(rows)}
            )
            got = self._get(path, **params, **page, limit=PAGE)[key]
            rows.extend(got)
            if len(got) < PAGE:
                return rows

    # -- experiments -------------------------------------------------------------------------
    def create_experiment(
        self, spec: ExperimentConfig | Mapping[str, Any], *, project: str = "default"
    ) -> Experiment:
        body = spec.to_dict() if isinstance(spec, ExperimentConfig) else dict(spec)
        body = {k: v for k, v in body.items() if v is not None}
        objectives = body.get("objectives")
        if isinstance(objectives, list) and len(objectives) == 1 and "objective" not in body:
            body["objective"] = body.pop("objectives")[0]
        try:
            data, _ = self._request("POST", "/experiments", json=body)
        except E.ConflictError as e:
            # A retried create whose first attempt succeeded: return that experiment.
            existing = e.details.get("experiment_id")
            if existing is None or self.last_attempts == 1:
                raise
            exp = self.get_experiment(int(existing))
            if (
                exp.config.to_dict()
                != ExperimentConfig.from_dict({**body, "seed": exp.config.seed}).to_dict()
            ):
                raise
            return exp
        return ExperimentPublic.model_validate(data).to_domain()

    def get_experiment(self, experiment_id: int, *, project: str | None = None) -> Experiment:
        exp = ExperimentPublic.model_validate(
            self._get(f"/experiments/{experiment_id}")
        ).to_domain()
        exp.trials = self.list_trials(experiment_id)
        return exp

    def list_experiments(
        self, *, project: str | None = None, status: ExperimentStatus | None = None
    ) -> list[ExperimentSummary]:
        rows = self._all_pages(
            "/experiments", "experiments", status=status.value if status else None
        )
        return [ExperimentSummaryPublic.model_validate(x).to_domain() for x in rows]

    def set_status(
        self,
        experiment_id: int,
        status: ExperimentStatus | str,
        *,
        project: str | None = None,
        reason: str | None = None,
    ) -> Experiment:
        body: dict[str, Any] = {"status": ExperimentStatus(status).value}
        if reason is not None:
            body["reason"] = reason
        data, _ = self._request("PATCH", f"/experiments/{experiment_id}", json=body)
        return ExperimentPublic.model_validate(data).to_domain()

    # -- trials ------------------------------------------------------------------------------
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
    ) -> list[Trial]:
        body = {
            "n": n,
            "idempotency_key": idempotency_key or f"auto-{uuid.uuid4().hex}",
            "start": start,
            "lease_seconds": lease_seconds,
        }
        if fixed:
            body["fixed"] = {k: _json_value(v) for k, v in fixed.items()}
        data, _ = self._request("POST", f"/experiments/{experiment_id}/trials:ask", json=body)
        return [TrialPublic.model_validate(t).to_domain() for t in data["trials"]]

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
    ) -> Trial:
        body = {
            "n_arms": n_arms,
            "include": [i if isinstance(i, str) else dict(i) for i in include]
            if include is not None
            else None,
            "idempotency_key": idempotency_key or f"auto-{uuid.uuid4().hex}",
            "start": start,
            "lease_seconds": lease_seconds,
        }
        data, _ = self._request("POST", f"/experiments/{experiment_id}/trials:ask_batch", json=body)
        return TrialPublic.model_validate(data).to_domain()

    def attach_trial(
        self,
        experiment_id: int,
        parameters: Mapping[str, Any],
        *,
        project: str | None = None,
        start: bool = True,
    ) -> Trial:
        data, _ = self._request(
            "POST",
            f"/experiments/{experiment_id}/trials",
            json={"parameters": dict(parameters), "start": start},
            retry=False,
        )
        return TrialPublic.model_validate(data).to_domain()

    def _transition(self, trial_id: int, verb: str, body: dict, target: TrialState) -> Trial:
        try:
            data, _ = self._request("POST", f"/trials/{trial_id}:{verb}", json=body)
        except E.InvalidTransitionError:
            # If an earlier attempt of this very request succeeded, the trial is already in
            # the target state with our data: that is success, not a conflict.
            if self.last_attempts == 1:
                raise
            current = self.get_trial(trial_id)
            if current.state is target and self._same_outcome(current, body):
                return current
            raise
        return TrialPublic.model_validate(data).to_domain()

    @staticmethod
    def _same_outcome(trial: Trial, body: dict) -> bool:
        if "observations" in body and body["observations"] is not None:
            told = {m: Observation.parse(m, v).to_dict() for m, v in body["observations"].items()}
            have = {m: o.to_dict() for m, o in trial.values.items()}
            return told == have
        if "arms" in body and body["arms"] is not None:
            told = {
                a: {m: Observation.parse(m, v).to_dict() for m, v in obs.items()}
                for a, obs in body["arms"].items()
            }
            have = {
                a: {m: o.to_dict() for m, o in obs.items()} for a, obs in trial.observations.items()
            }
            return told == have
        return trial.reason == body.get("reason")

    def tell(
        self, trial_id: int, observations: Mapping[str, Any], *, project: str | None = None
    ) -> Trial:
        obs = {m: _json_value(v) for m, v in observations.items()}
        return self._transition(trial_id, "complete", {"observations": obs}, TrialState.COMPLETED)

    def tell_batch(
        self,
        trial_id: int,
        observations: Mapping[str, Mapping[str, Any]],
        *,
        project: str | None = None,
    ) -> Trial:
        arms = {a: {m: _json_value(v) for m, v in obs.items()} for a, obs in observations.items()}
        return self._transition(trial_id, "complete", {"arms": arms}, TrialState.COMPLETED)

    def fail(
        self, trial_id: int, reason: str | None = None, *, project: str | None = None
    ) -> Trial:
        return self._transition(trial_id, "fail", {"reason": reason}, TrialState.FAILED)

    def abandon(
        self, trial_id: int, reason: str | None = None, *, project: str | None = None
    ) -> Trial:
        return self._transition(trial_id, "abandon", {"reason": reason}, TrialState.ABANDONED)

    def early_stop(
        self, trial_id: int, reason: str | None = None, *, project: str | None = None
    ) -> Trial:
        return self._transition(
            trial_id, "early_stop", {"reason": reason}, TrialState.EARLY_STOPPED
        )

    def heartbeat(
        self, trial_id: int, lease_seconds: float = 60.0, *, project: str | None = None
    ) -> Trial:
        data, _ = self._request(
            "POST", f"/trials/{trial_id}:heartbeat", json={"lease_seconds": lease_seconds}
        )
        return TrialPublic.model_validate(data).to_domain()

    def get_trial(self, trial_id: int, *, project: str | None = None) -> Trial:
        return TrialPublic.model_validate(self._get(f"/trials/{trial_id}")).to_domain()

    def list_trials(
        self,
        experiment_id: int,
        *,
        project: str | None = None,
        states: Sequence[TrialState] | None = None,
    ) -> list[Trial]:
        out: list[Trial] = []
        offset = 0
        while True:
            params: dict[str, Any] = {"offset": offset, "limit": 1000}
            if states:
                params["state"] = [TrialState(s).value for s in states]
            data = self._get(f"/experiments/{experiment_id}/trials", **params)
            out += [TrialPublic.model_validate(t).to_domain() for t in data["trials"]]
            offset += len(data["trials"])
            if not data["trials"] or offset >= data["total"]:
                return out

    def events(
        self,
        *,
        experiment_id: int | None = None,
        trial_id: int | None = None,
        after: int = 0,
        project: str | None = None,
    ) -> list[TrialEvent]:
        if trial_id is not None:
            rows = self._all_pages(f"/trials/{trial_id}/events", "events", cursor=True)
            events = [EventPublic.model_validate(e).to_domain() for e in rows]
            return [
                e
                for e in events
                if e.id > after and (experiment_id is None or e.experiment_id == experiment_id)
            ]
        if experiment_id is None:
            raise E.ValidationError("events: give experiment_id or trial_id", field="experiment_id")
        rows = self._all_pages(
            f"/experiments/{experiment_id}/events", "events", cursor=True, after=after
        )
        return [EventPublic.model_validate(e).to_domain() for e in rows]

    def effects(self, experiment_id: int, *, project: str | None = None) -> EffectsReport:
        return EffectsPublic.model_validate(
            self._get(f"/experiments/{experiment_id}/effects")
        ).to_domain()

    def pareto(self, experiment_id: int, *, project: str | None = None) -> ParetoReport:
        return ParetoPublic.model_validate(
            self._get(f"/experiments/{experiment_id}/pareto")
        ).to_domain()

    def best(self, experiment_id: int, *, project: str | None = None) -> BestArm:
        return BestArmPublic.model_validate(
            self._get(f"/experiments/{experiment_id}/best")
        ).to_domain()

    def should_stop(self, trial_id: int, *, project: str | None = None) -> StopDecision:
        return StopDecisionPublic.model_validate(
            self._get(f"/trials/{trial_id}/should_stop")
        ).to_domain()

    def stopping(self, experiment_id: int, *, project: str | None = None) -> StoppingDecision:
        return StoppingPublic.model_validate(
            self._get(f"/experiments/{experiment_id}/stopping")
        ).to_domain()

    # -- runs and jobs -------------------------------------------------------------------------
    def set_run(self, experiment_id: int, action: str, *, project: str | None = None) -> str:
        data, _ = self._request("POST", f"/experiments/{experiment_id}/run:{action}", json={})
        return data["run_state"]

    def jobs(self, experiment_id: int, *, project: str | None = None) -> list[Job]:
        return [
            _job_from_json(j) for j in self._all_pages(f"/experiments/{experiment_id}/jobs", "jobs")
        ]

    def cancel_trial(self, trial_id: int, *, project: str | None = None) -> Job | None:
        data, _ = self._request("POST", f"/trials/{trial_id}:cancel", json={})
        return _job_from_json(data) if data is not None else None

    def report(
        self,
        trial_id: int,
        step: int | None,
        metrics: Mapping[str, Any],
        *,
        project: str | None = None,
    ) -> TrialReport:
        r, _ = self._request(
            "POST", f"/trials/{trial_id}/reports",
            json={"step": step, "metrics": dict(metrics)}, retry=False,
        )  # fmt: skip
        return TrialReport(
            r["id"], r["trial_id"], r["step"], r["metrics"], datetime.fromisoformat(r["at"])
        )

    def reports(self, trial_id: int, *, project: str | None = None) -> list[TrialReport]:
        data = {"reports": self._all_pages(f"/trials/{trial_id}/reports", "reports", cursor=True)}
        return [
            TrialReport(
                r["id"], r["trial_id"], r["step"], r["metrics"], datetime.fromisoformat(r["at"])
            )
            for r in data["reports"]
        ]

    # -- evolving a running experiment -------------------------------------------------------
    def update_experiment(
        self,
        experiment_id: int,
        changes: Mapping[str, Any],
        *,
        project: str | None = None,
        reason: str | None = None,
    ) -> Experiment:
        body = {**{k: _json_value(v) for k, v in changes.items()}, "reason": reason}
        self._request("PATCH", f"/experiments/{experiment_id}", json=body, retry=False)
        return self.get_experiment(experiment_id)

    def experiment_versions(
        self, experiment_id: int, *, project: str | None = None
    ) -> list[ExperimentVersion]:
        data = self._get(f"/experiments/{experiment_id}/versions")
        return [
            ExperimentVersion(
                v["version"], v["config"], v["changes"], v["actor"], v["reason"],
                v["trial_count"], datetime.fromisoformat(v["at"]),
            )
            for v in data["versions"]
        ]  # fmt: skip

    # -- projects ----------------------------------------------------------------------------
    def create_project(self, name: str) -> ProjectSummary:
        data, _ = self._request("POST", "/projects", json={"name": name}, retry=False)
        return _project_from_json(data)

    def projects(self, *, project: str | None = None) -> list[ProjectSummary]:
        return [_project_from_json(p) for p in self._get("/projects")["projects"]]

    def get_project(self, name: str, *, project: str | None = None) -> ProjectSummary:
        return _project_from_json(self._get(f"/projects/{quote(name, safe='')}"))

    # -- webhooks ----------------------------------------------------------------------------
    def create_webhook(
        self,
        url: str,
        events: Sequence[str],
        *,
        project: str | None = None,
        format: str = "json",
        secret: str | None = None,
    ) -> Webhook:
        body = {"url": url, "events": list(events), "format": format, "secret": secret}
        data, _ = self._request("POST", "/webhooks", json=body, retry=False)
        return _webhook_from_json(data)

    def webhooks(self, *, project: str | None = None) -> list[Webhook]:
        return [_webhook_from_json(h) for h in self._get("/webhooks")["webhooks"]]

    def webhook_deliveries(self, webhook_id: int, *, project: str | None = None) -> list[Delivery]:
        rows = self._get(f"/webhooks/{webhook_id}/deliveries")["deliveries"]
        out = []
        for r in rows:
            for k in ("next_attempt_at", "created_at", "delivered_at"):
                r[k] = datetime.fromisoformat(r[k]) if r[k] else None
            out.append(Delivery(**r))
        return out

    # -- import and export -------------------------------------------------------------------
    def export_experiment(self, experiment_id: int, *, project: str | None = None) -> dict:
        return self._get(f"/experiments/{experiment_id}/export")

    def import_experiment(
        self,
        document: Mapping[str, Any],
        *,
        project: str = "default",
        name: str | None = None,
    ) -> ImportResult:
        body = {"document": dict(document), "name": name}
        data, _ = self._request("POST", "/experiments:import", json=body, retry=False)
        report = ImportReport(**data["report"])
        return ImportResult(self.get_experiment(data["experiment"]["id"]), report)


def _webhook_from_json(h: dict[str, Any]) -> Webhook:
    return Webhook(h["id"], h["project"], h["url"], h["events"], h["secret"], h["format"],
                   h["active"], datetime.fromisoformat(h["created_at"]))  # fmt: skip


def _project_from_json(p: dict[str, Any]) -> ProjectSummary:
    at = p.get("created_at")
    return ProjectSummary(
        p["name"], datetime.fromisoformat(at) if at else None, p["experiment_count"]
    )


def _job_from_json(j: dict[str, Any]) -> Job:
    p = JobPublic.model_validate(j)
    return Job(
        id=p.id, trial_id=p.trial_id, experiment_id=p.experiment_id, executor=p.executor,
        worker=p.worker, state=JobState(p.state), attempt=p.attempt, resources=p.resources,
        host=p.host, gpus=p.gpus, created_at=p.created_at, started_at=p.started_at,
        ended_at=p.ended_at, exit_code=p.exit_code, error=p.error,
        cancel_requested=p.cancel_requested,
    )  # fmt: skip
