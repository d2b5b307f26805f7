"""Import and export: Assay's versioned JSON format, and importers from Ax and Optuna.

The format (``docs/export-format.md``) is one JSON object::

    {"format": "assay.experiment", "version": 1, "assay_version": "...", "exported_at": "...",
     "experiment": {<ExperimentConfig.to_dict()>, "status", "run_state",
                    "generator_state", "model_state",
                    "status_reason": {"status", "reason", "rule", "figures", "actor", "at"}
                                     (optional: why it has its status)},
     "trials": [{"index", "state", "generator", "reason", "metadata",
                 "arms": [{"name", "parameters"}],
                 "observations": {arm: {metric: {"mean", "sem", "n"}}},
                 "history": [{"from_state", "to_state", "actor", "reason", "at"}]}]}

Round trip: importing an export and exporting again gives the same document except ids
and times (``exported_at``, ``history[].at``), which the store assigns: definition, status,
generator and model state, the status reason (kept verbatim, its time included), every
trial's arms, observations with SEMs, metadata, reason and
its state history (replayed transition by transition, with the original actors).

Importers turn another tool's study into this document plus an :class:`ImportReport` naming
what could not be carried: :func:`from_ax_snapshot` (an Ax ``Client``'s JSON snapshot, read
as JSON, so Ax need not be installed) and :func:`from_optuna` (a study in an RDB storage URL or
a journal file; needs Optuna).

May import: :mod:`assay.platform`, :mod:`assay.storage.base`. The engine mixin
:class:`Interchange` is composed into :class:`~assay.service.engine.Engine`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from assay.platform.errors import ValidationError
from assay.platform.experiment import (
    Experiment,
    ExperimentConfig,
    ExperimentStatus,
    Observation,
    StatusReason,
    TrialState,
)
from assay.storage.base import NewTrial, Store, TrialEvent

FORMAT = "assay.experiment"
VERSION = 1


@dataclass
class ImportReport:
    """What an import carried over and what it could not (one line per item)."""

    source: str
    trials: int = 0
    not_carried: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "trials": self.trials, "not_carried": list(self.not_carried)}


@dataclass
class ImportResult:
    """The imported experiment (with its trials) and the report."""

    experiment: Experiment
    report: ImportReport


# -- export -----------------------------------------------------------------------------------
def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def _assay_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("assay")
    except PackageNotFoundError:
        return None


def export_document(exp: Experiment, events: list[TrialEvent]) -> dict[str, Any]:
    """The versioned JSON document of one experiment (see the module docstring)."""
    history: dict[int, list[dict[str, Any]]] = {}
    for e in sorted(events, key=lambda e: e.id):
        history.setdefault(e.trial_id, []).append(
            {
                "from_state": e.from_state.value if e.from_state is not None else None,
                "to_state": e.to_state.value,
                "actor": e.actor,
                "reason": e.reason,
                "at": _iso(e.at),
            }
        )
    trials = []
    for t in sorted(exp.trials, key=lambda t: t.index):
        trials.append(
            {
                "index": t.index,
                "state": t.state.value,
                "generator": t.generator,
                "reason": t.reason,
                "metadata": t.metadata,
                "arms": [{"name": a.name, "parameters": a.parameters} for a in t.arms],
                "observations": {
                    arm: {
                        m: {"mean": o.mean, "sem": o.sem, "n": o.n} for m, o in sorted(obs.items())
                    }
                    for arm, obs in sorted(t.observations.items())
                },
                "history": history.get(t.id, []),
            }
        )
    return {
        "format": FORMAT,
        "version": VERSION,
        "assay_version": _assay_version(),
        "exported_at": datetime.now(UTC).isoformat(),
        "experiment": {
            **exp.config.to_dict(),
            "status": exp.status.value,
            "run_state": exp.run_state,
            "generator_state": exp.generator_state,
            "model_state": exp.model_state,
            **({"status_reason": exp.status_reason.to_dict()} if exp.status_reason else {}),
        },
        "trials": trials,
    }


def comparable(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document without what a store assigns (export times, event times): two exports of
    the same experiment, before and after a round trip, compare equal through this."""
    document = copy.deepcopy(dict(document))
    doc = {k: v for k, v in document.items() if k not in ("exported_at", "assay_version")}
    doc["trials"] = [
        {**t, "history": [{k: v for k, v in h.items() if k != "at"} for h in t["history"]]}
        for t in document["trials"]
    ]
    return doc


# -- import -----------------------------------------------------------------------------------
@dataclass
class _PlannedTrial:
    arms: list[tuple[str, dict[str, Any]]]
    generator: str
    metadata: dict[str, Any]
    observations: dict[str, dict[str, Observation]]
    #: ``[(to_state, actor, reason)]``: the first one is the state it is created in.
    steps: list[tuple[TrialState, str | None, str | None]]


def _field(where: str, message: str) -> ValidationError:
    return ValidationError(f"{where}: {message}", field=where)


def _plan(document: Mapping[str, Any], name: str | None) -> tuple[ExperimentConfig, dict, list]:
    """Validate the whole document before anything is written."""
    if not isinstance(document, Mapping):
        raise _field("document", "must be a JSON object")
    if document.get("format") != FORMAT:
        raise _field("document.format", f"must be {FORMAT!r}, got {document.get('format')!r}")
    if document.get("version") != VERSION:
        raise _field(
            "document.version",
            f"this Assay reads version {VERSION}, got {document.get('version')!r}",
        )
    raw = document.get("experiment")
    if not isinstance(raw, Mapping):
        raise _field("document.experiment", "must be an object")
    extra_keys = ("status", "run_state", "generator_state", "model_state", "status_reason")
    spec = {k: v for k, v in raw.items() if k not in extra_keys}
    if name is not None:
        spec["name"] = name
    config = ExperimentConfig.from_dict(spec)
    try:
        status = ExperimentStatus(raw.get("status", "active"))
    except ValueError:
        raise _field(
            "document.experiment.status", f"unknown status {raw.get('status')!r}"
        ) from None
    why = raw.get("status_reason")
    if why is not None:
        why = StatusReason.from_dict(why)
        if why.status is not status:
            raise _field(
                "document.experiment.status_reason.status",
                f"is {why.status.value!r} but the experiment is {status.value!r}",
            )
    extra = {
        "status": status,
        "status_reason": why,
        "run_state": raw.get("run_state"),
        "generator_state": dict(raw.get("generator_state") or {}),
        "model_state": dict(raw.get("model_state") or {}),
    }
    raw_trials = document.get("trials") or []
    if not isinstance(raw_trials, list):
        raise _field("document.trials", "must be a list")
    planned = []
    for i, t in enumerate(sorted(raw_trials, key=lambda t: t.get("index", 0))):
        where = f"document.trials[{i}]"
        if not isinstance(t, Mapping) or not t.get("arms"):
            raise _field(where, "must be an object with arms")
        arms = []
        for k, a in enumerate(t["arms"]):
            if not isinstance(a, Mapping) or not isinstance(a.get("name"), str):
                raise _field(f"{where}.arms[{k}]", "must be {name, parameters}")
            params = config.search_space.validate(
                a.get("parameters") or {}, check_constraints=False
            )
            arms.append((a["name"], params))
        names = {n for n, _ in arms}
        observations: dict[str, dict[str, Observation]] = {}
        for arm, obs in (t.get("observations") or {}).items():
            if arm not in names:
                raise _field(f"{where}.observations", f"unknown arm {arm!r}")
            observations[arm] = {m: Observation.parse(m, v) for m, v in obs.items()}
        try:
            state = TrialState(t.get("state", "completed"))
            steps = [
                (TrialState(h["to_state"]), h.get("actor"), h.get("reason"))
                for h in t.get("history") or []
            ]
        except (ValueError, KeyError, TypeError):
            raise _field(f"{where}.state", "unknown trial state") from None
        if not steps or steps[-1][0] is not state:
            steps = _default_steps(state, t.get("reason"))
        if observations and state is not TrialState.COMPLETED:
            observations = {}  # only a completion stores observations
        if state is TrialState.COMPLETED and not observations:
            raise _field(f"{where}.observations", "a completed trial needs observations")
        planned.append(
            _PlannedTrial(
                arms=arms,
                generator=str(t.get("generator") or "manual"),
                metadata=dict(t.get("metadata") or {}),
                observations=observations,
                steps=steps,
            )
        )
    return config, extra, planned


def _default_steps(
    state: TrialState, reason: str | None
) -> list[tuple[TrialState, str | None, str | None]]:
    """A trial without a history: created running, then ended in its state."""
    if state in (TrialState.CANDIDATE, TrialState.RUNNING):
        return [(state, None, None)]
    return [(TrialState.RUNNING, None, None), (state, None, reason)]


class Interchange:
    """The import/export verbs, composed into the engine (which sets ``store``, ``actor``)."""

    store: Store
    actor: str | None

    def create_experiment(self, spec: Any, *, project: str = "default") -> Experiment:
        raise NotImplementedError  # the engine's

    def export_experiment(self, experiment_id: int, *, project: str | None = None) -> dict:
        """The experiment as a versioned JSON document (see :mod:`assay.service.interchange`)."""
        exp = self.store.get_experiment(experiment_id, project=project)
        return export_document(exp, self.store.list_events(experiment_id=experiment_id))

    def import_experiment(
        self,
        document: Mapping[str, Any],
        *,
        project: str = "default",
        name: str | None = None,
        actor: str | None = None,
    ) -> ImportResult:
        """Create an experiment from a document (``name`` renames it); its trials are replayed
        with their states, observations and history. The document is validated in full before
        anything is written; a name already taken is a ``ConflictError``."""
        config, extra, planned = _plan(document, name)
        exp = self.create_experiment(config, project=project)  # the engine's checks
        actor = actor or self.actor
        report = ImportReport(source=str(document.get("source") or "assay"))
        report.not_carried = [str(x) for x in document.get("not_carried") or []]
        # Consecutive trials created by the same actor go in one unit of work; the generator
        # and model state are written with the last one (or alone when there are no trials).
        groups: list[list[_PlannedTrial]] = []
        for p in planned:
            if groups and groups[-1][0].steps[0][1] == p.steps[0][1]:
                groups[-1].append(p)
            else:
                groups.append([p])
        for k, group in enumerate(groups or [[]]):
            last = k == max(len(groups) - 1, 0)
            with self.store.lock_experiment(exp.id, project=project) as lock:
                created = lock.add_trials(
                    [
                        NewTrial(p.arms, p.generator, state=p.steps[0][0], metadata=p.metadata)
                        for p in group
                    ],
                    actor=(group[0].steps[0][1] if group else None) or actor,
                    generator_state=extra["generator_state"] if last else None,
                    model_state=(extra["model_state"] or None) if last else None,
                )
            for trial, p in zip(created, group, strict=True):
                for state, who, reason in p.steps[1:]:
                    self.store.transition_trial(
                        trial.id,
                        state,
                        observations=p.observations if state is TrialState.COMPLETED else None,
                        reason=reason,
                        actor=who or actor,
                    )
        if extra["run_state"] is not None:
            self.store.set_run_state(exp.id, extra["run_state"])
        if extra["status"] is not ExperimentStatus.ACTIVE or extra["status_reason"] is not None:
            self.store.set_experiment_status(exp.id, extra["status"], reason=extra["status_reason"])
        report.trials = len(planned)
        return ImportResult(self.store.get_experiment(exp.id, project=project), report)


# -- importers --------------------------------------------------------------------------------
def _document(
    spec: dict[str, Any], trials: list[dict[str, Any]], source: str, not_carried: list[str]
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "source": source,
        "not_carried": not_carried,
        "experiment": spec,
        "trials": trials,
    }


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def from_optuna(storage: Any, study_name: str | None = None) -> dict[str, Any]:
    """An Assay document from an Optuna study.

    Args:
        storage: An RDB URL (``sqlite:///optuna.db``, ``postgresql://...``), a journal file
            path (``*.log``/``*.jsonl``, or any existing file that is not SQLite), or an
            Optuna storage object.
        study_name: Which study (optional when the storage holds one).

    Carried: float/int/categorical distributions (log scale, bounds), one objective
    (direction), trials COMPLETE → completed, FAIL → failed, PRUNED → early_stopped
    (running then stopped), RUNNING → running, WAITING → candidate; ``user_attrs`` as trial
    metadata. Not carried, and listed in ``not_carried``: stepped distributions' steps,
    distributions of other kinds, further objectives of a multi-objective study (kept as
    tracking metrics), trials in other states or missing a parameter, non-finite values (the
    trial is imported failed), intermediate values, trials' system attributes, the study's
    user attributes, the sampler.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if isinstance(storage, str) and "://" not in storage:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(storage))
    if study_name is None:
        names = optuna.get_all_study_names(storage)
        if len(names) != 1:
            raise ValidationError(
                f"the storage holds studies {names}; name one with study_name", field="study"
            )
        study_name = names[0]
    study = optuna.load_study(study_name=study_name, storage=storage)
    not_carried: list[str] = []
    dists: dict[str, Any] = {}
    for t in study.get_trials(deepcopy=False):
        for k, d in t.distributions.items():
            dists.setdefault(k, d)
    parameters = []
    for pname, d in dists.items():
        kind = type(d).__name__
        if kind in ("FloatDistribution", "IntDistribution"):
            ptype = "float" if kind == "FloatDistribution" else "int"
            p = {"name": pname, "type": ptype, "bounds": [d.low, d.high], "log": bool(d.log)}
            if getattr(d, "step", None) not in (None, 1):
                not_carried.append(f"parameter {pname}: step {d.step} (imported as continuous)")
            parameters.append(p)
        elif kind == "CategoricalDistribution":
            parameters.append({"name": pname, "type": "choice", "values": list(d.choices)})
        else:
            not_carried.append(f"parameter {pname}: unsupported distribution {kind}")
    metric_names = list(getattr(study, "metric_names", None) or [])
    n_obj = len(study.directions)
    metrics = metric_names if len(metric_names) == n_obj else (
        ["value"] if n_obj == 1 else [f"value_{i}" for i in range(n_obj)]
    )  # fmt: skip
    minimize = study.directions[0].name == "MINIMIZE"
    if n_obj > 1:
        not_carried.append(
            f"objectives {metrics[1:]}: multi-objective study, imported as tracking metrics"
        )
    spec = {
        "name": study.study_name,
        "parameters": parameters,
        "objectives": [{"name": metrics[0], "minimize": minimize}],
        "tracking_metrics": metrics[1:],
        "generator": "noisy_ei",
        "description": f"imported from Optuna study {study.study_name!r}",
    }
    states = {
        "COMPLETE": "completed", "FAIL": "failed", "PRUNED": "early_stopped",
        "RUNNING": "running", "WAITING": "candidate",
    }  # fmt: skip
    trials = []
    intermediate = system = 0
    for t in study.get_trials(deepcopy=False):
        params = {k: v for k, v in t.params.items() if k in {p["name"] for p in parameters}}
        state = states.get(t.state.name)
        if state is None or len(params) < len(parameters):
            not_carried.append(f"trial {t.number}: state {t.state.name} or missing parameters")
            continue
        if t.intermediate_values:
            intermediate += 1
        if t.system_attrs:
            system += 1
        obs = {}
        if state == "completed":
            values = t.values or []
            if not all(_finite(v) for v in values):
                not_carried.append(f"trial {t.number}: non-finite value {values}; imported failed")
                state = "failed"
            else:
                obs = {"0": {m: {"mean": float(v), "sem": None, "n": None}
                             for m, v in zip(metrics, values, strict=False)}}  # fmt: skip
        trials.append(
            {
                "index": t.number,
                "state": state,
                "generator": "optuna",
                "reason": None,
                "metadata": {"optuna": {"number": t.number, "user_attrs": dict(t.user_attrs)}},
                "arms": [{"name": "0", "parameters": params}],
                "observations": obs,
                "history": [],
            }
        )
    for t in trials:
        t["arms"][0]["name"] = f"{t['index']}_0"
        if t["observations"]:
            t["observations"] = {f"{t['index']}_0": t["observations"]["0"]}
    if intermediate:
        not_carried.append(f"intermediate values of {intermediate} trial(s) (learning curves)")
    if system:
        not_carried.append(f"system attributes of {system} trial(s) (the sampler's bookkeeping)")
    if study.user_attrs:
        not_carried.append(f"the study's user attributes {sorted(study.user_attrs)}")
    not_carried.append("the sampler (Optuna does not store it; Assay uses its own generator)")
    return _document(spec, trials, "optuna", not_carried)


def _ax_objectives(objective: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """``[(metric, minimize)]`` of an Ax objective: the Ax 1.x ``expression`` form
    (``"-loss"``, ``"acc, -latency"``) or the older ``metric``/``objectives`` form."""
    expression = objective.get("expression")
    if isinstance(expression, str):
        out = []
        for part in expression.split(","):
            part = part.strip()
            if part:
                out.append((part.lstrip("-").strip(), part.startswith("-")))
        return out
    subs = objective.get("objectives") or [objective]
    return [
        ((o.get("metric") or {}).get("name"), bool(o.get("minimize")))
        for o in subs
        if (o.get("metric") or {}).get("name")
    ]


def from_ax_snapshot(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """An Assay document from an Ax ``Client`` JSON snapshot (``Client.save_to_json_file``),
    read as plain JSON.

    Carried: range parameters (float/int, log scale) and choice parameters, fixed parameters,
    the objective (the first one, with its direction), outcome constraints ``metric <= / >=
    bound`` (absolute or relative), trials (one arm each; batch trials keep their arms) with
    states COMPLETED/FAILED/ABANDONED/EARLY_STOPPED/RUNNING/CANDIDATE and their data (means
    and SEMs, the last fetch per arm and metric). Not carried, listed in ``not_carried``:
    parameter constraints that do not parse, further objectives, the generation strategy.
    """
    exp = snapshot.get("experiment") if "experiment" in snapshot else snapshot
    if not isinstance(exp, Mapping) or exp.get("__type") != "Experiment":
        raise ValidationError("not an Ax Client snapshot (no Experiment)", field="document")
    not_carried: list[str] = []
    space = exp["search_space"]
    parameters = []
    for p in space.get("parameters", []):
        kind, name = p.get("__type"), p["name"]
        ptype = str((p.get("parameter_type") or {}).get("name", "FLOAT")).lower()
        if kind == "RangeParameter":
            parameters.append(
                {"name": name, "type": "int" if ptype == "int" else "float",
                 "bounds": [p["lower"], p["upper"]], "log": bool(p.get("log_scale"))}
            )  # fmt: skip
        elif kind == "ChoiceParameter":
            parameters.append(
                {"name": name, "type": "choice", "values": list(p["values"]),
                 "ordered": bool(p.get("is_ordered"))}
            )  # fmt: skip
        elif kind == "FixedParameter":
            parameters.append({"name": name, "type": "fixed", "value": p["value"]})
        else:
            not_carried.append(f"parameter {name}: {kind}")
    constraints = []
    for c in space.get("parameter_constraints", []) or []:
        weights = c.get("constraint_dict") or {}
        bound = c.get("bound")
        if weights and _finite(bound):
            lhs = " + ".join(f"{w:g}*{k}" for k, w in weights.items())
            constraints.append(f"{lhs} <= {bound:g}")
        else:
            not_carried.append(f"parameter constraint {c}")
    oc = exp.get("optimization_config") or {}
    objective = oc.get("objective") or {}
    objs = _ax_objectives(objective)
    if not objs:
        raise ValidationError("the Ax experiment has no objective", field="optimization_config")
    metric, minimize = objs[0]
    if len(objs) > 1:
        not_carried.append(
            f"objectives {[m for m, _ in objs[1:]]} (multi-objective; imported as tracking metrics)"
        )
    outcome_constraints = []
    for c in oc.get("outcome_constraints") or []:
        m = (c.get("metric") or {}).get("name")
        op = "<=" if (c.get("op") or {}).get("name") == "LEQ" else ">="
        rel = "%" if c.get("relative") else ""
        outcome_constraints.append(f"{m} {op} {c.get('bound'):g}{rel}")
    metrics_known = {metric} | {
        (c.get("metric") or {}).get("name") for c in oc.get("outcome_constraints") or []
    }
    tracking = [m for m, _ in objs[1:]]
    tracking += [
        m["name"]
        for m in exp.get("tracking_metrics") or []
        if m["name"] not in metrics_known and m["name"] not in tracking
    ]
    spec = {
        "name": exp.get("name") or "ax_experiment",
        "parameters": parameters,
        "parameter_constraints": constraints,
        "objectives": [{"name": metric, "minimize": minimize}],
        "outcome_constraints": outcome_constraints,
        "tracking_metrics": tracking,
        "generator": "noisy_ei",
        "description": f"imported from Ax experiment {exp.get('name')!r}",
    }
    if exp.get("status_quo"):
        spec["status_quo"] = dict(exp["status_quo"].get("parameters") or {})
    # data: {trial_index: {arm: {metric: (mean, sem)}}}, the last fetch wins
    data: dict[int, dict[str, dict[str, dict[str, Any]]]] = {}
    for by_ts in (exp.get("data_by_trial") or {}).values():
        fetches = by_ts.get("value") if isinstance(by_ts, Mapping) and "value" in by_ts else by_ts
        for entry in _ax_data_entries(fetches):
            for row in _ax_rows(entry):
                data.setdefault(int(row["trial_index"]), {}).setdefault(row["arm_name"], {})[
                    row["metric_name"]
                ] = {"mean": row["mean"], "sem": row.get("sem"), "n": None}
    states = {
        "COMPLETED": "completed", "FAILED": "failed", "ABANDONED": "abandoned",
        "EARLY_STOPPED": "early_stopped", "RUNNING": "running", "CANDIDATE": "candidate",
        "STAGED": "candidate",
    }  # fmt: skip
    trials = []
    for t in sorted(exp.get("trials", {}).values(), key=lambda t: t["index"]):
        index = t["index"]
        ax_state = (t.get("status") or {}).get("name", "")
        state = states.get(ax_state)
        if state is None:
            not_carried.append(f"trial {index}: state {ax_state}")
            continue
        arms = [t["generator_run"]["arms"][0]] if t.get("__type") == "Trial" else [
            a for a in (t.get("generator_run_structs") or [{}])[0].get("generator_run", {}).get(
                "arms", []
            )
        ]  # fmt: skip
        arms = [{"name": a["name"], "parameters": dict(a["parameters"])} for a in arms]
        obs = {}
        if state == "completed":
            for arm in arms:
                values = {
                    m: {
                        "mean": v["mean"],
                        "sem": v["sem"] if _finite(v["sem"]) else None,
                        "n": None,
                    }
                    for m, v in data.get(index, {}).get(arm["name"], {}).items()
                    if _finite(v["mean"])
                }
                if values:
                    obs[arm["name"]] = values
            if not obs:
                not_carried.append(f"trial {index}: completed without data; imported failed")
                state = "failed"
        trials.append(
            {
                "index": index,
                "state": state,
                "generator": "ax",
                "reason": t.get("status_reason")
                or t.get("failed_reason")
                or t.get("abandoned_reason"),
                "metadata": {"ax": {"index": index}},
                "arms": arms,
                "observations": obs,
                "history": [],
            }
        )
    not_carried.append("the generation strategy (Assay uses its own generator)")
    return _document(spec, trials, "ax", not_carried)


def _ax_data_entries(fetches: Any) -> list[Any]:
    """The Data objects of one trial's ``data_by_trial`` entry (an OrderedDict by timestamp,
    serialised as ``{"__type": "OrderedDict", "value": [[ts, data], ...]}`` or a mapping)."""
    if isinstance(fetches, Mapping):
        if fetches.get("__type") == "OrderedDict":
            fetches = fetches.get("value") or []
        else:
            return list(fetches.values())
    out = []
    for item in fetches or []:
        out.append(item[1] if isinstance(item, list | tuple) and len(item) == 2 else item)
    return out


def _ax_rows(data: Any) -> list[dict[str, Any]]:
    """Rows of one Ax ``Data`` object (its dataframe serialised as JSON records or columns)."""
    import json

    if not isinstance(data, Mapping):
        return []
    df = data.get("df") or data.get("full_df")
    if isinstance(df, Mapping) and "value" in df:
        df = df["value"]
    if isinstance(df, str):
        df = json.loads(df)
    if isinstance(df, list):
        return [dict(r) for r in df]
    if isinstance(df, Mapping):  # {column: {row: value}}
        cols = list(df)
        rows = list(next(iter(df.values())).keys()) if cols else []
        return [{c: df[c][r] for c in cols} for r in rows]
    return []
