"""Webhook subscriptions carry their signing secrets: only a project admin may create or list
them or read their delivery log; a member gets 403 naming the role, and nothing is stored."""

from __future__ import annotations

from assay.service.auth import Role


def test_only_admins_manage_webhooks(keyed, store, sec) -> None:
    t = keyed.tokens
    member, admin = sec.bearer(t[Role.MEMBER]), sec.bearer(t[Role.ADMIN])
    body = {"url": "http://127.0.0.1:9/hook", "events": ["trial.completed"]}
    for r in (
        keyed.post("/api/v1/webhooks", json=body, headers=member),
        keyed.get("/api/v1/webhooks", headers=member),
        keyed.get("/api/v1/webhooks/1/deliveries", headers=member),
    ):
        assert r.status_code == 403, r.text
        assert r.json()["error"]["details"]["role_needed"] == "admin"
    assert store.webhooks().list() == []
    r = keyed.post("/api/v1/webhooks", json=body, headers=admin)
    assert r.status_code == 201, r.text
    listed = keyed.get("/api/v1/webhooks", headers=admin).json()["webhooks"]
    assert [h["url"] for h in listed] == [body["url"]]
