"""Another project's key sees none of this round's experiment routes: each answers 404 (the
experiment does not exist for that caller), never 200 or a different error."""

from __future__ import annotations


def test_new_experiment_routes_are_scoped_to_the_callers_project(make_api) -> None:
    api = make_api()
    mine, theirs = api.key("admin", "team"), api.key("admin", "other")
    exp = api.http.post(
        "/api/v1/experiments",
        json={"name": "scoped", "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
              "objectives": ["a", "b"], "generator": "sobol", "seed": 0},
        headers=mine,
    ).json()  # fmt: skip
    [t] = api.http.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json={"n": 1},
                        headers=mine).json()["trials"]  # fmt: skip
    base = f"/api/v1/experiments/{exp['id']}"
    for path in ("/pareto", "/stopping", "/curves", "/export", "/versions", "/best"):
        r = api.http.get(base + path, headers=theirs)
        assert r.status_code == 404, (path, r.status_code, r.text)
    r = api.http.patch(base, json={"bounds": {"x": [0, 2]}}, headers=theirs)
    assert r.status_code == 404, r.text
    r = api.http.get(f"/api/v1/trials/{t['id']}/should_stop", headers=theirs)
    assert r.status_code == 404, r.text
    # the owner still sees it unchanged
    assert api.http.get(base, headers=mine).json()["config"]["parameters"][0]["bounds"] == [0, 1]
