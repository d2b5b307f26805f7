"""The experiment page shows the definition's version history once it has changed (what,
who, why), on every backend."""

from __future__ import annotations

from fastapi.testclient import TestClient

from assay.service.app import create_app
from assay.service.settings import Settings


def test_experiment_page_shows_version_history(store) -> None:
    with TestClient(create_app(Settings(auth="none", reaper_interval_s=0), store)) as api:
        exp = api.post(
            "/api/v1/experiments",
            json={"name": "v", "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
                  "objective": "y", "generator": "sobol"},
        ).json()  # fmt: skip
        page = api.get(f"/experiments/{exp['id']}")
        assert page.status_code == 200 and 'id="versions-card"' not in page.text
        r = api.patch(
            f"/api/v1/experiments/{exp['id']}",
            json={"bounds": {"x": [0, 3]}, "reason": "optimum <at> the edge"},
        )
        assert r.status_code == 200, r.text
        page = api.get(f"/experiments/{exp['id']}").text
    assert 'id="versions-card"' in page
    assert "v2" in page and "x: bounds [0.0, 1.0] -&gt; [0.0, 3.0]" in page
    assert "optimum &lt;at&gt; the edge" in page and "local" in page
