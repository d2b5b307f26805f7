"""Webhooks end to end with a real local HTTP receiver: a trial completed over REST is
delivered from the outbox, signed (HMAC-SHA256 over timestamp and body), retried with
back-off while the receiver fails and delivered once it recovers, with every attempt in the
delivery log; Slack-compatible bodies; every backend."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient

from assay.platform.errors import ValidationError
from assay.service.app import create_app
from assay.service.settings import Settings
from assay.service.webhooks import sign, slack_body, verify


class Receiver:
    """A local HTTP server that answers 500 to the first ``fail`` posts, then 200."""

    def __init__(self, fail: int) -> None:
        self.fail, self.posts = fail, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append((dict(self.headers), body))
                code = 500 if len(receiver.posts) <= receiver.fail else 200
                self.send_response(code)
                self.end_headers()

            def log_message(self, *a) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_delivery_is_signed_retried_and_logged(store) -> None:
    receiver = Receiver(fail=2)
    settings = Settings(auth="none", reaper_interval_s=0, webhook_interval_s=0.1,
                        webhook_backoff_s=0.2)  # fmt: skip
    try:
        with TestClient(create_app(settings, store=store)) as api:
            hook = api.post("/api/v1/webhooks", json={
                "url": receiver.url, "events": ["trial.completed", "trial.failed"]}).json()  # fmt: skip
            assert hook["secret"].startswith("whsec_")
            exp = api.post("/api/v1/experiments", json={
                "name": "wh", "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
                "objective": "y", "generator": "sobol"}).json()  # fmt: skip
            [t] = api.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json={}).json()["trials"]
            r = api.post(f"/api/v1/trials/{t['id']}:complete", json={"observations": {"y": 0.5}})
            assert r.status_code == 200

            def delivered():
                rows = api.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"]
                return rows if rows and rows[0]["state"] == "delivered" else None

            [row] = wait_for(delivered)
            assert row["attempts"] == 3 and row["last_status"] == 200
            assert row["event"] == "trial.completed" and row["payload"]["trial_id"] == t["id"]
            assert api.get("/api/v1/webhooks").json()["webhooks"][0]["url"] == receiver.url
    finally:
        receiver.close()
    assert len(receiver.posts) == 3
    headers, body = receiver.posts[-1]
    assert verify(hook["secret"], headers, body)
    assert not verify("whsec_wrong", headers, body)
    tampered = body.replace(b"0.5", b"0.9")
    assert not verify(hook["secret"], headers, tampered)
    content = json.loads(body)
    assert content["event"] == "trial.completed" and content["data"]["observations"]
    # the same delivery id on every attempt: receivers deduplicate on it
    assert len({h["X-Assay-Delivery"] for h, _ in receiver.posts}) == 1


def test_signature_timestamp_replay_and_slack_body() -> None:
    body = b'{"a": 1}'
    old = int(time.time()) - 3600
    headers = {"X-Assay-Timestamp": str(old), "X-Assay-Signature": sign("s", old, body)}
    assert not verify("s", headers, body)  # a replayed, stale delivery
    assert verify("s", headers, body, tolerance_s=7200)
    text = slack_body("trial.completed", {"experiment_id": 3, "trial_index": 4, "summary": "y=1"})
    assert text == {"text": "Assay: trial.completed (experiment 3, trial #4) y=1"}


def test_client_webhook_verbs_validate(client) -> None:
    hook = client.create_webhook("http://127.0.0.1:9/x", ["trial.failed"], format="slack")
    assert hook.id in [h.id for h in client.webhooks()]
    assert client.webhook_deliveries(hook.id) == []
    with pytest.raises(ValidationError):
        client.create_webhook("http://127.0.0.1:9/x", ["no.such.event"])
