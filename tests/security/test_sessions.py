"""Attacks 3 and 4: the dashboard cookie is a random server-side session id (stored hashed,
expiring, ended by logout and by revoking its key); reading ``api_keys`` signs nobody in; a
job's trial-scoped token cannot browse the dashboard; sign-in attempts are rate-limited."""

from __future__ import annotations

import hashlib

import pytest

from assay.platform.jobspec import Job, JobState
from assay.service.app import create_app
from assay.service.auth import Role, create_api_key, hash_token
from assay.service.settings import Settings

FORM = {"content-type": "application/x-www-form-urlencoded"}
HTML = {"accept": "text/html"}


def sign_in(c, key: str, **headers):
    c.get("/login")
    csrf = c.cookies.get("assay_csrf")
    return c.post("/login", content=f"key={key}&next=/&csrf={csrf}",
                  headers={**FORM, **headers}, follow_redirects=False)  # fmt: skip


def signed_in(c) -> bool:
    return c.get("/", headers=HTML, follow_redirects=False).status_code == 200


def test_session_cookie_is_random_hashed_and_strict(keyed, store) -> None:
    key = keyed.tokens[Role.VIEWER]
    r = sign_in(keyed, key)
    sid = r.cookies.get("assay_session")
    assert sid and sid != hash_token(key) and key not in sid
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    assert signed_in(keyed)
    # the database holds only the session id's hash
    assert store.session_key(hashlib.sha256(sid.encode()).hexdigest(), now=_now()) is not None
    assert store.session_key(sid, now=_now()) is None
    # behind an https proxy the cookie is Secure
    r = sign_in(keyed, key, **{"X-Forwarded-Proto": "https"})
    assert "secure" in r.headers["set-cookie"].lower()


def test_a_stolen_key_hash_is_not_a_session(keyed, store) -> None:
    """Attack 3: whoever reads ``api_keys`` (a backup, a replica) learns key hashes; they
    used to be the cookie."""
    key = keyed.tokens[Role.ADMIN]
    keyed.cookies.set("assay_session", hash_token(key))
    assert not signed_in(keyed)


def test_logout_and_revocation_end_the_session(keyed, store) -> None:
    key = create_api_key(store, "team", name="laptop", role=Role.VIEWER)
    sign_in(keyed, key)
    sid = keyed.cookies.get("assay_session")
    keyed.post("/logout", content=f"csrf={keyed.cookies.get('assay_csrf')}", headers=FORM)
    keyed.cookies.clear()
    keyed.cookies.set("assay_session", sid)  # a copy of the cookie, replayed
    assert not signed_in(keyed)
    keyed.cookies.clear()
    sign_in(keyed, key)
    assert signed_in(keyed)
    [k] = [k for k in store.list_api_keys() if k.name == "laptop"]
    store.revoke_api_key(k.id)
    assert not signed_in(keyed)


def test_sessions_expire(store, sec) -> None:
    app = create_app(Settings(auth="keys", session_ttl_s=0.0, reaper_interval_s=0), store=store)
    key = create_api_key(store, "team", role=Role.VIEWER)
    with sec.remote(app) as c:
        assert sign_in(c, key).status_code == 303
        assert not signed_in(c)


@pytest.fixture
def job_token(keyed, store, sec):
    """A running trial with a job and its scoped token, plus a second trial's id."""
    member = sec.bearer(keyed.tokens[Role.MEMBER])
    exp = keyed.post("/api/v1/experiments", json=sec.EXP, headers=member).json()
    trials = keyed.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json={"n": 2},
                        headers=member).json()["trials"]  # fmt: skip
    token = "assay_jobtoken_" + "x" * 30
    store.create_job(
        Job(0, trials[0]["id"], exp["id"], "local", "w1", JobState.RUNNING),
        token_hash=hash_token(token),
    )
    return token, trials[0]["id"], trials[1]["id"]


def test_job_tokens_cannot_browse_the_dashboard(keyed, job_token, sec) -> None:
    """Attack 4: the REST API answers a job token 403 outside its trial; so must the pages."""
    token, own, other = job_token
    h = {**sec.bearer(token), **HTML}
    assert keyed.post(f"/api/v1/trials/{own}/reports", json={"metrics": {"a": 1.0}},
                      headers=sec.bearer(token)).status_code == 201  # fmt: skip
    for path in ("/", "/jobs", f"/trials/{other}", f"/trials/{own}", f"/trials/{other}/live"):
        r = keyed.get(path, headers=h, follow_redirects=False)
        assert r.status_code in (401, 403, 303), (path, r.status_code)
        assert r.status_code != 200
    assert sign_in(keyed, token).status_code == 401
    assert "assay_session" not in keyed.cookies


def test_sign_in_attempts_are_rate_limited(store, sec) -> None:
    app = create_app(Settings(auth="keys", login_attempts_per_min=3, reaper_interval_s=0), store)
    key = create_api_key(store, "team", role=Role.VIEWER)
    with sec.remote(app) as c:
        codes = [sign_in(c, f"assay_guess{i}").status_code for i in range(4)]
        assert codes == [401, 401, 401, 429]
        r = sign_in(c, key)  # even the right key waits
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)
