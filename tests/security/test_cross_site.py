"""Cross-site requests: state changes must be JSON (415); a request without a key (cookie or
local no-auth) from another site is refused (403); dashboard forms need their CSRF token."""

from __future__ import annotations

import pytest

from assay.service.app import create_app
from assay.service.auth import Role
from assay.service.settings import Settings

FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def local(store, sec):
    with sec.local(create_app(Settings(reaper_interval_s=0), store=store)) as c:
        yield c


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x"])  # fmt: skip
def test_state_changes_must_be_json(local, store, sec, ctype) -> None:
    import json

    r = local.post("/api/v1/experiments", content=json.dumps(sec.EXP),
                   headers={"content-type": ctype})  # fmt: skip
    assert r.status_code == 415 and r.json()["error"]["details"]["field"] == "Content-Type"
    assert store.list_experiments() == []
    r = local.post("/api/v1/experiments", content=json.dumps(sec.EXP))  # no content type
    assert r.status_code == 415
    assert local.post("/api/v1/experiments", json=sec.EXP).status_code == 201


def test_no_auth_requests_from_another_site_are_refused(local, store, sec) -> None:
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": "null"}):  # fmt: skip
        r = local.post("/api/v1/experiments", json=sec.EXP, headers=headers)
        assert r.status_code == 403 and r.json()["error"]["code"] == "cross_site_request"
        # a script's read too (not a top-level navigation)
        r = local.get("/api/v1/experiments", headers={**headers, "Sec-Fetch-Mode": "cors"})
        assert r.status_code == 403
    assert store.list_experiments() == []
    ok = local.post("/api/v1/experiments", json=sec.EXP,
                    headers={"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"})  # fmt: skip
    assert ok.status_code == 201
    # a link followed from another site still opens the page
    nav = local.get("/", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"})
    assert nav.status_code == 200


def test_a_bearer_key_is_not_a_cross_site_credential(keyed, sec) -> None:
    member = sec.bearer(keyed.tokens[Role.MEMBER])
    r = keyed.post("/api/v1/experiments", json=sec.EXP,
                   headers={**member, "Origin": "https://tool.example"})  # fmt: skip
    assert r.status_code == 201  # browsers cannot attach it cross-site without CORS


def test_dashboard_forms_need_their_csrf_token(keyed, sec) -> None:
    key = keyed.tokens[Role.VIEWER]
    r = keyed.post("/login", content=f"key={key}&next=/", headers=FORM, follow_redirects=False)
    assert r.status_code == 403 and "assay_session" not in r.cookies
    keyed.get("/login")
    csrf = keyed.cookies.get("assay_csrf")
    assert csrf and f'value="{csrf}"' in keyed.get("/login").text
    r = keyed.post("/login", content=f"key={key}&next=/&csrf=forged", headers=FORM,
                   follow_redirects=False)  # fmt: skip
    assert r.status_code == 403
    r = keyed.post("/login", content=f"key={key}&next=/&csrf={csrf}", headers=FORM,
                   follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    # logout without the token is refused and the session lives on
    assert keyed.post("/logout", content="", headers=FORM).status_code == 403
    page = keyed.get("/", headers={"accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 200 and f'name="csrf" value="{csrf}"' in page.text
    # a cross-site form post is refused before it reaches the form handler
    r = keyed.post("/logout", content=f"csrf={csrf}",
                   headers={**FORM, "Origin": "https://evil.example"})  # fmt: skip
    assert r.status_code == 403
