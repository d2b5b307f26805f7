"""Evolving a running experiment: the rules of a definition change (a new version).

:func:`apply_definition_changes` takes the current :class:`ExperimentConfig` and a change
request and returns the new configuration and one line per change (recorded with the
version). Pure: the engine stores the result; nothing here touches storage.

The rules for past trials (they keep the version they were generated under):

* narrowed bounds: trials outside the new space still inform the model (their encoded
  coordinates lie outside the unit cube) but are never proposed or recommended;
* an added parameter: arms made before it existed are read with its ``default``
  (:attr:`ExperimentConfig.parameter_defaults`) wherever the experiment's data is modelled or
  analysed, i.e. the past trials are taken to have run at the default (the usual situation:
  the knob existed in the code, hard-wired to that value);
* a removed choice value: arms at it cannot be encoded, so they leave the model's data
  (:meth:`~assay.platform.experiment.Experiment.observed`), and
  are never proposed or recommended; they stay in the trial list;
* a removed outcome constraint: its metric stays reportable (it becomes a tracking metric).

May import: other :mod:`assay.platform` modules only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from assay.platform.errors import ValidationError
from assay.platform.experiment import ExperimentConfig, OutcomeConstraint
from assay.platform.parameters import parameter_from_dict

#: The keys of a definition change (``PATCH /experiments/{id}``).
DEFINITION_CHANGES = ("bounds", "add_values", "remove_values", "add_parameters",
                      "outcome_constraints", "generator", "generator_settings")  # fmt: skip


def _add_parameters(d: dict[str, Any], specs: Any, notes: list[str]) -> None:
    """Append the parameters of ``add_parameters`` to ``d`` with their defaults."""
    if not isinstance(specs, list):
        raise ValidationError("add_parameters must be a list", field="add_parameters")
    names = {p["name"] for p in d["parameters"]}
    defaults = dict(d.get("parameter_defaults") or {})
    for i, raw in enumerate(specs):
        where = f"add_parameters[{i}]"
        if not isinstance(raw, Mapping):
            raise ValidationError(f"{where} must be an object", field=where)
        if "default" not in raw:
            raise ValidationError(
                f"{where}: a parameter added to a running experiment needs a default (the "
                "value past trials are read with)",
                field=f"{where}.default",
            )
        spec = {k: v for k, v in raw.items() if k != "default"}
        try:
            param = parameter_from_dict(spec, i)
        except ValidationError as e:
            field = re.sub(r" \(.*\)", "", e.field or "").replace(f"parameters[{i}]", where, 1)
            field = field or where
            raise ValidationError(e.message.replace(f"parameters[{i}]", where, 1),
                                  field=field) from None  # fmt: skip
        if param.name in names:
            raise ValidationError(f"{where}: parameter {param.name!r} exists",
                                  field=f"{where}.name")  # fmt: skip
        try:
            default = param.validate(raw["default"])
        except ValidationError as e:
            raise ValidationError(f"{where}.default: {e.message}",
                                  field=f"{where}.default") from None  # fmt: skip
        names.add(param.name)
        d["parameters"].append(param.to_dict())
        defaults[param.name] = default
        notes.append(f"parameter added: {param.name} (past trials: {default!r})")
    d["parameter_defaults"] = defaults


def apply_definition_changes(
    config: ExperimentConfig, changes: Mapping[str, Any]
) -> tuple[ExperimentConfig, list[str]]:
    """The configuration after ``changes``, validated, and one line per change.

    ``changes`` may hold: ``bounds`` ``{param: [lower, upper]}`` (widen or narrow a float/int
    parameter), ``add_values`` / ``remove_values`` ``{param: [value, ...]}`` (values of a
    choice parameter),
    ``add_parameters`` ``[{<parameter spec>, "default": value}]`` (new parameters; past arms
    are read with the default), ``outcome_constraints`` (the new full list: add, remove or
    adjust), ``generator`` and ``generator_settings``. ``ValidationError`` names the field of
    a bad change.
    """
    if not isinstance(changes, Mapping):
        raise ValidationError("changes must be an object", field="changes")
    unknown = sorted(set(changes) - set(DEFINITION_CHANGES))
    if unknown:
        raise ValidationError(
            f"cannot change {unknown}; changeable: {list(DEFINITION_CHANGES)}", field=unknown[0]
        )
    d = config.to_dict()
    params = {p["name"]: p for p in d["parameters"]}
    notes: list[str] = []
    for name, bounds in (changes.get("bounds") or {}).items():
        p = params.get(name)
        if p is None or p["type"] not in ("float", "int"):
            raise ValidationError(f"bounds: {name!r} is not a float or int parameter",
                                  field=f"bounds.{name}")  # fmt: skip
        if not isinstance(bounds, list | tuple) or len(bounds) != 2:
            raise ValidationError("bounds must be [lower, upper]", field=f"bounds.{name}")
        if list(bounds) != list(p["bounds"]):
            notes.append(f"{name}: bounds {list(p['bounds'])} -> {list(bounds)}")
            p["bounds"] = list(bounds)
    for name, values in (changes.get("add_values") or {}).items():
        p = params.get(name)
        if p is None or p["type"] != "choice":
            raise ValidationError(f"add_values: {name!r} is not a choice parameter",
                                  field=f"add_values.{name}")  # fmt: skip
        new = [v for v in (values or []) if v not in p["values"]]
        if new:
            notes.append(f"{name}: values + {new}")
            p["values"] = list(p["values"]) + new
    for name, values in (changes.get("remove_values") or {}).items():
        p = params.get(name)
        if p is None or p["type"] != "choice":
            raise ValidationError(f"remove_values: {name!r} is not a choice parameter",
                                  field=f"remove_values.{name}")  # fmt: skip
        gone = [v for v in p["values"] if v in list(values or [])]
        unknown = [v for v in (values or []) if v not in p["values"]]
        if unknown:
            raise ValidationError(f"remove_values: {unknown} are not values of {name!r}",
                                  field=f"remove_values.{name}")  # fmt: skip
        if gone and len(gone) == len(p["values"]):
            raise ValidationError(f"remove_values: {name!r} needs at least one value left",
                                  field=f"remove_values.{name}")  # fmt: skip
        if gone:
            notes.append(f"{name}: values - {gone}")
            p["values"] = [v for v in p["values"] if v not in gone]
    if changes.get("add_parameters"):
        _add_parameters(d, changes["add_parameters"], notes)
    if "outcome_constraints" in changes:
        new_oc = changes["outcome_constraints"]
        if not isinstance(new_oc, list):
            raise ValidationError("outcome_constraints must be a list",
                                  field="outcome_constraints")  # fmt: skip
        old_oc = [str(c) for c in d["outcome_constraints"]]
        parsed = [
            OutcomeConstraint.parse(c, f"outcome_constraints[{i}]") for i, c in enumerate(new_oc)
        ]
        for c in old_oc:
            if c not in new_oc:
                notes.append(f"outcome constraint removed: {c}")
                metric = OutcomeConstraint.parse(c).metric  # still reportable: now tracked
                if metric not in d["tracking_metrics"] and all(p.metric != metric for p in parsed):
                    d["tracking_metrics"].append(metric)
        for c in new_oc:
            if c not in old_oc:
                notes.append(f"outcome constraint added: {c}")
        d["outcome_constraints"] = list(new_oc)
    for key in ("generator", "generator_settings"):
        if key in changes and changes[key] != d[key]:
            notes.append(f"{key}: {d[key]!r} -> {changes[key]!r}")
            d[key] = changes[key]
    if not notes:
        raise ValidationError("the changes change nothing", field="changes")
    new_config = ExperimentConfig.from_dict(d)
    new_config.seed = config.seed
    return new_config, notes
