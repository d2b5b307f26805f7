"""The polled webhook events: ``stopping.recommended`` (GET /stopping and the orchestrator's
check, which poll) and ``privacy.budget_nearly_spent`` (a charge over 80% of the ε budget)
fire once per experiment version / dataset budget, not on every poll; delivered to a real
local receiver, signed. Every backend (``store`` fixture)."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from assay.service.app import create_app
from assay.service.engine import Engine
from assay.service.observability import CountingLedger
from assay.service.settings import Settings
from assay.service.webhooks import Deliverer, verify
from tests.service.test_webhooks import Receiver, wait_for


def test_stopping_recommended_once_per_version(store) -> None:
    receiver = Receiver(fail=0)
    settings = Settings(auth="none", reaper_interval_s=0, webhook_interval_s=0.1)
    try:
        with TestClient(create_app(settings, store=store)) as api:
            hook = api.post("/api/v1/webhooks", json={
                "url": receiver.url, "events": ["stopping.recommended"]}).json()  # fmt: skip
            exp = api.post("/api/v1/experiments", json={
                "name": "st", "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
                "objective": "acc", "generator": "sobol",
                "stopping": {"rule": "improvement", "window": 3, "min_trials": 4}}).json()  # fmt: skip
            url = f"/api/v1/experiments/{exp['id']}/stopping"
            for i in range(3):
                r = api.post(f"/api/v1/experiments/{exp['id']}/trials",
                             json={"parameters": {"x": i / 10}})  # fmt: skip
                api.post(f"/api/v1/trials/{r.json()['id']}:complete",
                         json={"observations": {"acc": [0.8, 0.01]}})  # fmt: skip
                assert not api.get(url).json()["done"]  # not yet: no event
            r = api.post(f"/api/v1/experiments/{exp['id']}/trials", json={"parameters": {"x": 0.9}})
            api.post(f"/api/v1/trials/{r.json()['id']}:complete",
                     json={"observations": {"acc": [0.8, 0.01]}})  # fmt: skip
            for _ in range(3):  # polled three times: one event
                assert api.get(url).json()["done"]
            log = f"/api/v1/webhooks/{hook['id']}/deliveries"
            [row] = wait_for(lambda: [d for d in api.get(log).json()["deliveries"]
                                      if d["state"] == "delivered"])  # fmt: skip
            assert row["event"] == "stopping.recommended"
            assert row["payload"]["experiment_id"] == exp["id"] and row["payload"]["version"] == 1
            headers, body = receiver.posts[0]
            assert verify(hook["secret"], headers, body)
            assert json.loads(body)["data"]["rule"] == "improvement"
            # a new definition version re-arms it: once more, then quiet again
            api.patch(f"/api/v1/experiments/{exp['id']}", json={"bounds": {"x": [0, 2]}})
            assert api.get(url).json()["done"] and api.get(url).json()["done"]
            rows = wait_for(lambda: (lambda r: r if len(r) == 2 else None)(
                api.get(log).json()["deliveries"]))  # fmt: skip
            assert sorted(r["payload"]["version"] for r in rows) == [1, 2]
            assert len(receiver.posts) <= 2
    finally:
        receiver.close()


def test_privacy_budget_nearly_spent_once(store) -> None:
    engine = Engine(store, actor="t")
    receiver = Receiver(fail=0)
    try:
        hook = engine.create_webhook(receiver.url, ["privacy.budget_nearly_spent"],
                                     project="default", format="slack")  # fmt: skip
        ledger = CountingLedger(store.privacy_ledger("default"), "default", store)
        ledger.set_budget("ab", 10.0, 1e-5)
        ledger.charge("ab", 5.0, 1e-7, release_id="r1")  # 50%: nothing
        assert engine.webhook_deliveries(hook.id, project="default") == []
        ledger.charge("ab", 3.5, 1e-7, release_id="r2")  # 85%: the event
        ledger.charge("ab", 0.5, 1e-7, release_id="r3")  # 90%: not again
        [d] = engine.webhook_deliveries(hook.id, project="default")
        assert d.event == "privacy.budget_nearly_spent"
        assert d.payload["dataset"] == "ab" and d.payload["epsilon_spent"] == 8.5
        assert d.payload["epsilon_budget"] == 10.0
        # raising the budget re-arms it
        ledger.set_budget("ab", 11.0, 1e-5)
        ledger.charge("ab", 0.5, 1e-7, release_id="r4")  # 9.5 / 11 = 86%
        assert len(engine.webhook_deliveries(hook.id, project="default")) == 2
        deliverer = Deliverer(store, interval_s=0)
        assert deliverer.deliver_due() == 2
        deliverer.stop()
        text = json.loads(receiver.posts[0][1])["text"]
        assert "privacy.budget_nearly_spent (dataset ab)" in text and "of epsilon 10" in text
    finally:
        receiver.close()
