"""Roles on keys: viewer reads, member runs experiments, admin manages keys and budgets; a
short role answers 403 naming the role needed, and changes nothing. Revocation is immediate,
also on a second replica (another app and store on the same PostgreSQL database)."""

from __future__ import annotations

from assay.service.app import create_app
from assay.service.auth import Role, create_api_key
from assay.service.cli import main
from assay.service.settings import Settings
from assay.storage.factory import open_store


def _forbidden(r, needed: str) -> None:
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["code"] == "forbidden" and err["details"]["role_needed"] == needed, err
    assert needed in err["message"]


def test_viewer_reads_member_runs_admin_manages(keyed, store, sec) -> None:
    t = keyed.tokens
    viewer, member, admin = (sec.bearer(t[r]) for r in (Role.VIEWER, Role.MEMBER, Role.ADMIN))
    # viewer: reads only
    assert keyed.get("/api/v1/experiments", headers=viewer).status_code == 200
    _forbidden(keyed.post("/api/v1/experiments", json=sec.EXP, headers=viewer), "member")
    assert store.list_experiments() == []
    # member: experiments, ask/tell
    exp = keyed.post("/api/v1/experiments", json=sec.EXP, headers=member).json()
    ask = keyed.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json={}, headers=member)
    assert ask.status_code == 200, ask.text
    [trial] = ask.json()["trials"]
    _forbidden(
        keyed.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json={}, headers=viewer),
        "member",
    )
    _forbidden(
        keyed.post(f"/api/v1/trials/{trial['id']}:complete", json={"observations": {"y": 1}},
                   headers=viewer), "member",
    )  # fmt: skip
    _forbidden(keyed.post(f"/api/v1/experiments/{exp['id']}/run:start", headers=viewer), "member")
    done = keyed.post(
        f"/api/v1/trials/{trial['id']}:complete", json={"observations": {"y": 1}}, headers=member
    )
    assert done.status_code == 200, done.text
    # budgets and keys: admin only
    budget = {"epsilon": 1.0, "delta": 1e-6}
    _forbidden(keyed.put("/api/v1/datasets/d/privacy-budget", json=budget, headers=member), "admin")
    _forbidden(keyed.get("/api/v1/keys", headers=member), "admin")
    _forbidden(keyed.post("/api/v1/keys", json={"role": "admin"}, headers=member), "admin")
    assert keyed.put("/api/v1/datasets/d/privacy-budget", json=budget, headers=admin).is_success
    listed = keyed.get("/api/v1/keys", headers=admin).json()["keys"]
    assert {(k["name"], k["role"]) for k in listed} == {(r.value, r.value) for r in Role}
    assert all("token" not in k and "key_hash" not in k for k in listed)


def test_admin_creates_and_revokes_keys_of_its_project_only(keyed, store, sec) -> None:
    admin = sec.bearer(keyed.tokens[Role.ADMIN])
    create_api_key(store, "other", role=Role.ADMIN)
    r = keyed.post("/api/v1/keys", json={"name": "ci", "role": "viewer"}, headers=admin)
    assert r.status_code == 201, r.text
    new = r.json()
    assert (
        new["project"] == "team" and new["role"] == "viewer" and new["token"].startswith("assay_")
    )
    assert keyed.get("/api/v1/experiments", headers=sec.bearer(new["token"])).status_code == 200
    r = keyed.post("/api/v1/keys", json={"project": "other"}, headers=admin)
    assert r.status_code == 403 and r.json()["error"]["details"]["field"] == "project"
    other_id = next(k.id for k in store.list_api_keys(project="other"))
    assert keyed.post(f"/api/v1/keys/{other_id}:revoke", headers=admin).status_code == 404
    assert store.list_api_keys(project="other")[0].revoked_at is None
    r = keyed.post(f"/api/v1/keys/{new['id']}:revoke", headers=admin)
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    r = keyed.get("/api/v1/experiments", headers=sec.bearer(new["token"]))
    assert r.status_code == 401  # at once: nothing caches a valid key
    r = keyed.post("/api/v1/keys", json={"role": "root"}, headers=admin)
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "role"


def test_revoked_key_stops_on_a_second_replica_at_once(postgres_url, sec) -> None:
    stores = [open_store(postgres_url, migrate=False) for _ in range(2)]
    apps = [create_app(Settings(auth="keys", reaper_interval_s=0), store=s) for s in stores]
    admin = create_api_key(stores[0], "team", role=Role.ADMIN)
    member = create_api_key(stores[0], "team", role=Role.MEMBER)
    with sec.remote(apps[0]) as one, sec.remote(apps[1]) as two:
        for _ in range(3):  # warm whatever replica two might cache
            assert two.get("/api/v1/experiments", headers=sec.bearer(member)).status_code == 200
        # the member key also holds a dashboard session on replica two
        two.get("/login")
        csrf = two.cookies.get("assay_csrf")
        r = two.post("/login", content=f"key={member}&next=/&csrf={csrf}", follow_redirects=False,
                     headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert r.status_code == 303, r.text
        assert (
            two.get("/", headers={"accept": "text/html"}, follow_redirects=False).status_code == 200
        )
        key_id = next(k.id for k in stores[0].list_api_keys() if k.role == "member")
        assert one.post(f"/api/v1/keys/{key_id}:revoke", headers=sec.bearer(admin)).is_success
        assert two.get("/api/v1/experiments", headers=sec.bearer(member)).status_code == 401
        page = two.get("/", headers={"accept": "text/html"}, follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
    for s in stores:
        s.close()


def test_cli_keys_create_list_revoke(tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    open_store(url).close()
    assert (
        main(["keys", "create", "--project", "p", "--role", "viewer", "--database-url", url]) == 0
    )
    token = capsys.readouterr().out.strip()
    assert main(["keys", "list", "--database-url", url]) == 0
    out = capsys.readouterr().out
    assert "viewer" in out and token[:10] in out and token not in out and "active" in out
    store = open_store(url, migrate=False)
    [key] = store.list_api_keys()
    assert key.role == "viewer" and store.key_for_hash(__import__("hashlib").sha256(
        token.encode()).hexdigest()) is not None  # fmt: skip
    assert main(["keys", "revoke", str(key.id), "--database-url", url]) == 0
    assert store.list_api_keys()[0].revoked_at is not None
    assert store.key_for_hash(__import__("hashlib").sha256(token.encode()).hexdigest()) is None
    store.close()
    assert main(["keys", "revoke", "999", "--database-url", url]) == 1


def test_keys_made_before_roles_become_admin(tmp_path) -> None:
    """The migration keeps old deployments working: a pre-roles key can still do everything."""
    from sqlalchemy import create_engine, text

    from assay.storage.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    upgrade(engine, "0003")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO projects (name, created_at) VALUES ('old', '2026-01-01')"))
        conn.execute(text(
            "INSERT INTO api_keys (project_id, name, prefix, key_hash, created_at) "
            "VALUES (1, 'k', 'assay_ab', :h, '2026-01-01')"
        ), {"h": "a" * 64})  # fmt: skip
    upgrade(engine)
    engine.dispose()
    store = open_store(url, migrate=False)
    key = store.key_for_hash("a" * 64)
    assert key is not None and key.role == "admin" and key.project == "old"
    store.close()


def test_local_mode_is_admin(store, sec) -> None:
    with sec.local(create_app(Settings(reaper_interval_s=0), store=store)) as c:
        r = c.post("/api/v1/keys", json={"project": "p", "role": "member"})
        assert r.status_code == 201 and r.json()["project"] == "p"
        assert c.get("/api/v1/keys").json()["keys"][0]["role"] == "member"


def test_a_job_token_is_never_remembered_as_unknown(keyed, store, sec) -> None:
    """Only unknown *API keys* are cached; a job token checked before its job row exists
    works as soon as it does (the orchestrator may race its first report)."""
    from assay.platform.jobspec import Job, JobState
    from assay.service.auth import hash_token

    member = sec.bearer(keyed.tokens[Role.MEMBER])
    exp = keyed.post("/api/v1/experiments", json=sec.EXP, headers=member).json()
    [t] = keyed.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json={},
                     headers=member).json()["trials"]  # fmt: skip
    token = "assay_job_" + "y" * 32
    report = {"metrics": {"loss": 1.0}}
    url = f"/api/v1/trials/{t['id']}/reports"
    assert keyed.post(url, json=report, headers=sec.bearer(token)).status_code == 401
    store.create_job(Job(0, t["id"], exp["id"], "local", "w1", JobState.RUNNING),
                     token_hash=hash_token(token))  # fmt: skip
    assert keyed.post(url, json=report, headers=sec.bearer(token)).status_code == 201
