"""What the pages show, computed from the storage and analysis layers (no SQL here).

* :class:`SnapshotCache` — experiment snapshots reused while the experiment's audit trail is
  unchanged (``Store.latest_event_id``: one index probe) and at most ``ttl_s`` old (status
  changes and late-committing PostgreSQL transactions are picked up by the TTL).
* :class:`ModelCache` — fitted analysis models per ``(experiment, completed trials)``, so page
  loads and panel requests do not refit; one fit at a time per experiment.
* :func:`trial_row` — the JSON a trial becomes for the charts and the live feed.
* :func:`query_trials` — the trials table: filter, sort and paginate on the server.
* :func:`experiment_summaries` — the experiments list, with the best feasible observed value.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import torch

from assay.platform.diagnostics import AnalysisModel, completed_count, fit_analysis_model
from assay.platform.errors import NotFoundError, StorageBusyError
from assay.platform.experiment import (
    Arm,
    Experiment,
    ExperimentConfig,
    ExperimentStatus,
    Observation,
    Trial,
    TrialState,
)
from assay.platform.pareto import is_non_dominated
from assay.platform.relative import control_arm_names, relative_effect
from assay.platform.space import ChoiceParameter, FixedParameter
from assay.storage.base import ExperimentSummary, Store

STATES = [s.value for s in TrialState]


# -- snapshots ---------------------------------------------------------------------------------
@dataclass
class Snapshot:
    experiment: Experiment
    head: int  # latest event id when loaded
    loaded_at: float


class SnapshotCache:
    """Experiment snapshots keyed by id, validated by the latest audit event id."""

    def __init__(self, store: Store, *, ttl_s: float = 5.0, max_entries: int = 32) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[int, Snapshot] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, experiment_id: int, *, project: str | None) -> Snapshot:
        head = self.store.latest_event_id(experiment_id=experiment_id)
        with self._lock:
            snap = self._entries.get(experiment_id)
        now = time.monotonic()
        if snap is None or snap.head != head or now - snap.loaded_at > self.ttl_s:
            # ``head`` was read before the load, so the snapshot holds at least every event up
            # to it (perhaps more: the next request then reloads once more, harmlessly).
            snap = Snapshot(self.store.get_experiment(experiment_id), head, now)
            with self._lock:
                self._entries[experiment_id] = snap
                self._entries.move_to_end(experiment_id)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        if project is not None and snap.experiment.project != project:
            raise NotFoundError(
                f"experiment {experiment_id} not found", details={"experiment_id": experiment_id}
            )
        return snap


# -- fitted models -----------------------------------------------------------------------------
class ModelCache:
    """Analysis models per ``(experiment id, completed trials)``; concurrent requests for the
    same experiment wait for one fit instead of fitting in parallel."""

    def __init__(
        self,
        fit: Callable[[Experiment], AnalysisModel] = fit_analysis_model,
        *,
        max_entries: int = 8,
    ) -> None:
        self.fit = fit
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[int, int], AnalysisModel | Exception] = OrderedDict()
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()
        self.fits = 0

    def get(self, experiment: Experiment) -> AnalysisModel:
        """The cached model, fitting it first if needed; re-raises a cached fit failure."""
        key = (experiment.id, completed_count(experiment))
        with self._guard:
            lock = self._locks.setdefault(experiment.id, threading.Lock())
        with lock:
            with self._guard:
                hit = self._entries.get(key)
            if hit is None:
                try:
                    hit = self.fit(experiment)
                except StorageBusyError:  # no slot to fit in: not the model's failure
                    raise
                except Exception as e:  # cached too: a failing fit is not retried per panel
                    hit = e
                self.fits += 1
                with self._guard:
                    self._entries[key] = hit
                    while len(self._entries) > self.max_entries:
                        self._entries.popitem(last=False)
            with self._guard:
                self._entries.move_to_end(key)
        if isinstance(hit, Exception):
            raise hit
        return hit


# -- formatting --------------------------------------------------------------------------------
def fmt_value(v: Any, digits: int = 4) -> str:
    """A number for people: 4 significant digits, no exponent for ordinary magnitudes."""
    if v is None:
        return "—"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10_000 else str(v)
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6 or a < 1e-3:
        mantissa, exp = f"{v:.{digits - 1}e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
        return f"{mantissa}e{int(exp)}"
    s = f"{v:.{max(digits - 1 - math.floor(math.log10(a)), 0)}f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


def duration_s(t: Trial, now: datetime | None = None) -> float:
    """Seconds from creation to the last state change (to now while pending)."""
    end = (now or datetime.now(UTC)) if t.state.is_pending else t.updated_at
    return max((end - t.created_at).total_seconds(), 0.0)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {(s % 3600) // 60:02d}m"
    return f"{s // 86400}d {(s % 86400) // 3600}h"


# -- trials as data ----------------------------------------------------------------------------
def observed_feasible(
    config: ExperimentConfig,
    values: Mapping[str, Observation],
    control: Mapping[str, Observation] | None = None,
    *,
    is_control: bool = False,
) -> bool | None:
    """Whether the observed means meet every outcome constraint.

    A relative constraint (``"latency <= +2%"``) is judged by the arm's % effect against
    ``control``, the observations of the control arm *of the same batch* (the delta-method
    point estimate of :func:`assay.platform.relative.relative_effect`, as in the effects
    panel); the control itself is at 0 % (``is_control``). ``None`` when a constrained metric
    is missing, or a relative constraint has no control observation (a single-arm trial, a
    batch without the control's data, a control mean of 0) to compare with.
    """
    ok = True
    for oc in config.outcome_constraints:
        o = values.get(oc.metric)
        if o is None:
            return None
        v = o.mean
        if oc.relative and is_control:
            v = 0.0
        elif oc.relative:
            c = control.get(oc.metric) if control is not None else None
            if c is None or c.mean == 0:
                return None
            v = relative_effect(o.mean, o.sem, c.mean, c.sem).effect
        ok = ok and oc.is_satisfied(v)
    return ok


def control_arm(t: Trial, config: ExperimentConfig) -> Arm | None:
    """The control arm of a batch trial (:meth:`Trial.control_arm`); a single-arm trial is
    never judged against a control."""
    return t.control_arm(config.status_quo) if t.is_batch else None


def arm_feasibility(t: Trial, config: ExperimentConfig) -> dict[str, bool | None]:
    """:func:`observed_feasible` of every observed arm of a trial, relative constraints
    against the same trial's control."""
    control = control_arm(t, config)
    c_obs = t.observations.get(control.name) if control is not None else None
    return {
        a.name: observed_feasible(
            config, t.observations[a.name], c_obs, is_control=control is not None and a is control
        )
        for a in t.arms
        if t.observations.get(a.name)
    }


def trial_feasible(t: Trial, config: ExperimentConfig) -> bool | None:
    """A trial's observed feasibility: its arm's, or for a batch, ``True`` when some arm is
    feasible, ``False`` when every judged arm violates a constraint, else ``None``."""
    judged = [f for f in arm_feasibility(t, config).values() if f is not None]
    if not judged:
        return None
    return any(judged)


def _short(v: Any) -> Any:
    """7 significant digits: plenty for a chart, and a third of the JSON of full floats."""
    return float(f"{v:.7g}") if isinstance(v, float) and math.isfinite(v) else v


def trial_row(t: Trial, config: ExperimentConfig) -> dict[str, Any]:
    """A trial for the charts and the live feed (short keys: thousands are sent at once).

    A batch trial (several arms) carries its arms in ``"a"``, one entry per arm with the
    arm's name, parameters, values and feasibility (relative constraints against the
    batch's control; ``"c"`` marks the control), so charts show one point per arm; its own
    ``"p"``/``"v"`` are empty and ``"f"`` is :func:`trial_feasible`.
    """
    if t.is_batch:
        feas = arm_feasibility(t, config)
        control = control_arm(t, config)
        arms = []
        for a in t.arms:
            obs = t.observations.get(a.name, {})
            arms.append(
                {
                    "arm": a.name,
                    "c": a is control,
                    "p": {k: _short(v) for k, v in a.parameters.items()},
                    "v": {m: [_short(o.mean), _short(o.sem)] for m, o in obs.items()},
                    "f": feas.get(a.name),
                }
            )
        return {
            "id": t.id, "i": t.index, "s": t.state.value, "arm": "", "p": {}, "v": {},
            "f": trial_feasible(t, config), "a": arms,
        }  # fmt: skip
    values = t.values if t.arms else {}
    return {
        "id": t.id,
        "i": t.index,
        "s": t.state.value,
        "arm": t.arms[0].name if t.arms else "",
        "p": {k: _short(v) for k, v in t.parameters.items()} if t.arms else {},
        "v": {m: [_short(o.mean), _short(o.sem)] for m, o in values.items()},
        "f": observed_feasible(config, values) if values else None,
    }


def experiment_meta(exp: Experiment) -> dict[str, Any]:
    """The experiment's definition as the page's scripts need it."""
    config = exp.config
    params = []
    for p in exp.search_space.parameters:
        if isinstance(p, FixedParameter) or not p.is_tunable:
            continue
        d: dict[str, Any] = {"name": p.name, "kind": p.kind, "log": bool(getattr(p, "log", False))}
        if isinstance(p, ChoiceParameter):
            d["values"] = list(p.values)
            d["ordered"] = bool(p.ordered)
        else:
            d["bounds"] = [p.lower, p.upper]  # type: ignore[attr-defined]
        params.append(d)
    return {
        "id": exp.id,
        "name": exp.name,
        "objective": config.objective.name,
        "minimize": config.objective.minimize,
        "metrics": config.metric_names,
        "modelled": config.modelled_metrics,
        "constraints": [
            {
                "metric": c.metric,
                "op": c.op,
                "bound": c.bound,
                "relative": c.relative,
                "expression": c.expression,
            }
            for c in config.outcome_constraints
        ],
        "parameters": params,
    }


def state_counts(trials: Iterable[Trial]) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for t in trials:
        counts[t.state.value] += 1
    return counts


@dataclass
class BestObserved:
    value: float
    sem: float | None
    trial_index: int
    trial_id: int
    feasible: bool


def best_observed(exp: Experiment) -> BestObserved | None:
    """The best observed objective mean among trials that meet the constraints by their
    observed means (``feasible=False``: none does, so the best overall is shown)."""
    config = exp.config
    obj = config.objective
    sign = -1.0 if obj.minimize else 1.0
    best: BestObserved | None = None
    best_any: BestObserved | None = None
    feasibility = {t.id: arm_feasibility(t, config) for t in exp.trials if t.observations}
    for t, arm, obs in exp.observed():
        o = obs.get(obj.name)
        if o is None:
            continue
        feas = feasibility[t.id].get(arm.name) is not False
        cand = BestObserved(o.mean, o.sem, t.index, t.id, feas)
        if best_any is None or sign * o.mean > sign * best_any.value:
            best_any = cand
        if feas and (best is None or sign * o.mean > sign * best.value):
            best = cand
    if best is None and best_any is not None:
        best_any.feasible = False
        return best_any
    return best


def observed_front_trials(exp: Experiment) -> set[int]:
    """Several objectives: the trials whose arm is on the raw observed Pareto front (observed
    means, among single-arm trials meeting every constraint by :func:`observed_feasible` and
    reporting every objective; no model, so the table stays cheap; the Pareto panel shows the
    model's front). Empty with one objective."""
    config = exp.config
    if not config.is_multi_objective:
        return set()
    ids, points = [], []
    for t in exp.trials:
        if t.is_batch or t.state is not TrialState.COMPLETED or not t.arms:
            continue
        v = t.values
        if all(o.name in v for o in config.objectives) and observed_feasible(config, v):
            ids.append(t.id)
            points.append([o.sign * v[o.name].mean for o in config.objectives])
    if not points:
        return set()
    mask = is_non_dominated(torch.tensor(points, dtype=torch.float64))
    return {i for i, on in zip(ids, mask.tolist(), strict=True) if on}


# -- the trials table --------------------------------------------------------------------------
@dataclass
class TableQuery:
    state: str = ""
    q: str = ""
    feasible: str = ""  # "", "yes", "no"
    front: str = ""  # "", "yes", "no": on the observed Pareto front (several objectives)
    sort: str = "index"
    dir: str = "desc"
    page: int = 1
    per_page: int = 20

    def params(self, **override: Any) -> dict[str, Any]:
        d = {
            "state": self.state, "q": self.q, "feasible": self.feasible, "front": self.front,
            "sort": self.sort, "dir": self.dir, "page": self.page,
        }  # fmt: skip
        d.update(override)
        return {k: v for k, v in d.items() if v not in ("", None)}


@dataclass
class TablePage:
    query: TableQuery
    rows: list[Trial]
    total: int
    filtered: int
    pages: int
    columns_params: list[str]
    columns_metrics: list[str]
    jobs: dict[int, Any] = field(default_factory=dict)


def sort_keys(exp: Experiment) -> list[str]:
    return (
        ["index", "state", "duration", "updated"]
        + [f"param:{p.name}" for p in exp.search_space.tunable]
        + [f"metric:{m}" for m in exp.config.metric_names]
    )


def query_trials(exp: Experiment, query: TableQuery) -> TablePage:
    """Filter (state, text, observed feasibility), sort and paginate the experiment's trials.

    Missing values sort last in either direction. Unknown sort keys fall back to the index.
    """
    config = exp.config
    trials = exp.trials
    if query.state in STATES:
        trials = [t for t in trials if t.state.value == query.state]
    q = query.q.strip().lower()
    if q:
        num = q.lstrip("#")

        def match(t: Trial) -> bool:
            if num.isdigit() and t.index == int(num):
                return True
            hay = " ".join(
                [t.generator, t.reason or "", *(a.name for a in t.arms)]
                + [f"{k}={v}" for a in t.arms for k, v in a.parameters.items()]
            ).lower()
            return q in hay

        trials = [t for t in trials if match(t)]
    if query.feasible in ("yes", "no"):
        want = query.feasible == "yes"
        trials = [t for t in trials if t.observations and trial_feasible(t, config) is want]
    if query.front in ("yes", "no") and config.is_multi_objective:
        on = observed_front_trials(exp)
        want = query.front == "yes"
        trials = [t for t in trials if t.observations and (t.id in on) is want]
    if query.sort not in sort_keys(exp):
        query.sort = "index"
    if query.dir not in ("asc", "desc"):
        query.dir = "desc"
    now = datetime.now(UTC)
    kind, _, name = query.sort.partition(":")
    state_order = {s: i for i, s in enumerate(STATES)}
    extreme = max if query.dir == "desc" else min

    def key(t: Trial) -> Any:
        if kind == "state":
            return state_order[t.state.value]
        if kind == "duration":
            return duration_s(t, now)
        if kind == "updated":
            return t.updated_at.timestamp()
        if kind == "param":
            vs = [a.parameters.get(name) for a in t.arms]
            if len(vs) > 1 and all(_is_num(v) for v in vs):
                return extreme(vs)  # a batch sorts by its most extreme arm
            v = vs[0] if vs else None
            return v if _is_num(v) else str(v)
        if kind == "metric":
            ms = [o[name].mean for a in t.arms if name in (o := t.observations.get(a.name, {}))]
            return extreme(ms) if ms else None
        return t.index

    present = [t for t in trials if key(t) is not None]
    missing = [t for t in trials if key(t) is None]
    try:
        present.sort(key=lambda t: (key(t), t.index), reverse=query.dir == "desc")
    except TypeError:  # mixed types in a choice parameter: compare as text
        present.sort(key=lambda t: (str(key(t)), t.index), reverse=query.dir == "desc")
    ordered = present + missing
    pages = max(1, math.ceil(len(ordered) / query.per_page))
    query.page = min(max(query.page, 1), pages)
    start = (query.page - 1) * query.per_page
    return TablePage(
        query, ordered[start : start + query.per_page], len(exp.trials), len(ordered), pages,
        [p.name for p in exp.search_space.tunable], config.metric_names,
    )  # fmt: skip


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# -- the experiments list ----------------------------------------------------------------------
@dataclass
class ExperimentRow:
    summary: ExperimentSummary
    total: int
    best: float | None
    best_feasible: bool
    constraints: int


class BestValueCache:
    """Best feasible observed value per experiment, recomputed only for experiments whose last
    activity changed (one ``completed_observations`` read for all of them)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._configs: dict[int, ExperimentConfig] = {}
        self._best: dict[int, tuple[datetime, float | None, bool]] = {}
        self._controls: dict[int, str] = {}
        self._lock = threading.Lock()

    def control_name(self, experiment_id: int, config: ExperimentConfig) -> str | None:
        """The name of the control arm, needed to judge relative constraints (looked up in
        the experiment once it exists: a control's name never changes afterwards)."""
        if config.status_quo is None or not any(c.relative for c in config.outcome_constraints):
            return None
        with self._lock:
            name = self._controls.get(experiment_id)
        if name is None:
            names = control_arm_names(self.store.get_experiment(experiment_id))
            name = min(names) if names else None
            if name is not None:
                with self._lock:
                    self._controls[experiment_id] = name
        return name

    def config(self, experiment_id: int) -> ExperimentConfig:
        with self._lock:
            c = self._configs.get(experiment_id)
        if c is None:
            c = self.store.get_experiment_config(experiment_id)
            with self._lock:
                self._configs[experiment_id] = c  # configurations never change
        return c

    def rows(self, summaries: Sequence[ExperimentSummary]) -> list[ExperimentRow]:
        with self._lock:
            stale = [s.id for s in summaries if self._best.get(s.id, (None,))[0] != s.updated_at]
        if stale:
            configs = {i: self.config(i) for i in stale}
            metrics = {m for c in configs.values() for m in c.modelled_metrics}
            per: dict[int, dict[tuple[int, str], dict[str, Any]]] = {i: {} for i in stale}
            for r in self.store.completed_observations(stale, metrics=sorted(metrics)):
                per[r.experiment_id].setdefault((r.trial_index, r.arm_name), {})[r.metric] = r
            updated = {s.id: s.updated_at for s in summaries}
            for i in stale:
                c = configs[i]
                sign = -1.0 if c.objective.minimize else 1.0
                best, best_any = None, None
                control = self.control_name(i, c)
                for (index, arm), values in per[i].items():
                    o = values.get(c.objective.name)
                    if o is None:
                        continue
                    if best_any is None or sign * o.mean > sign * best_any:
                        best_any = o.mean
                    feas = observed_feasible(
                        c, values, per[i].get((index, control or "")), is_control=arm == control
                    )
                    if feas is not False and (best is None or sign * o.mean > sign * best):
                        best = o.mean
                entry = (updated[i], best if best is not None else best_any, best is not None)
                with self._lock:
                    self._best[i] = entry
        out = []
        for s in summaries:
            _, value, feasible = self._best[s.id]
            out.append(
                ExperimentRow(
                    s, sum(s.trial_counts.values()), value, feasible,
                    len(self.config(s.id).outcome_constraints),
                )
            )  # fmt: skip
        return out


def experiment_summaries(
    store: Store,
    cache: BestValueCache,
    *,
    project: str | None,
    status: str = "",
    q: str = "",
    sort: str = "activity",
    direction: str = "desc",
) -> list[ExperimentRow]:
    """The experiments list, filtered by status and name, sorted."""
    st = ExperimentStatus(status) if status in {s.value for s in ExperimentStatus} else None
    summaries = store.list_experiments(project=project, status=st)
    if q.strip():
        needle = q.strip().lower()
        summaries = [s for s in summaries if needle in s.name.lower()]
    rows = cache.rows(summaries)
    keys: dict[str, Callable[[ExperimentRow], Any]] = {
        "name": lambda r: r.summary.name.lower(),
        "status": lambda r: r.summary.status.value,
        "trials": lambda r: r.total,
        "created": lambda r: r.summary.created_at,
        "activity": lambda r: r.summary.updated_at,
    }
    rows.sort(key=keys.get(sort, keys["activity"]), reverse=direction != "asc")
    return rows
