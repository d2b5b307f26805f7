"""The webhooks page: subscriptions and their delivery log for admins (local mode too), on
every backend; a viewer learns only that subscriptions exist; signing secrets and URL paths
(a Slack URL is a credential) never appear; another project's subscriptions never appear."""

from __future__ import annotations

from fastapi.testclient import TestClient

from assay.dashboards.sample import seed_experiment
from assay.service.app import create_app
from assay.service.auth import create_api_key
from assay.service.settings import Settings
from assay.service.webhooks import Deliverer
from assay.storage.memory import MemoryStore
from tests.dashboards.test_dashboard_pages import HTML, _form
from tests.service.test_webhooks import Receiver


def test_webhooks_page_lists_subscriptions_and_deliveries(store) -> None:
    receiver = Receiver(fail=1)
    settings = Settings(auth="none", reaper_interval_s=0, webhook_interval_s=0)
    try:
        with TestClient(create_app(settings, store=store)) as api:
            page = api.get("/webhooks", headers=HTML)
            assert page.status_code == 200 and 'id="webhooks-empty"' in page.text
            url = receiver.url + "/T0/B0/xoxsecretpath"
            hook = api.post("/api/v1/webhooks", json={
                "url": url, "events": ["trial.completed"]}).json()  # fmt: skip
            exp = api.post("/api/v1/experiments", json={
                "name": "wh", "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
                "objective": "y", "generator": "sobol"}).json()  # fmt: skip
            [t] = api.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json={}).json()["trials"]
            api.post(f"/api/v1/trials/{t['id']}:complete", json={"observations": {"y": 0.5}})
            deliverer = Deliverer(store, interval_s=0, backoff_s=0.0)
            deliverer.deliver_due()  # the receiver answers 500: pending, logged
            page = api.get("/webhooks", headers=HTML).text
            assert f'id="webhook-{hook["id"]}"' in page and "trial.completed" in page
            assert "HTTP 500" in page and "0 delivered" in page
            deliverer.deliver_due()  # recovered
            deliverer.stop()
            page = api.get("/webhooks", headers=HTML).text
            assert "1 delivered" in page and f'href="/experiments/{exp["id"]}"' in page
            assert hook["secret"] not in page and "xoxsecretpath" not in page
            assert "…path" in page  # the masked URL's tail
    finally:
        receiver.close()


def test_webhooks_page_is_admin_only_and_per_project() -> None:
    store = MemoryStore()
    seed_experiment(store, "a", n_trials=1, project="team-a")
    outbox = store.webhooks()
    outbox.create("team-a", "https://hooks.example.com/a-path-1234", ["trial.completed"], "whsec_a")
    outbox.create("team-b", "https://other.example.com/b", ["trial.failed"], "whsec_b")
    viewer = create_api_key(store, "team-a", role="viewer")
    admin = create_api_key(store, "team-a", role="admin")
    app = create_app(Settings(auth="keys", reaper_interval_s=0, webhook_interval_s=0), store)
    with TestClient(app) as client:
        _form(client, f"key={viewer}&next=/")
        page = client.get("/webhooks", headers=HTML)
        assert page.status_code == 200 and 'id="webhooks-admin-only"' in page.text
        assert "1 webhook subscription." in page.text
        assert "hooks.example.com" not in page.text and "whsec_" not in page.text
        client.cookies.clear()
        _form(client, f"key={admin}&next=/")
        page = client.get("/webhooks", headers=HTML).text
        assert "https://hooks.example.com/…1234" in page and "whsec_" not in page
        assert "other.example.com" not in page and "trial.failed" not in page
