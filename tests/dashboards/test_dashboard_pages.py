"""Dashboard pages and feeds through the real app (no browser): rendering, empty states, the
trials table, the live cursor, panels and their error cards, and sign-in."""

from __future__ import annotations

import re

import pytest

from assay.dashboards import panels as panel_registry
from assay.dashboards.data import TableQuery, fmt_value, query_trials
from assay.dashboards.panels import Panel, PanelResult
from assay.dashboards.routes import PLOTLY_VERSION, STATIC
from assay.platform.experiment import Observation, TrialState
from assay.service.auth import hash_token

HTML = {"accept": "text/html"}
JSON = {"accept": "application/json"}


def test_every_page_renders(seeded) -> None:
    client, _, ids = seeded
    r = client.get("/", headers=HTML)
    assert r.status_code == 200
    for name in ("ranking-v2", "checkout-flow", "new-idea"):
        assert name in r.text
    assert "/static/vendor/plotly" not in r.text  # no charts on the list
    r = client.get(f"/experiments/{ids['big']}", headers=HTML)
    assert r.status_code == 200
    assert f"/static/vendor/plotly-assay.min.js?v={PLOTLY_VERSION}" in r.text
    assert 'id="page-data"' in r.text and "Optimization trace" in r.text
    for key in ("slices", "contour", "model-fit", "importance", "feasibility"):
        assert f'data-panel="{key}"' in r.text
    assert client.get("/jobs", headers=HTML).status_code == 200
    assert client.get("/trials/1", headers=HTML).status_code == 200
    static = client.get(f"/static/vendor/plotly-assay.min.js?v={PLOTLY_VERSION}")
    assert static.status_code == 200 and "immutable" in static.headers["cache-control"]
    assert static.text.startswith(
        "/**\n* plotly.js v4.1.1 partial bundle (core + bar, contour, parcoords)"
    )


def test_plotly_bundle_is_partial_and_sent_compressed(seeded) -> None:
    """Plotly.js is the partial bundle (a quarter of the full 4.7 MB), sent pre-compressed to
    browsers that accept gzip and plain to those that do not; pages and large JSON are
    gzipped on the fly, small API bodies are not."""
    import gzip

    client, _, ids = seeded
    url = f"/static/vendor/plotly-assay.min.js?v={PLOTLY_VERSION}"
    plain = client.get(url, headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert 500_000 < len(plain.content) < 1_500_000
    raw = client.get(url, headers={"accept-encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip"
    assert raw.headers["vary"] == "Accept-Encoding"
    assert "immutable" in raw.headers["cache-control"]
    assert raw.headers["content-type"].startswith("text/javascript")
    assert int(raw.headers["content-length"]) < len(plain.content) / 2
    assert raw.content == plain.content  # the client decoded the .gz: the same file
    assert (
        gzip.decompress((STATIC / "vendor" / "plotly-assay.min.js.gz").read_bytes())
        == (STATIC / "vendor" / "plotly-assay.min.js").read_bytes()
    )  # the .gz is the current bundle (rebuild both with build_plotly.sh)
    page = client.get(f"/experiments/{ids['big']}", headers={**HTML, "accept-encoding": "gzip"})
    assert page.headers["content-encoding"] == "gzip"
    health = client.get("/api/v1/health", headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in health.headers  # below the 1 KiB threshold


def test_empty_states_say_what_to_do_next(seeded) -> None:
    client, _, ids = seeded
    r = client.get(f"/experiments/{ids['empty']}", headers=HTML)
    assert "No trials yet" in r.text and "trials:ask" in r.text
    r = client.get("/jobs", headers=HTML)
    assert "No jobs yet" in r.text and "job spec" in r.text
    r = client.get(f"/experiments/{ids['few']}/panels/model-fit", headers=JSON)
    body = r.json()
    assert r.status_code == 200 and body["figure"] is None
    assert "at least 3" in body["empty"]["message"]
    assert "Complete 1 more trial and" in body["empty"]["message"]
    r = client.get(f"/experiments/{ids['empty']}/model-trace", headers=JSON)
    assert "at least 3" in r.json()["empty"]["message"]


def test_missing_experiment_is_a_404_page_for_browsers_and_json_for_scripts(seeded) -> None:
    client, _, _ = seeded
    r = client.get("/experiments/999", headers=HTML)
    assert r.status_code == 404 and "Not found" in r.text and "<html" in r.text
    r = client.get("/experiments/999/live?after=0", headers=JSON)
    assert r.status_code == 404 and r.json()["error"]["message"] == "experiment 999 not found"
    r = client.get("/no/such/page", headers=HTML)
    assert r.status_code == 404 and "Page not found" in r.text
    for bad in ("/experiments/abc", f"/trials/{2**70}"):
        r = client.get(bad, headers=HTML)
        assert r.status_code == 404 and "Page not found" in r.text
    r = client.get("/api/v1/experiments/999")  # the API keeps its JSON errors
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_model_panels_return_figures(seeded) -> None:
    client, _, ids = seeded
    exp = ids["big"]
    fits_before = client.app.state.dashboard.models.fits
    traces = {}
    for key in ("slices", "contour", "model-fit", "importance", "feasibility"):
        body = client.get(f"/experiments/{exp}/panels/{key}", headers=JSON).json()
        assert body["error"] is None and body["empty"] is None, (key, body)
        traces[key] = len(body["figure"]["data"])
    # 3 continuous parameters (two band edges + a line each), one choice (points with bars)
    assert traces == {"slices": 10, "contour": 3, "model-fit": 2, "importance": 2, "feasibility": 1}
    trace = client.get(f"/experiments/{exp}/model-trace", headers=JSON).json()["trace"]
    assert trace["recommended"]["feasible"] and len(trace["mean"]) == 24
    # one fit served every panel: the model is cached per (experiment, completed trials)
    assert client.app.state.dashboard.models.fits == fits_before + 1
    body = client.get(
        f"/experiments/{exp}/panels/contour?x=lr&y=dropout&view=feasibility", headers=JSON
    ).json()
    assert body["figure"]["data"][0]["zmax"] == 1
    bad = client.get(f"/experiments/{exp}/panels/contour?x=lr&y=lr", headers=JSON).json()
    assert bad["error"]["title"] == "This view cannot be drawn"


def test_a_failing_panel_becomes_an_error_card_not_a_500(seeded, monkeypatch) -> None:
    client, _, ids = seeded

    def broken(ctx) -> PanelResult:
        raise ZeroDivisionError("the analysis divided by zero")

    def arm_effects(ctx) -> PanelResult:
        return PanelResult(empty={"title": "No batch trials", "message": "nothing to compare"})

    monkeypatch.setattr(panel_registry, "PANELS", list(panel_registry.PANELS))
    panel_registry.register_panel(Panel("broken", "Broken", "always fails", broken))
    panel_registry.register_panel(
        Panel("arm-effects", "Arm effects", "placeholder", arm_effects, model_based=False),
        before="slices",
    )
    page = client.get(f"/experiments/{ids['big']}", headers=HTML).text
    keys = re.findall(r'data-panel="([a-z-]+)"', page)
    assert keys[:2] == ["arm-effects", "slices"] and keys[-1] == "broken"
    r = client.get(f"/experiments/{ids['big']}/panels/broken", headers=JSON)
    assert r.status_code == 200
    err = r.json()["error"]
    assert err["title"] == "This analysis failed" and "divided by zero" in err["message"]
    assert client.get(f"/experiments/{ids['big']}/panels/nope", headers=JSON).status_code == 404


def test_live_feed_reports_new_events_and_late_commits(seeded) -> None:
    client, store, ids = seeded
    exp = ids["big"]
    page = client.get(f"/experiments/{exp}", headers=HTML).text
    cursor = int(re.search(r'"cursor":(\d+)', page).group(1))
    r = client.get(f"/experiments/{exp}/live?after={cursor}", headers=JSON).json()
    known = r["known"]
    quiet = client.get(
        f"/experiments/{exp}/live?after={cursor}&known={','.join(map(str, known))}", headers=JSON
    ).json()
    assert quiet["events"] == [] and quiet["trials"] == [] and quiet["cursor"] == cursor
    running = [t for t in store.get_experiment(exp).trials if t.state is TrialState.RUNNING]
    t = running[0]
    store.transition_trial(
        t.id, TrialState.COMPLETED,
        observations={t.arms[0].name: {"accuracy": Observation("accuracy", 0.99, 0.01),
                                       "latency_ms": Observation("latency_ms", 5.0, 0.5)}},
    )  # fmt: skip
    r = client.get(
        f"/experiments/{exp}/live?after={cursor}&known={','.join(map(str, known))}", headers=JSON
    ).json()
    assert [e["to"] for e in r["events"]] == ["completed"] and r["cursor"] > cursor
    [row] = r["trials"]
    assert row["id"] == t.id and row["s"] == "completed" and row["v"]["accuracy"] == [0.99, 0.01]
    assert row["f"] is True and r["best"]["value"] == 0.99 and r["counts"]["completed"] == 25
    # An event below the cursor that the page has not seen (a late PostgreSQL commit) is sent.
    late = r["known"][-1]
    again = client.get(
        f"/experiments/{exp}/live?after={r['cursor']}&known={','.join(map(str, r['known'][:-1]))}",
        headers=JSON,
    ).json()
    assert [e["id"] for e in again["events"]] == [late]


def test_trials_table_filters_sorts_and_pages_on_the_server(seeded) -> None:
    client, store, ids = seeded
    exp = store.get_experiment(ids["big"])
    page = query_trials(exp, TableQuery(sort="metric:accuracy", dir="desc", per_page=5))
    values = [t.values["accuracy"].mean for t in page.rows]
    assert values == sorted(values, reverse=True) and page.pages == 6 and page.filtered == 27
    best = max(t.values["accuracy"].mean for t in exp.trials if t.values)
    assert values[0] == best
    asc = query_trials(exp, TableQuery(sort="metric:accuracy", dir="asc", page=6, per_page=5))
    assert all(not t.values for t in asc.rows[-2:])  # missing values last either way
    failed = query_trials(exp, TableQuery(state="failed"))
    assert [t.state for t in failed.rows] == [TrialState.FAILED]
    assert query_trials(exp, TableQuery(q="#3")).rows[0].index == 3
    violated = query_trials(exp, TableQuery(feasible="no")).rows
    assert violated and all(t.values["latency_ms"].mean > 20 for t in violated)
    r = client.get(f"/experiments/{exp.id}?partial=1&state=running&sort=index&dir=asc")
    assert r.text.count('data-trial="') == 2 and "<html" not in r.text
    assert "2 of 27 trials match" in r.text


def test_number_formatting() -> None:
    assert fmt_value(0.123456) == "0.1235"
    assert fmt_value(1.0e-5) == "1e-5" and fmt_value(2.5e7) == "2.5e7"
    assert fmt_value(12345) == "12,345" and fmt_value(None) == "—" and fmt_value("adam") == "adam"
    assert fmt_value(20.0) == "20" and fmt_value(1.5e-4) == "1.5e-4"


def _form(client, body: str, path: str = "/login", **kw):
    """POST a dashboard form with the browser's CSRF token (as the page would)."""
    client.get("/login", headers=HTML)  # sets the assay_csrf cookie
    csrf = client.cookies.get("assay_csrf")
    return client.post(
        path, content=f"{body}&csrf={csrf}",
        headers={"content-type": "application/x-www-form-urlencoded"}, **kw,
    )  # fmt: skip


def test_keys_mode_login_cookie_and_project_isolation(keys_app) -> None:
    client, key, mine, theirs = keys_app
    r = client.get("/", headers=HTML, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2F"
    r = client.get(f"/experiments/{mine['big']}/live", headers=JSON)
    assert r.status_code == 401 and r.json()["error"]["login"] == "/login"
    r = _form(client, "key=assay_wrong&next=/")
    assert r.status_code == 401 and "invalid or revoked API key" in r.text
    r = _form(client, f"key={key}&next=/jobs", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/jobs"
    cookie = r.cookies.get("assay_session")
    assert cookie and key not in cookie and hash_token(key) not in cookie  # a random id
    set_cookie = r.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    page = client.get("/", headers=HTML)
    assert page.status_code == 200 and "ranking-v2" in page.text and "secret" not in page.text
    r = client.get(f"/experiments/{theirs}", headers=HTML)
    assert r.status_code == 404 and "another project" in r.text
    assert client.get(f"/experiments/{theirs}/panels/slices", headers=JSON).status_code == 404
    for chart in ("trace", "parallel", "model-trace"):  # the page's server-built charts
        assert client.get(f"/experiments/{theirs}/{chart}", headers=JSON).status_code == 404
        assert client.get(f"/experiments/{mine['big']}/{chart}", headers=JSON).status_code == 200
    assert client.get(f"/experiments/{mine['big']}", headers=HTML).status_code == 200
    # the cookie does not authenticate the REST API, which still wants the key
    assert client.get("/api/v1/experiments").status_code == 401
    r = _form(client, "", path="/logout", follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/", headers=HTML, follow_redirects=False).status_code == 303


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example"])
def test_login_never_redirects_off_site(keys_app, target) -> None:
    client, key, _, _ = keys_app
    r = _form(client, f"key={key}&next={target}", follow_redirects=False)
    assert r.headers["location"] == "/"


class ListJobsView:
    """A JobsView over plain lists: what the orchestrator's implementation will return."""

    available = True
    empty_message = "no jobs"

    def __init__(self, jobs, curves, log):
        self.jobs, self.curves, self.log = jobs, curves, log

    def running_jobs(self, *, project):
        return [j for j in self.jobs if j.state == "running"]

    def failed_jobs(self, *, project, limit=20):
        return [j for j in self.jobs if j.state == "failed"][:limit]

    def workers(self, *, project):
        from assay.dashboards.jobs import WorkerInfo

        return [WorkerInfo("gpu-node-1", "local", {"gpus": 8}, running_jobs=1, capacity=8)]

    def jobs_for_trials(self, trial_ids, *, project):
        return {j.trial_id: j for j in self.jobs if j.trial_id in set(trial_ids)}

    def intermediate_curves(self, trial_id, *, project):
        return self.curves if trial_id == self.jobs[0].trial_id else []

    def log_tail(self, trial_id, *, project, lines=200):
        return self.log if trial_id == self.jobs[0].trial_id else None


def test_jobs_data_renders_on_the_jobs_trial_and_experiment_pages(seeded) -> None:
    from datetime import UTC, datetime, timedelta

    from assay.dashboards.jobs import JobInfo, JobsView, MetricCurve

    client, store, ids = seeded
    trials = store.get_experiment(ids["big"]).trials
    run, bad = trials[-3], trials[-1]  # running, failed
    now = datetime.now(UTC)
    view = ListJobsView(
        [
            JobInfo(
                "j1",
                ids["big"],
                run.id,
                run.index,
                "running",
                "local",
                "ranking-v2",
                worker="gpu-node-1",
                resources={"gpu": 3, "gpu_name": "H100"},
                progress=0.4,
                step=400,
                started_at=now - timedelta(minutes=7),
            ),
            JobInfo(
                "j2",
                ids["big"],
                bad.id,
                bad.index,
                "failed",
                "local",
                "ranking-v2",
                worker="gpu-node-1",
                attempt=2,
                finished_at=now,
                error_tail="RuntimeError: CUDA out of memory",
            ),
        ],
        [MetricCurve("loss", [0, 100, 200], [2.0, 1.1, 0.7])],
        "step 400 loss 0.70\n",
    )
    assert isinstance(view, JobsView)
    client.app.state.jobs_view = view
    page = client.get("/jobs", headers=HTML).text
    assert "gpu-node-1" in page and "40%" in page and "step 400" in page and "7m 0" in page
    assert "CUDA out of memory" in page and "attempt 2" in page
    trial = client.get(f"/trials/{run.id}", headers=HTML).text
    assert "step 400 loss 0.70" in trial and 'id="chart-curves"' in trial
    assert '"steps":[0,100,200]' in trial and "GPU 3" in trial
    table = client.get(f"/experiments/{ids['big']}?partial=1&state=running").text
    assert "gpu-node-1 · GPU 3" in table


def test_arm_effects_panel_for_an_ab_experiment(seeded) -> None:
    from assay.dashboards.sample import seed_ab_experiment

    client, store, ids = seeded
    ab = seed_ab_experiment(store, "pricing-ab", rounds=3)
    page = client.get(f"/experiments/{ab.id}", headers=HTML).text
    keys = re.findall(r'data-panel="([a-z-]+)"', page)
    assert keys[0] == "arm-effects"  # first on an A/B experiment
    assert "arm-effects" not in client.get(f"/experiments/{ids['big']}", headers=HTML).text
    body = client.get(f"/experiments/{ab.id}/panels/arm-effects", headers=JSON).json()
    assert body["error"] is None and body["empty"] is None, body
    observed, model = body["figure"]["data"]
    assert len(observed["y"]) == 3 * 5  # every non-control arm, once
    assert model["name"] == "model estimate" and len(model["x"]) == 15
    assert all(c in ("#059669", "#d97706", "#dc2626") for c in observed["marker"]["color"])
    assert all(lo >= 0 for lo in observed["error_x"]["arrayminus"])
    facts = {f["label"]: f["value"] for f in body["facts"]}
    assert facts["control"] == "status_quo" and facts["batches"] == "3"
    assert facts["most likely best"].split()[0] in observed["y"]
    # A guardrail metric, with its relative bound drawn as a line at +2 %.
    body = client.get(
        f"/experiments/{ab.id}/panels/arm-effects?metric=bounce_rate", headers=JSON
    ).json()
    assert any(s["x0"] == 2.0 for s in body["figure"]["layout"]["shapes"])


def test_batch_trials_show_every_arm_judged_against_their_own_control(seeded) -> None:
    """An A/B experiment's charts data and trials table carry every arm of each batch (not
    just the control), and relative constraints are judged against the batch's control."""
    import json

    from assay.dashboards.data import BestValueCache, best_observed
    from assay.dashboards.sample import seed_ab_experiment

    client, store, _ = seeded
    ab = seed_ab_experiment(store, "pricing-ab-arms", rounds=2)
    cons = ab.config.outcome_constraints  # bounce_rate <= +2%, orders >= -1% (both relative)

    def expected(trial, arm_name: str) -> bool | None:
        """Plain ratio against the batch's control (no bias correction); None near a bound."""
        obs, ctl = trial.observations[arm_name], trial.observations["status_quo"]
        ok = True
        for oc in cons:
            eff = 100 * (obs[oc.metric].mean / ctl[oc.metric].mean - 1)
            if abs(eff - oc.bound) < 0.05:
                return None
            ok = ok and oc.is_satisfied(eff)
        return ok

    page = client.get(f"/experiments/{ab.id}", headers=HTML).text
    data = json.loads(re.search(r'id="page-data">(.*?)</script>', page, re.S).group(1))
    rows = {t["id"]: t for t in data["trials"]}
    verdicts = []
    for trial in ab.trials:
        arms = rows[trial.id]["a"]
        assert [a["arm"] for a in arms] == [a.name for a in trial.arms]  # all 6, in order
        assert [a["c"] for a in arms] == [True] + [False] * 5
        for a, arm in zip(arms, trial.arms, strict=True):
            assert a["p"]["layout"] == arm.parameters["layout"]
            assert a["p"]["price"] == pytest.approx(arm.parameters["price"], rel=1e-6)
            assert a["v"]["revenue"][0] == pytest.approx(
                trial.observations[arm.name]["revenue"].mean, rel=1e-6
            )
            want = True if arm.name == "status_quo" else expected(trial, arm.name)
            if want is not None:
                assert a["f"] is want, (trial.id, arm.name, a)
                verdicts.append(want)
    assert False in verdicts and verdicts.count(True) > 2  # the guardrails bite here

    # The trials table: one sub-row per arm, the control tagged, violations marked.
    table = client.get(f"/experiments/{ab.id}?partial=1").text
    assert table.count('data-arm-of="') == 12 and table.count('data-trial="') == 2
    assert table.count('<span class="chip">control</span>') == 2
    assert "violates" in table and "feasible" in table

    # The best feasible observed value (experiment page and list) skips violating arms.
    feasible_revenue = [
        t.observations[a.name]["revenue"].mean
        for t in ab.trials
        for a in t.arms
        if (a.name == "status_quo" or expected(t, a.name))
    ]
    best = best_observed(ab)
    assert best.feasible and best.value == pytest.approx(max(feasible_revenue))
    [row] = [
        r for r in BestValueCache(store).rows(store.list_experiments()) if r.summary.id == ab.id
    ]
    assert row.best_feasible and row.best == pytest.approx(max(feasible_revenue))
    assert query_trials(ab, TableQuery(feasible="yes")).filtered == 2
    trial_page = client.get(f"/trials/{ab.trials[0].id}", headers=HTML).text
    assert re.search(r"\d of 6 arms meet all constraints", trial_page)


#: Plotly.js trace types (plotly.js/lib/*.js, 4.x).
PLOTLY_TRACES = set(
    [
        "bar",
        "barpolar",
        "box",
        "candlestick",
        "carpet",
        "choropleth",
        "choroplethmap",
        "cone",
        "contour",
        "contourcarpet",
        "densitymap",
        "funnel",
        "funnelarea",
        "heatmap",
        "histogram",
        "histogram2d",
        "histogram2dcontour",
        "icicle",
        "image",
        "indicator",
        "isosurface",
        "mesh3d",
        "ohlc",
        "parcats",
        "parcoords",
        "pie",
        "quiver",
        "sankey",
        "scatter",
        "scatter3d",
        "scattercarpet",
        "scattergeo",
        "scattergl",
        "scattermap",
        "scatterpolar",
        "scatterpolargl",
        "scattersmith",
        "scatterternary",
        "splom",
        "streamtube",
        "sunburst",
        "surface",
        "table",
        "treemap",
        "violin",
        "volume",
        "waterfall",
    ]
)


def test_every_trace_type_the_dashboard_draws_is_in_the_partial_bundle() -> None:
    """The vendored Plotly.js holds only some trace types: a chart of another type would
    not draw. Adding one means adding it to TRACES in dashboards/plotly_build/build_plotly.mjs
    and running build_plotly.sh."""
    from pathlib import Path

    import assay.dashboards as dashboards

    root = Path(dashboards.__file__).parent
    build = (root / "plotly_build" / "build_plotly.mjs").read_text()
    bundled = {"scatter", *re.findall(r'"(\w+)"', re.search(r"TRACES = \[(.*?)\]", build)[1])}
    sources = [*root.glob("*.py"), root / "static" / "app.js"]
    used = {
        t
        for src in sources
        for t in re.findall(r"""["']?type["']?\s*:\s*["'](\w+)["']""", src.read_text())
        if t in PLOTLY_TRACES
    }
    assert {"scatter", "contour", "bar", "parcoords"} <= used  # the scan finds what the charts draw
    assert used <= bundled, f"not in the Plotly.js bundle: {used - bundled}"
    head = (root / "static" / "vendor" / "plotly-assay.min.js").read_text()[:200]
    assert ", ".join(sorted(bundled - {"scatter"})) in head  # the committed build has them


#: An A/B experiment with two objectives (revenue up, bounce rate down) and a guardrail.
AB_TWO_OBJECTIVES = {
    "objectives": ["revenue", {"name": "bounce_rate", "minimize": True, "threshold": "<= +3%"}],
    "outcome_constraints": ["orders >= -1%"],
    "generator": "noisy_ehvi",
}


def test_parallel_coordinates_coloured_by_any_objective(seeded) -> None:
    """Several objectives: the parallel-coordinates panel (Plotly ``parcoords``, with a
    "Colour by" control) replaces the one-objective page's chart (same builder), draws one line per completed arm across parameters then
    metrics, and colours them by the metric chosen, bright = better (reversed when minimized)."""
    from assay.dashboards.sample import ab_truth, seed_ab_experiment

    client, store, ids = seeded
    ab = seed_ab_experiment(store, "pricing-mo", rounds=2, spec=AB_TWO_OBJECTIVES)
    page = client.get(f"/experiments/{ab.id}", headers=HTML).text
    assert 'data-panel="parcoords"' in page and 'id="chart-parallel"' not in page
    assert '<option value="bounce_rate"' in page  # the colouring select
    single = client.get(f"/experiments/{ids['big']}", headers=HTML).text
    assert 'id="chart-parallel"' in single and 'data-panel="parcoords"' not in single
    body = client.get(f"/experiments/{ab.id}/panels/parcoords", headers=JSON).json()
    assert body["error"] is None and body["empty"] is None, body
    [trace] = body["figure"]["data"]
    assert trace["type"] == "parcoords"
    labels = [d["label"] for d in trace["dimensions"]]
    assert labels == [
        "price", "discount", "layout", "revenue ↑", "bounce_rate ↓", "orders", "constraints met"
    ]  # fmt: skip
    met = trace["dimensions"][-1]
    assert met["ticktext"] == ["no", "n/a", "yes"] and set(met["values"]) <= {0, 0.5, 1}
    # the controls meet the relative guardrail by definition (0 % change)
    control_rows = [i for i, v in enumerate(trace["dimensions"][0]["values"]) if v == 10.0]
    assert [met["values"][i] for i in control_rows] == [1, 1]
    n = 2 * 6  # two batches of six arms, controls included
    assert all(len(d["values"]) == n for d in trace["dimensions"])
    assert trace["dimensions"][2]["ticktext"] == ["grid", "list"]
    # revenue: colour = revenue, the scale not reversed (higher is better)
    assert trace["line"]["color"] == trace["dimensions"][3]["values"]
    assert trace["line"]["reversescale"] is False
    assert {f["label"]: f["value"] for f in body["facts"]}["arms drawn"] == str(n)
    # colour by the minimized objective: its values, the scale reversed
    body = client.get(
        f"/experiments/{ab.id}/panels/parcoords?colour=bounce_rate", headers=JSON
    ).json()
    [trace] = body["figure"]["data"]
    assert trace["line"]["color"] == trace["dimensions"][4]["values"]
    assert trace["line"]["reversescale"] is True
    assert trace["line"]["colorbar"]["title"]["text"] == "bounce_rate"
    # values are the observed levels of the arms (the controls sit at the status quo)
    sq = ab_truth({"price": 10.0, "discount": 0.1, "layout": "grid"})["revenue"]
    control_rows = [i for i, v in enumerate(trace["dimensions"][0]["values"]) if v == 10.0]
    assert len(control_rows) == 2
    assert all(abs(trace["dimensions"][3]["values"][i] / sq - 1) < 0.2 for i in control_rows)


def test_arm_effects_per_objective_for_an_ab_experiment_with_two_objectives(seeded) -> None:
    """An A/B experiment with two objectives: the arm-effects panel's select lists the
    objectives (with direction) first, each objective's chart says which way is better and
    draws its relative threshold (the reference point); "most likely best", a one-objective
    notion, gives way to P(on the Pareto front), also in each arm's hover."""
    from assay.dashboards.sample import seed_ab_experiment

    client, store, _ = seeded
    ab = seed_ab_experiment(store, "pricing-mo-effects", rounds=2, spec=AB_TWO_OBJECTIVES)
    page = client.get(f"/experiments/{ab.id}", headers=HTML).text
    assert "revenue (objective ↑)" in page and "bounce_rate (objective ↓)" in page
    url = f"/experiments/{ab.id}/panels/arm-effects"
    rev = client.get(url, headers=JSON).json()
    assert rev["error"] is None and rev["empty"] is None, rev
    assert rev["figure"]["layout"]["xaxis"]["title"]["text"].startswith("revenue")
    assert rev["figure"]["layout"]["xaxis"]["title"]["text"].endswith("higher is better")
    facts = {f["label"]: f["value"] for f in rev["facts"]}
    assert "most likely best" not in facts
    observed = rev["figure"]["data"][0]
    assert facts["most likely on the front"].split()[0] in observed["y"]
    assert all("P(on the front)" in h for h in observed["text"])
    on, of = (int(v) for v in facts["on the front (model)"].split(" of "))
    assert 1 <= on <= of
    bounce = client.get(f"{url}?metric=bounce_rate", headers=JSON).json()
    assert bounce["figure"]["layout"]["xaxis"]["title"]["text"].endswith("lower is better")
    xs = [s["x0"] for s in bounce["figure"]["layout"]["shapes"]]
    assert xs == [0, 3.0]  # the zero line and the +3 % threshold of bounce_rate
    # the same arms, other effects: per objective, not one chart reused
    assert sorted(bounce["figure"]["data"][0]["y"]) == sorted(observed["y"])
    assert bounce["figure"]["data"][0]["x"] != observed["x"]
    orders = client.get(f"{url}?metric=orders", headers=JSON).json()
    assert any("not one of the objectives" in n for n in orders["notes"])
    assert [s["x0"] for s in orders["figure"]["layout"]["shapes"]] == [0, -1.0]  # guardrail
