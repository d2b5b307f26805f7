"""Attack 7: a job writes its own log directory, so it can swap ``job.log`` (or the directory)
for a link to any file the server can read; the REST log endpoints and the dashboard's log
tail must not follow it."""

from __future__ import annotations

import os

import pytest

from assay.platform.jobspec import Job, JobState
from assay.service.app import create_app
from assay.service.jobs.logfiles import LogUnavailableError, open_log
from assay.service.settings import Settings

SECRET = "postgresql://admin:hunter2@db/assay"


@pytest.fixture
def planted(store, tmp_path, sec):
    """A trial whose job log lives under the server's log root, and a secret outside it."""
    logs = tmp_path / "logs"
    app = create_app(Settings(reaper_interval_s=0, log_dir=str(logs)), store=store)
    with sec.local(app) as c:
        exp = c.post("/api/v1/experiments", json=sec.EXP).json()
        [trial] = c.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json={}).json()["trials"]
        workdir = logs / f"experiment-{exp['id']}" / f"trial-{trial['id']}"
        workdir.mkdir(parents=True)
        (workdir / "job.log").write_text("epoch 1 ok\n")
        store.create_job(Job(0, trial["id"], exp["id"], "local", "w1", JobState.RUNNING,
                             log_path=str(workdir / "job.log")))  # fmt: skip
        secret = tmp_path / "server.env"
        secret.write_text(SECRET)
        yield c, trial["id"], workdir, secret


def _reads(c, trial_id: int) -> list[str]:
    tail = c.get(f"/api/v1/trials/{trial_id}/log").text
    full = c.get(f"/api/v1/trials/{trial_id}/log:download")
    page = c.get(f"/trials/{trial_id}", headers={"accept": "text/html"}).text
    listed = c.get("/api/v1/jobs", params={"log_tail_bytes": 4096}).json()["jobs"]
    return [tail, full.text if full.status_code == 200 else "", page, listed[0]["log_tail"]]


def test_a_real_log_is_served(planted) -> None:
    c, trial_id, _, _ = planted
    assert all("epoch 1 ok" in text for text in _reads(c, trial_id))


def test_a_planted_file_link_is_not_followed(planted) -> None:
    c, trial_id, workdir, secret = planted
    (workdir / "job.log").unlink()
    (workdir / "job.log").symlink_to(secret)
    reads = _reads(c, trial_id)
    assert not any(SECRET in text for text in reads)
    assert c.get(f"/api/v1/trials/{trial_id}/log:download").status_code == 404


def test_a_planted_directory_link_is_not_followed(planted, tmp_path) -> None:
    c, trial_id, workdir, secret = planted
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "job.log").symlink_to(secret)  # even a link inside the swapped directory
    os.rename(workdir, tmp_path / "moved")
    workdir.symlink_to(elsewhere, target_is_directory=True)
    assert not any(SECRET in text for text in _reads(c, trial_id))
    (elsewhere / "job.log").unlink()
    (elsewhere / "job.log").write_text(SECRET)  # a real file, but reached through a link
    assert not any(SECRET in text for text in _reads(c, trial_id))


def test_open_log_refuses_paths_outside_the_root_and_fifos(tmp_path) -> None:
    root = tmp_path / "logs"
    (root / "t").mkdir(parents=True)
    (tmp_path / "outside.log").write_text("x")
    with pytest.raises(LogUnavailableError):
        open_log(str(root), str(tmp_path / "outside.log"))
    with pytest.raises(LogUnavailableError):
        open_log(str(root), str(root / "t" / ".." / ".." / "outside.log"))
    os.mkfifo(root / "t" / "job.log")
    with pytest.raises(LogUnavailableError):
        open_log(str(root), str(root / "t" / "job.log"))  # would block a plain open()
