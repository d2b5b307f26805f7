"""Attack 6: one DP charge must never cover two releases, queued releases must never together
exceed the budget, and a key must not raise its own budget."""

from __future__ import annotations

import pandas as pd
import pytest

from assay.generative.tabular.data import AB_LOGS_SCHEMA, ab_logs
from assay.generative.tabular.release import release_synthetic
from assay.generative.tabular.schema import TableSchema
from assay.platform.errors import ConflictError
from assay.service import releases

SCHEMA = TableSchema.from_dict(AB_LOGS_SCHEMA)


@pytest.fixture(scope="module")
def ab_table():
    return ab_logs(200, seed=5)[1]


def test_same_release_id_with_another_request_is_409_on_every_backend(store) -> None:
    ledger = store.privacy_ledger("team")
    ledger.set_budget("ab", 4.0, 1e-5)
    ledger.charge("ab", 1.0, 1e-6, release_id="r1", metadata={"request_fingerprint": "aaa"})
    again = ledger.charge("ab", 1.0, 1e-6, release_id="r1",
                          metadata={"request_fingerprint": "aaa"})  # fmt: skip
    assert again.release_id == "r1"  # a true retry: not charged twice
    with pytest.raises(ConflictError) as e:
        ledger.charge("ab", 1.0, 1e-6, release_id="r1", metadata={"request_fingerprint": "bbb"})
    assert e.value.field == "release_id"
    st = ledger.status("ab")
    assert st.releases == 1 and st.epsilon_spent == pytest.approx(1.0)


def test_library_rerun_with_another_seed_is_refused_before_training(store, ab_table) -> None:
    ledger = store.privacy_ledger("team")
    ledger.set_budget("ab", 4.0, 1e-5)
    kw = dict(epsilon=1.0, delta=1e-6, method="mst", ledger=ledger, dataset="ab",
              release_id="weekly")  # fmt: skip
    first = release_synthetic(SCHEMA, ab_table, seed=0, **kw)
    retry = release_synthetic(SCHEMA, ab_table, seed=0, **kw)  # the same request: a retry
    assert retry.rows == first.rows
    with pytest.raises(ConflictError):  # another seed: a second independent DP output
        release_synthetic(SCHEMA, ab_table, seed=1, **kw)
    with pytest.raises(ConflictError):  # another table under the same id
        release_synthetic(SCHEMA, {k: v[:100] for k, v in ab_table.items()}, seed=0, **kw)
    st = ledger.status("ab")
    assert st.releases == 1 and st.epsilon_spent == pytest.approx(1.0)


@pytest.fixture
def api(make_api, tmp_path):
    return make_api(release_dir=str(tmp_path / "rel"), data_dir=str(tmp_path / "data"))


def _release(api, csv: str, rid: str, headers, epsilon: float = 0.8):  # type: ignore[no-untyped-def]
    body = {"schema": AB_LOGS_SCHEMA, "csv": csv, "epsilon": epsilon, "method": "mst",
            "release_id": rid}  # fmt: skip
    return api.http.post("/api/v1/datasets/ab/synthetic-releases", json=body, headers=headers)


def test_budget_changes_are_admin_only(api) -> None:
    member, admin = api.key("member"), api.key("admin")
    r = api.http.put("/api/v1/datasets/ab/privacy-budget", json={"epsilon": 1e6, "delta": 0.5},
                     headers=member)  # fmt: skip
    assert r.status_code == 403, r.text
    assert api.http.get("/api/v1/datasets/ab/privacy-budget", headers=member).status_code == 404
    r = api.http.put("/api/v1/datasets/ab/privacy-budget", json={"epsilon": 1, "delta": 1e-5},
                     headers=admin)  # fmt: skip
    assert r.status_code == 200, r.text
    assert api.http.get("/api/v1/datasets/ab/privacy-budget", headers=member).status_code == 200


def test_queued_releases_reserve_their_charge_and_the_queue_is_bounded(
    api, ab_table, monkeypatch
) -> None:
    csv = pd.DataFrame(ab_table).to_csv(index=False)
    member, admin = api.key("member"), api.key("admin")
    api.http.put("/api/v1/datasets/ab/privacy-budget", json={"epsilon": 1, "delta": 1e-5},
                 headers=admin)  # fmt: skip
    api.app.state.settings.max_release_queue = 1
    with releases.TRAINING_SLOT:  # nothing trains: every accepted release waits in the queue
        first = _release(api, csv, "q1", member)
        assert first.status_code == 202, first.text
        st = api.http.get("/api/v1/datasets/ab/privacy-budget", headers=member).json()
        assert st["epsilon_spent"] == pytest.approx(0.8)  # reserved when accepted
        over = _release(api, csv, "q2", member)  # would overspend together with q1
        assert over.status_code == 409 and over.json()["error"]["code"] == (
            "privacy_budget_exceeded"
        )
        full = _release(api, csv, "q3", member, epsilon=0.1)  # fits, but the queue is full
        assert full.status_code == 503 and full.headers["Retry-After"], full.text
        st = api.http.get("/api/v1/datasets/ab/privacy-budget", headers=member).json()
        assert st["releases"] == 1 and st["epsilon_spent"] == pytest.approx(0.8)
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rec = api.http.get(first.headers["location"], headers=member).json()
        if rec["status"] != "running":
            break
        time.sleep(0.1)
    assert rec["status"] == "succeeded", rec
    st = api.http.get("/api/v1/datasets/ab/privacy-budget", headers=member).json()
    assert st["releases"] == 1 and st["epsilon_spent"] == pytest.approx(0.8)  # charged once
