"""The SQL privacy ledger beyond the shared suite (which runs it on SQLite and PostgreSQL in
tests/generative/tabular/test_tabular_privacy_ledger.py): project scoping, refusals that leave
no row, the row lock really serialising charges, and processes racing on PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading

import pytest
from sqlalchemy import create_engine, func, select, text

from assay.platform.errors import NotFoundError, PrivacyBudgetExceededError
from assay.storage.orm import PrivacyChargeRow
from assay.storage.sql import SqlPrivacyLedger, SqlStore


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        SqlStore(url).close()  # migrate
        return url
    return request.getfixturevalue("postgres_url")


def _charge_rows(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(PrivacyChargeRow)).scalar_one()
    engine.dispose()
    return n


def test_budgets_are_per_project_and_survive_reopening(sql_url) -> None:
    store = SqlStore(sql_url)
    growth, search = store.privacy_ledger("growth"), store.privacy_ledger("search")
    growth.set_budget("signups", epsilon=2.0, delta=1e-5)
    with pytest.raises(NotFoundError):
        search.status("signups")  # the same name in another project is another dataset
    search.set_budget("signups", epsilon=9.0, delta=1e-5)
    growth.charge("signups", 1.5, 1e-6, release_id="r1", metadata={"rows": 10})
    search.charge("signups", 1.5, 1e-6, release_id="r1")  # same id, other project: its own
    store.close()

    again = SqlPrivacyLedger.from_url(sql_url, project="growth")
    st = again.status("signups")
    assert (st.epsilon_budget, st.epsilon_spent, st.releases) == (2.0, 1.5, 1)
    assert again.charges("signups")[0].metadata == {"rows": 10}
    with pytest.raises(PrivacyBudgetExceededError):
        again.charge("signups", 1.0, 0.0, release_id="r2")
    again.close()
    assert SqlPrivacyLedger.from_url(sql_url, "search").status("signups").epsilon_remaining == 7.5


def test_a_refused_charge_writes_no_row(sql_url) -> None:
    ledger = SqlPrivacyLedger.from_url(sql_url)
    ledger.set_budget("d", epsilon=1.0, delta=1e-5)
    ledger.charge("d", 0.6, 1e-6, release_id="a")
    assert _charge_rows(sql_url) == 1
    for eps in (0.5, 10.0):
        with pytest.raises(PrivacyBudgetExceededError):
            ledger.charge("d", eps, 1e-6, release_id=f"b{eps}")
    assert _charge_rows(sql_url) == 1
    ledger.close()


def test_postgres_charge_waits_for_the_budget_row_lock(postgres_url) -> None:
    """A charge blocks while another transaction holds the budget row FOR UPDATE, and then
    sees that transaction's charge (so it cannot overshoot)."""
    ledger = SqlPrivacyLedger.from_url(postgres_url, project="p")
    ledger.set_budget("d", epsilon=1.0, delta=1e-5)
    engine = create_engine(postgres_url)
    done = threading.Event()
    outcome: list[str] = []

    def charge() -> None:
        try:
            ledger.charge("d", 0.6, 0.0, release_id="second")
            outcome.append("ok")
        except PrivacyBudgetExceededError:
            outcome.append("refused")
        done.set()

    with engine.connect() as conn, conn.begin():
        budget_id = conn.execute(
            text("SELECT id FROM privacy_budgets WHERE dataset = 'd' FOR UPDATE")
        ).scalar_one()
        thread = threading.Thread(target=charge)
        thread.start()
        assert not done.wait(0.7), "the charge did not wait for the row lock"
        conn.execute(
            text(
                "INSERT INTO privacy_charges (budget_id, release_id, epsilon, delta, "
                "description, metadata, created_at) VALUES (:b, 'first', 0.6, 0, '', "
                "'{}'::jsonb, now())"
            ),
            {"b": budget_id},
        )
    thread.join(30)
    assert outcome == ["refused"]
    assert [c.release_id for c in ledger.charges("d")] == ["first"]
    engine.dispose()
    ledger.close()


WORKER = textwrap.dedent(
    """
    import json, os, sys, threading, time
    from assay.platform.errors import PrivacyBudgetExceededError
    from assay.storage.sql import SqlPrivacyLedger

    url, worker, go = sys.argv[1], sys.argv[2], sys.argv[3]
    ledger = SqlPrivacyLedger.from_url(url, project="race")
    ledger.status("d")  # connected
    print("ready", flush=True)
    results = []

    def charge(i):
        try:
            ledger.charge("d", 1.0, 1e-7, release_id=f"{worker}-{i}")
            results.append("ok")
        except PrivacyBudgetExceededError:
            results.append("refused")

    while not os.path.exists(go):  # every process starts charging at the same moment
        time.sleep(0.002)
    threads = [threading.Thread(target=charge, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ledger.close()
    print(json.dumps(results))
    """
)


def test_processes_racing_on_postgres_never_overshoot(postgres_url, tmp_path) -> None:
    ledger = SqlPrivacyLedger.from_url(postgres_url, project="race")
    ledger.set_budget("d", epsilon=5.0, delta=1e-5)
    go = tmp_path / "go"
    argv = [sys.executable, "-c", WORKER, postgres_url]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    procs = [subprocess.Popen([*argv, f"w{k}", str(go)], **pipes) for k in range(2)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    go.touch()
    outcomes: list[str] = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outcomes += json.loads(out.strip().splitlines()[-1])
    assert len(outcomes) == 12
    assert outcomes.count("ok") == 5 and outcomes.count("refused") == 7
    st = ledger.status("d")
    assert st.releases == 5 and st.epsilon_spent == pytest.approx(5.0)
    assert _charge_rows(postgres_url) == 5
    ledger.close()


def test_concurrent_first_budgets_of_a_new_project_do_not_conflict(postgres_url) -> None:
    store = SqlStore(postgres_url)
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def set_budget(eps: float) -> None:
        try:
            barrier.wait()
            store.privacy_ledger("brand-new").set_budget("d", epsilon=eps, delta=1e-5)
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=set_budget, args=(1.0 + i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.privacy_ledger("brand-new").status("d").epsilon_budget in {
        1.0 + i for i in range(6)
    }
    store.close()
