"""One set of experiment verbs: the engine, the HTTP backend and the Python client agree.

:class:`ExperimentVerbs` lists the verbs; both backends must implement every one with the
Protocol's signature (same positional parameters, every keyword parameter with the same
default and type, the same return type; a backend may only add keyword-only parameters that
have defaults). A verb added to one backend and not the Protocol fails too: the remote
backend has nothing else, and the engine's extra verbs are listed here with the reason they
are server-side only.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from assay.service.client import Client
from assay.service.engine import Engine
from assay.service.remote import RemoteEngine
from assay.service.verbs import ExperimentVerbs

VERBS = sorted(
    name
    for name, member in vars(ExperimentVerbs).items()
    if inspect.isfunction(member) and not name.startswith("_")
)

#: Engine verbs that are not the client's, and why.
SERVER_ONLY = {
    "experiment_config": "the orchestrator's cached read of an immutable configuration",
    "fill_candidates": "the orchestrator queues candidates for its jobs",
    "start": "a worker claims a candidate trial (REST :start)",
    "early_stop_if_needed": "the orchestrator applies the early-stopping rule to its jobs",
    "curves": "the dashboard's learning-curve chart (REST /experiments/{id}/curves)",
}

#: How the client names a verb when not by the verb's own name.
CLIENT_NAMES = {
    "list_trials": ["trials"],
    "set_run": ["start_run", "pause_run", "resume_run"],
    "cancel_trial": ["cancel"],
    "projects": ["list_projects"],
}


def _public_methods(cls: type) -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def _signature(cls: type, name: str) -> inspect.Signature:
    return inspect.signature(getattr(cls, name), eval_str=True)


def check_conforms(cls: type, verb: str) -> None:
    """Assert that ``cls.verb`` has the Protocol's signature (extras: keyword-only with a
    default)."""
    assert hasattr(cls, verb), f"{cls.__name__} lacks the verb {verb!r}"
    want, got = _signature(ExperimentVerbs, verb), _signature(cls, verb)
    where = f"{cls.__name__}.{verb}{got} vs ExperimentVerbs.{verb}{want}"
    assert got.return_annotation == want.return_annotation, f"return type differs: {where}"
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positional = [p for p in got.parameters.values() if p.kind in kinds]
    assert positional == [p for p in want.parameters.values() if p.kind in kinds], (
        f"positional parameters differ: {where}"
    )
    for p in want.parameters.values():
        if p.kind is inspect.Parameter.KEYWORD_ONLY:
            assert got.parameters.get(p.name) == p, f"keyword {p.name!r} differs: {where}"
    for p in got.parameters.values():
        if p.name not in want.parameters:
            assert p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not p.empty, (
                f"extra parameter {p.name!r} must be keyword-only with a default: {where}"
            )


@pytest.mark.parametrize("backend", [Engine, RemoteEngine], ids=lambda c: c.__name__)
@pytest.mark.parametrize("verb", VERBS)
def test_each_backend_implements_each_verb_with_its_signature(backend: type, verb: str) -> None:
    check_conforms(backend, verb)


def test_no_backend_has_a_verb_the_protocol_lacks() -> None:
    assert _public_methods(RemoteEngine) - set(VERBS) == set()
    assert _public_methods(Engine) - set(VERBS) == set(SERVER_ONLY)


def test_the_client_exposes_every_verb() -> None:
    client_methods = _public_methods(Client)
    for verb in VERBS:
        if verb == "close":
            continue
        names = CLIENT_NAMES.get(verb, [verb])
        assert set(names) <= client_methods, f"Client does not expose {verb!r} as {names}"


def test_the_conformance_check_catches_a_missing_verb_and_a_changed_signature() -> None:
    """The check above can fail: a backend that drops a verb, changes a default, adds a
    positional parameter or returns another type is caught."""

    class Dropped:
        def get_trial(self, trial_id: int, *, project: str | None = None) -> Any:
            raise NotImplementedError

    class NewDefault(RemoteEngine):
        def ask(self, experiment_id: int, n: int = 2, **kw: Any) -> list:  # type: ignore[override]
            raise NotImplementedError

    class ExtraPositional(RemoteEngine):
        def fail(self, trial_id: int, reason: str | None = None, code: int = 0):  # type: ignore[override]
            raise NotImplementedError

    class OtherReturn(RemoteEngine):
        def jobs(self, experiment_id: int, *, project: str | None = None) -> list[int]:  # type: ignore[override]
            raise NotImplementedError

    for cls, verb in [
        (Dropped, "best"),
        (Dropped, "get_trial"),
        (NewDefault, "ask"),
        (ExtraPositional, "fail"),
        (OtherReturn, "jobs"),
    ]:
        with pytest.raises(AssertionError):
            check_conforms(cls, verb)


def test_the_client_backends_are_verbs(tmp_path) -> None:
    """The client's backend is an :class:`ExperimentVerbs` in each mode, and closing the
    client closes it."""
    in_process = Client(f"sqlite:///{tmp_path / 'c.db'}")
    assert isinstance(in_process._engine, Engine)
    exp = in_process.create_experiment(
        "verbs", [{"name": "x", "type": "float", "bounds": [0, 1]}], "y", generator="sobol"
    )
    assert in_process.get_experiment(exp.id).name == "verbs"
    in_process.close()
    remote = Client("http://127.0.0.1:9")
    assert isinstance(remote._engine, RemoteEngine)
    remote.close()
