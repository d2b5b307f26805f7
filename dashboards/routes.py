"""The dashboard's pages and the small JSON feeds their scripts poll.

Pages render on the server (Jinja2) and work without JavaScript; scripts then draw the charts
(vendored Plotly.js), poll for changes with an ``after`` cursor over the audit trail, and swap
in server-rendered fragments. Every failure renders as a page that says what to do next (HTML)
or as a JSON error (for the scripts); unauthenticated browsers go to the login page.
:func:`mount_dashboard` adds the pages and static files to the service's app.

May import: the other dashboard modules, :mod:`assay.platform`, and the service's public
surface (:mod:`assay.service.auth`, :mod:`assay.service.deps`, :mod:`assay.service.errors`),
never :mod:`assay.service.app` (the app imports this module).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles

from assay import __version__
from assay.dashboards import auth
from assay.dashboards.charts import parcoords_figure, parcoords_left_out, trace_figure
from assay.dashboards.data import (
    STATES,
    BestValueCache,
    ModelCache,
    SnapshotCache,
    TableQuery,
    arm_feasibility,
    best_observed,
    control_arm,
    duration_s,
    experiment_meta,
    experiment_summaries,
    fmt_duration,
    fmt_value,
    observed_front_trials,
    query_trials,
    state_counts,
    trial_feasible,
    trial_row,
)
from assay.dashboards.jobs import JobsView, NoJobsView
from assay.dashboards.panels import PanelContext, get_panel, panels_for, run_panel
from assay.platform.diagnostics import (
    InsufficientDataError,
    completed_count,
    fit_analysis_model,
    model_trace,
)
from assay.platform.errors import (
    AssayError,
    AuthenticationError,
    NotFoundError,
    StorageBusyError,
)
from assay.platform.experiment import ExperimentStatus, TrialState
from assay.service.auth import Principal
from assay.service.deps import ExperimentId, TrialId, may_administer
from assay.service.errors import status_for

log = logging.getLogger("assay.dashboards")
HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
#: Plotly.js: a partial bundle (core + the trace types the dashboard draws) built from the npm
#: package by ``dashboards/plotly_build/build_plotly.sh``; its version versions the URL.
PLOTLY_BUNDLE = "vendor/plotly-assay.min.js"
PLOTLY_VERSION = "{}-{}".format(
    (STATIC / "vendor" / "plotly-assay.version").read_text().strip(),
    hashlib.sha256((STATIC / PLOTLY_BUNDLE).read_bytes()).hexdigest()[:10],
)
#: Events re-read below the client's cursor, to catch PostgreSQL transactions that commit
#: after a later-numbered one (ids are assigned at insert, not at commit).
CURSOR_OVERLAP = 64


# -- state -------------------------------------------------------------------------------------
class Dashboard:
    """Caches and the template environment, one per app (``app.state.dashboard``)."""

    def __init__(self, app: Any) -> None:
        store = app.state.store
        self.app = app
        self.store = store
        self.snapshots = SnapshotCache(store)
        work = getattr(app.state, "model_work", None)  # the server's bounded model pool
        self.models = (
            ModelCache(lambda e: work.run(lambda: fit_analysis_model(e)))
            if work is not None
            else ModelCache()
        )
        self.best_values = BestValueCache(store)
        #: The latest model trace per experiment: the trace chart keeps its model layer while
        #: a trial that just completed waits for the next fit.
        self.model_traces: OrderedDict[int, Any] = OrderedDict()
        #: Panel results per (experiment, completed trials, panel, controls): page visits
        #: and the live refresh reuse them until a trial completes.
        self.results: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
        self._results_lock = threading.Lock()
        self.env = Environment(
            loader=FileSystemLoader(str(TEMPLATES)),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        digest = hashlib.sha256()
        for name in ("app.css", "app.js"):
            digest.update((STATIC / name).read_bytes())
        self.asset_version = f"{__version__}-{digest.hexdigest()[:10]}"
        self.env.filters.update(
            fmt=fmt_value,
            duration=fmt_duration,
            ago=_ago,
            iso=_iso,
            sem=_sem,
            pct=_pct,
            json_script=json_script,
        )
        self.env.globals.update(
            static=self.static_url, STATES=STATES, version=__version__, query=_query
        )

    @property
    def jobs(self) -> JobsView:
        return getattr(self.app.state, "jobs_view", None) or NoJobsView()

    def cached(self, key: tuple, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        with self._results_lock:
            hit = self.results.get(key)
        if hit is None:
            hit = compute()
            with self._results_lock:
                self.results[key] = hit
                while len(self.results) > 128:
                    self.results.popitem(last=False)
        return hit

    def remember_model_trace(self, experiment_id: int, model: Any) -> None:
        """Keep ``model`` (``None``: the model has nothing to show) as the experiment's latest
        model trace (at most 128 experiments)."""
        with self._results_lock:
            if model is None:
                self.model_traces.pop(experiment_id, None)
                return
            self.model_traces[experiment_id] = model
            self.model_traces.move_to_end(experiment_id)
            while len(self.model_traces) > 128:
                self.model_traces.popitem(last=False)

    def static_url(self, path: str) -> str:
        v = PLOTLY_VERSION if path.startswith("vendor/plotly") else self.asset_version
        return f"/static/{path}?v={v}"

    def render(self, request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        who = getattr(request.state, "principal", None)
        ctx.setdefault("auth_required", auth.auth_required(request))
        ctx.setdefault("who", who)
        ctx.setdefault("nav", "")
        ctx.setdefault("csrf", auth.csrf_token(request))
        html = self.env.get_template(name).render(request=request, **ctx)
        response = HTMLResponse(html, status_code=status)
        auth.attach_csrf_cookie(request, response)
        return response


def _dash(request: Request) -> Dashboard:
    return request.app.state.dashboard


def _ago(dt: datetime | None) -> str:
    if dt is None:
        return "—"
    s = (datetime.now(UTC) - dt).total_seconds()
    if s < 45:
        return "just now"
    if s < 3600:
        return f"{round(s / 60)} min ago"
    if s < 86400:
        return f"{round(s / 3600)} h ago"
    return f"{round(s / 86400)} d ago"


def _iso(dt: datetime | None) -> str:
    return dt.isoformat() if dt else ""


def _sem(v: float | None) -> str:
    return "" if v is None else f"± {fmt_value(v, 2)}"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.0f}%"


def _query(base: dict[str, Any], **override: Any) -> str:
    d = {**base, **override}
    return urlencode({k: v for k, v in d.items() if v not in ("", None)})


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _error_page(request: Request, status: int, title: str, message: str, hint: str = ""):
    if _wants_json(request):
        return JSONResponse(
            {"error": {"code": "dashboard_error", "message": message, "title": title}},
            status_code=status,
        )
    return _dash(request).render(
        request, "error.html", status=status, title=title, message=message, hint=hint
    )


def _login_redirect(request: Request, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse(
            {"error": {"code": "login_required", "message": message, "login": "/login"}},
            status_code=401,
        )
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


class DashboardRoute(APIRoute):
    """Routes whose failures render as dashboard pages (or JSON for the page scripts)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except RequestValidationError:  # e.g. /experiments/abc: no such page
                return _error_page(
                    request, 404, "Page not found", f"There is no page at {request.url.path}.",
                    "Go back to the experiments list.",
                )  # fmt: skip
            except auth.LoginRequired as e:
                return _login_redirect(request, e.message)
            except AuthenticationError as e:
                response = _login_redirect(request, e.message)
                response.delete_cookie(auth.COOKIE, path="/")
                return response
            except NotFoundError as e:
                return _error_page(
                    request, 404, "Not found", e.message,
                    "It may belong to another project, or the link is out of date.",
                )  # fmt: skip
            except AssayError as e:
                return _error_page(request, status_for(e), "Something went wrong", e.message)
            except Exception:
                log.exception("dashboard request failed: %s", request.url.path)
                return _error_page(
                    request, 500, "Something went wrong",
                    "The server hit an unexpected error while building this page.",
                    "Reload in a moment; if it keeps happening, the server log has the details.",
                )  # fmt: skip

        return handler


router = APIRouter(route_class=DashboardRoute, include_in_schema=False)


def _who(request: Request) -> Principal:
    who = auth.principal(request)
    request.state.principal = who
    return who


def _int(v: str | None, default: int = 0, lo: int = 0, hi: int = 2**63 - 1) -> int:
    try:
        return min(max(int(v or default), lo), hi)
    except ValueError:
        return default


# -- experiments list --------------------------------------------------------------------------
@router.get("/")
def experiments_page(request: Request) -> Response:
    who = _who(request)
    d = _dash(request)
    qp = request.query_params
    status, q = qp.get("status", ""), qp.get("q", "")
    sort, direction = qp.get("sort", "activity"), qp.get("dir", "desc")
    rows = experiment_summaries(
        d.store, d.best_values, project=who.project, status=status, q=q, sort=sort,
        direction=direction,
    )  # fmt: skip
    ctx = {
        "rows": rows, "filters": {"status": status, "q": q, "sort": sort, "dir": direction},
        "statuses": [s.value for s in ExperimentStatus], "cursor": d.store.latest_event_id(),
        "nav": "experiments", "any_filter": bool(status or q),
    }  # fmt: skip
    if qp.get("partial"):
        return d.render(request, "_experiments_table.html", **ctx)
    return d.render(request, "experiments.html", **ctx)


@router.get("/live")
def global_live(request: Request) -> JSONResponse:
    _who(request)
    return JSONResponse({"cursor": _dash(request).store.latest_event_id()})


# -- experiment page ---------------------------------------------------------------------------
def _table_query(request: Request) -> TableQuery:
    qp = request.query_params
    return TableQuery(
        state=qp.get("state", ""), q=qp.get("q", "")[:200], feasible=qp.get("feasible", ""),
        front=qp.get("front", ""),
        sort=qp.get("sort", "index"), dir=qp.get("dir", "desc"),
        page=_int(qp.get("page"), 1, 1, 10**7),
    )  # fmt: skip


def _table_ctx(d: Dashboard, exp: Any, query: TableQuery, who: Principal) -> dict[str, Any]:
    page = query_trials(exp, query)
    page.jobs = d.jobs.jobs_for_trials([t.id for t in page.rows], project=who.project)
    now = datetime.now(UTC)
    return {
        "table": page,
        "durations": {t.id: duration_s(t, now) for t in page.rows},
        "feasible": {t.id: trial_feasible(t, exp.config) for t in page.rows},
        "arm_feasible": {t.id: arm_feasibility(t, exp.config) for t in page.rows},
        "on_front": observed_front_trials(exp),
        "controls": {
            t.id: c.name for t in page.rows if (c := control_arm(t, exp.config)) is not None
        },
    }


def _recent_events(d: Dashboard, exp_id: int, head: int, limit: int = 12) -> list[Any]:
    events = d.store.list_events(experiment_id=exp_id, after=max(0, head - 400))
    return list(reversed(events[-limit:]))


@router.get("/experiments/{experiment_id}")
def experiment_page(request: Request, experiment_id: ExperimentId) -> Response:
    who = _who(request)
    d = _dash(request)
    snap = d.snapshots.get(experiment_id, project=who.project)
    exp = snap.experiment
    query = _table_query(request)
    ctx = {"exp": exp, **_table_ctx(d, exp, query, who)}
    if request.query_params.get("partial"):
        return d.render(request, "_trials_table.html", **ctx)
    window = d.store.list_events(experiment_id=exp.id, after=max(0, snap.head - CURSOR_OVERLAP))
    recent = _recent_events(d, exp.id, snap.head)
    counts = state_counts(exp.trials)
    data = {
        "experiment": experiment_meta(exp),
        "cursor": snap.head,
        "known": [e.id for e in window],
        "trials": [trial_row(t, exp.config) for t in exp.trials],
        "trace": trace_chart(exp, d.model_traces.get(exp.id)),
        # several objectives: the "parcoords" panel instead (coloured by any objective)
        "parallel": None if exp.config.is_multi_objective else parallel_chart(exp),
        "plotly": d.static_url(PLOTLY_BUNDLE),
    }
    return d.render(
        request, "experiment.html", data=data, counts=counts, best=best_observed(exp),
        panels=panels_for(exp), recent=recent, trial_index={t.id: t.index for t in exp.trials},
        versions=d.store.experiment_versions(exp.id),
        nav="experiments", last_activity=max(
            [exp.updated_at, *(t.updated_at for t in exp.trials)], default=exp.updated_at
        ), **ctx,
    )  # fmt: skip


@router.get("/experiments/{experiment_id}/live")
def experiment_live(request: Request, experiment_id: ExperimentId) -> JSONResponse:
    """Changes since ``after`` (the last event id seen), re-reading a small window below it;
    ``known`` lists the window's event ids the page has already applied."""
    who = _who(request)
    d = _dash(request)
    after = _int(request.query_params.get("after"))
    known = {
        _int(x) for x in request.query_params.get("known", "").split(",") if x.strip().isdigit()
    }
    # Events first, then the snapshot: the snapshot is at least as new as every event read.
    events = d.store.list_events(experiment_id=experiment_id, after=max(0, after - CURSOR_OVERLAP))
    snap = d.snapshots.get(experiment_id, project=who.project)
    exp = snap.experiment
    new = [e for e in events if e.id > after or e.id not in known]
    cursor = max([after, *(e.id for e in events)])
    by_id = {t.id: t for t in exp.trials}
    changed = {e.trial_id for e in new}
    best = best_observed(exp)
    return JSONResponse(
        {
            "cursor": cursor,
            "known": [e.id for e in events if e.id > cursor - CURSOR_OVERLAP],
            "events": [_event_json(e, by_id) for e in new],
            "trials": [trial_row(by_id[i], exp.config) for i in sorted(changed) if i in by_id],
            "counts": state_counts(exp.trials),
            "status": exp.status.value,
            "completed": sum(1 for t in exp.trials if t.state is TrialState.COMPLETED),
            "best": None if best is None else best.__dict__,
        }
    )


def _event_json(e: Any, by_id: dict[int, Any]) -> dict[str, Any]:
    t = by_id.get(e.trial_id)
    return {
        "id": e.id, "trial_id": e.trial_id, "trial_index": t.index if t else None,
        "from": e.from_state.value if e.from_state else None, "to": e.to_state.value,
        "at": e.at.isoformat(), "actor": e.actor, "reason": e.reason,
    }  # fmt: skip


MODEL_NOTE = (
    "The amber line is the model's hindsight estimate of the best arm among trials up to each "
    "point (noise shrinks lucky observations)."
)


def trace_chart(exp: Any, model: Any = None) -> dict[str, Any]:
    """The optimization trace as the page draws it: ``figure``
    (:func:`assay.dashboards.charts.trace_figure`, with ``model``'s layer when given), or
    ``empty`` (a card's title and message) while no trial is completed, or neither when the
    experiment has no trial at all (the page keeps its own "no trials yet" card); ``note``
    explains the model's layer."""
    if not exp.trials:
        return {"figure": None, "empty": None, "note": ""}
    figure = trace_figure(exp, model)
    if not (figure["data"][0]["x"] or figure["data"][1]["x"]):
        n = len(exp.trials)
        obj = exp.config.objective.name
        return {
            "figure": None,
            "empty": {
                "title": "No completed trials yet",
                "message": f"{n} trial{' is' if n == 1 else 's are'} not completed yet. Points "
                f"appear here as soon as a trial is completed with its {obj}.",
            },
            "note": "",
        }
    recommended = model is not None and model.recommended is not None
    return {"figure": figure, "empty": None, "note": MODEL_NOTE if recommended else ""}


@router.get("/experiments/{experiment_id}/trace")
def experiment_trace(request: Request, experiment_id: ExperimentId) -> JSONResponse:
    """The trace chart (:func:`trace_chart`) for the page's live updates: the observed data
    as of now, with the latest model layer the server has (never fits a model)."""
    who = _who(request)
    d = _dash(request)
    exp = d.snapshots.get(experiment_id, project=who.project).experiment
    return JSONResponse(trace_chart(exp, d.model_traces.get(exp.id)))


def parallel_chart(exp: Any) -> dict[str, Any]:
    """The parallel-coordinates chart of a one-objective experiment's page, in the shape of
    :func:`trace_chart`: ``figure`` (:func:`assay.dashboards.charts.parcoords_figure` coloured
    by the objective, the builder of ``assay.plots.parallel_coordinates`` and of the
    "parcoords" panel), or ``empty`` while no completed arm reports every metric, or neither
    without trials; ``note`` says how many completed arms miss a metric (not drawn)."""
    if not exp.trials:
        return {"figure": None, "empty": None, "note": ""}
    figure = parcoords_figure(exp, exp.config.objective.name)
    if not figure["data"][0]["line"]["color"]:
        return {
            "figure": None,
            "empty": {
                "title": "Nothing to compare yet",
                "message": "Each completed arm that reports every metric becomes one line "
                "across its parameters and metrics.",
            },
            "note": "",
        }
    left_out = parcoords_left_out(exp, figure)
    note = (
        f"{left_out} completed arm{' misses' if left_out == 1 else 's miss'} a metric and "
        f"{'is' if left_out == 1 else 'are'} not drawn (a line needs every axis)."
        if left_out
        else ""
    )
    return {"figure": figure, "empty": None, "note": note}


@router.get("/experiments/{experiment_id}/parallel")
def experiment_parallel(request: Request, experiment_id: ExperimentId) -> JSONResponse:
    """The parallel-coordinates chart (:func:`parallel_chart`) for the page's live updates,
    as the trace's ``/trace``: the completed arms as of now."""
    who = _who(request)
    d = _dash(request)
    exp = d.snapshots.get(experiment_id, project=who.project).experiment
    return JSONResponse(parallel_chart(exp))


@router.get("/experiments/{experiment_id}/model-trace")
def experiment_model_trace(request: Request, experiment_id: ExperimentId) -> JSONResponse:
    """The model's view of the trace (posterior at each arm, best-so-far, recommendation),
    and in ``chart`` the trace chart with that model layer (:func:`trace_chart`)."""
    who = _who(request)
    d = _dash(request)
    exp = d.snapshots.get(experiment_id, project=who.project).experiment

    def compute() -> dict[str, Any]:
        try:
            am = d.models.get(exp)
            tr = model_trace(am)
        except InsufficientDataError as e:
            return {"empty": {"message": e.message}}
        except StorageBusyError:  # no model slot free: 503 + Retry-After, nothing cached
            raise
        except Exception as e:
            log.warning("model trace failed for experiment %s: %s", experiment_id, e)
            return {"error": {"message": f"{type(e).__name__}: {e}"}}
        return {
            "trace": tr.__dict__, "notes": am.notes, "completed": am.n_observations, "model": tr,
        }  # fmt: skip

    result = d.cached((exp.id, completed_count(exp), "model-trace"), compute)
    model = result.get("model")
    d.remember_model_trace(exp.id, model)
    body = {k: v for k, v in result.items() if k != "model"}
    return JSONResponse({**body, "chart": trace_chart(exp, model)})


@router.get("/experiments/{experiment_id}/panels/{key}")
def experiment_panel(request: Request, experiment_id: ExperimentId, key: str) -> JSONResponse:
    who = _who(request)
    d = _dash(request)
    exp = d.snapshots.get(experiment_id, project=who.project).experiment
    panel = get_panel(key)
    if panel is None:
        raise NotFoundError(f"no panel named {key!r}")
    params = dict(request.query_params)
    ctx = PanelContext(exp, params, d.models, d.jobs, who.project, d.store)
    # Data panels (learning curves) change with every report: never cached.
    if not panel.model_based:
        return JSONResponse(run_panel(panel, ctx).to_json())
    key = (exp.id, completed_count(exp), "panel", key, tuple(sorted(params.items())))
    return JSONResponse(d.cached(key, lambda: run_panel(panel, ctx).to_json()))


# -- trial page --------------------------------------------------------------------------------
def _trial_ctx(d: Dashboard, who: Principal, trial_id: int) -> dict[str, Any]:
    trial = d.store.get_trial(trial_id, project=who.project)
    snap = d.snapshots.get(trial.experiment_id, project=who.project)
    exp = snap.experiment
    trial = next((t for t in exp.trials if t.id == trial_id), trial)
    events = d.store.list_events(trial_id=trial_id)
    jobs = d.jobs.jobs_for_trials([trial_id], project=who.project)
    curves = d.jobs.intermediate_curves(trial_id, project=who.project)
    log_tail = d.jobs.log_tail(trial_id, project=who.project)
    constraints = {c.metric: c for c in exp.config.outcome_constraints}
    return {
        "exp": exp, "trial": trial, "events": events, "job": jobs.get(trial_id),
        "curves": curves, "log_tail": log_tail, "constraints": constraints,
        "jobs_available": d.jobs.available, "jobs_message": d.jobs.empty_message,
        "duration": duration_s(trial), "cursor": events[-1].id if events else 0,
        "feasible": trial_feasible(trial, exp.config),
        "arm_feasible": arm_feasibility(trial, exp.config),
        "curves_data": [c.__dict__ for c in curves],
    }  # fmt: skip


@router.get("/trials/{trial_id}")
def trial_page(request: Request, trial_id: TrialId) -> Response:
    who = _who(request)
    d = _dash(request)
    ctx = _trial_ctx(d, who, trial_id)
    if request.query_params.get("partial"):
        return d.render(request, "_trial_body.html", **ctx)
    return d.render(request, "trial.html", nav="experiments", **ctx)


@router.get("/trials/{trial_id}/live")
def trial_live(request: Request, trial_id: TrialId) -> JSONResponse:
    who = _who(request)
    d = _dash(request)
    trial = d.store.get_trial(trial_id, project=who.project)
    after = _int(request.query_params.get("after"))
    events = d.store.list_events(trial_id=trial_id, after=after)
    curves = d.jobs.intermediate_curves(trial_id, project=who.project)
    return JSONResponse(
        {
            "cursor": events[-1].id if events else after,
            "changed": bool(events),
            "state": trial.state.value,
            "log_tail": d.jobs.log_tail(trial_id, project=who.project),
            "curves": [c.__dict__ for c in curves],
        }
    )


# -- jobs --------------------------------------------------------------------------------------
@router.get("/jobs")
def jobs_page(request: Request) -> Response:
    who = _who(request)
    d = _dash(request)
    view = d.jobs
    now = datetime.now(UTC)
    running = view.running_jobs(project=who.project)
    ctx = {
        "available": view.available, "message": view.empty_message, "running": running,
        "failed": view.failed_jobs(project=who.project), "workers": view.workers(
            project=who.project), "nav": "jobs",
        "elapsed": {j.id: (now - j.started_at).total_seconds() if j.started_at else None
                    for j in running},
    }  # fmt: skip
    if request.query_params.get("partial"):
        return d.render(request, "_jobs_body.html", **ctx)
    return d.render(request, "jobs.html", **ctx)


# -- webhooks ----------------------------------------------------------------------------------
def masked_url(url: str) -> str:
    """A subscription URL without its path's secrets (a Slack incoming-webhook URL is a
    credential): scheme, host and the path's last 4 characters."""
    scheme, _, rest = url.partition("://")
    host, _, path = rest.partition("/")
    return f"{scheme}://{host}/" + (f"…{path[-4:]}" if len(path) > 4 else path)


@router.get("/webhooks")
def webhooks_page(request: Request) -> Response:
    """The project's webhook subscriptions and their delivery logs: for admins (and local
    mode) only; others see that there are some, not where they go. Signing secrets are never
    shown (they are returned once, at creation)."""
    who = _who(request)
    d = _dash(request)
    admin = may_administer(who)
    hooks = d.store.webhooks().list(who.project)
    rows = []
    if admin:
        outbox = d.store.webhooks()
        for h in hooks:
            log_ = outbox.deliveries(h.id)
            rows.append({
                "id": h.id, "project": h.project, "url": masked_url(h.url), "events": h.events,
                "format": h.format, "active": h.active, "created_at": h.created_at,
                "deliveries": log_[:20], "total": len(log_),
                "delivered": sum(x.state == "delivered" for x in log_),
                "failed": sum(x.state == "failed" for x in log_),
            })  # fmt: skip
    return d.render(request, "webhooks.html", admin=admin, rows=rows, count=len(hooks),
                    nav="webhooks")  # fmt: skip


# -- sign in -----------------------------------------------------------------------------------
def _safe_next(target: str) -> str:
    return target if target.startswith("/") and not target.startswith("//") else "/"


@router.get("/login")
def login_page(request: Request) -> Response:
    d = _dash(request)
    nxt = _safe_next(request.query_params.get("next", "/"))
    if not auth.auth_required(request):
        return RedirectResponse(nxt, status_code=303)
    return d.render(request, "login.html", next=nxt, error="", nav="login")


@router.post("/login")
async def login_submit(request: Request) -> Response:
    d = _dash(request)
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0]
    nxt = _safe_next((form.get("next") or ["/"])[0])
    auth.check_csrf(request, (form.get("csrf") or [""])[0])
    if not auth.auth_required(request):
        return RedirectResponse(nxt, status_code=303)
    try:
        _, session_id = auth.login(request, key)
    except auth.TooManyAttempts as e:
        response = d.render(
            request, "login.html", status=429, next=nxt, error=e.message, nav="login"
        )
        response.headers["Retry-After"] = str(e.details.get("retry_after_s", 60))
        return response
    except AuthenticationError as e:
        return d.render(request, "login.html", status=401, next=nxt, error=e.message, nav="login")
    response = RedirectResponse(nxt, status_code=303)
    auth.set_session_cookie(request, response, session_id)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    auth.check_csrf(request, (form.get("csrf") or [""])[0])
    auth.logout(request)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(auth.COOKIE, path="/")
    return response


def json_script(data: Any) -> Markup:
    """Compact JSON that is safe inside ``<script type="application/json">``."""
    text = json.dumps(data, separators=(",", ":"), default=str)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


# -- mounting ----------------------------------------------------------------------------------
class _CachedStatic(StaticFiles):
    """Static files with long-lived caching (URLs carry a version query string), served from
    a pre-compressed ``<file>.gz`` beside the file when the browser accepts gzip (Plotly.js:
    1.3 MB -> 0.47 MB on the wire, compressed once at build time instead of per request)."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response

    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code != 200 or not isinstance(response, FileResponse):
            return response
        gz = Path(str(response.path) + ".gz")
        accept = dict(scope.get("headers") or []).get(b"accept-encoding", b"")
        if b"gzip" not in accept or not gz.is_file():
            return response
        compressed = FileResponse(gz, media_type=response.media_type)
        compressed.headers["Cache-Control"] = response.headers["Cache-Control"]
        compressed.headers["Content-Encoding"] = "gzip"
        compressed.headers["Vary"] = "Accept-Encoding"
        return compressed


def mount_dashboard(app: Any) -> None:
    """Add the dashboard's routes and static files to ``app`` (after the API routers).

    Unknown paths outside ``/api/`` answer browsers with an HTML 404 page; API clients keep
    the JSON error body.
    """
    app.state.dashboard = Dashboard(app)
    app.mount("/static", _CachedStatic(directory=str(STATIC)), name="static")
    app.include_router(router)
    json_handler = app.exception_handlers.get(StarletteHTTPException)

    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        browser = "text/html" in request.headers.get("accept", "")
        if browser and exc.status_code == 404 and not request.url.path.startswith("/api/"):
            return _error_page(
                request, 404, "Page not found", f"There is no page at {request.url.path}.",
                "Go back to the experiments list.",
            )  # fmt: skip
        return await json_handler(request, exc)

    if json_handler is not None:
        app.add_exception_handler(StarletteHTTPException, http_error)
