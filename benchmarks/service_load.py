"""Service load: ask+tell throughput and tell throughput of a live ``assay serve``, against
Optuna's RDB storage doing the equivalent ask/tell on the same database server, in one run.

Load comes from separate client **processes** (``multiprocessing``, fork), never threads of
this process, so the clients' own Python time does not serialise on one GIL. Every cell runs
for a fixed wall time after all its processes are ready (a barrier), and counts what was
done within it.

For each backend (PostgreSQL by default; ``--backends sqlite postgresql``) and each number of
client processes (``--procs``, default 16 and 4):

* **ask(sobol)+tell** — each process loops ``POST .../trials:ask {"n": 1}`` then
  ``POST /trials/{id}:complete`` on one shared experiment (so asks contend for the
  experiment's lock): cycles per second, ask and tell p50/p99;
* **Optuna RDB** — the same processes, each with its own ``RDBStorage`` on the same server
  (another database), doing ``study.ask()`` + two ``suggest_float`` + ``study.tell()`` with
  ``RandomSampler``: cycles per second, and the ratio Assay / Optuna;
* **tell-only** — trials asked up front (``n = 100`` per ask), then every process completes
  its share as fast as it can: observations per second;
* **service overhead** — one process, no contention: sobol ask p50 and tell p50 (the HTTP +
  validation + storage cost of one request, no model step).

Targets (issue 19): ask+tell >= 2x Optuna RDB with 16 processes on PostgreSQL and
``--workers 2``; tell-only >= 500 obs/s; p50 service overhead <= 20 ms.

    python benchmarks/service_load.py --workers 2                     # PostgreSQL, 15 s cells
    python benchmarks/service_load.py --workers 2 --seconds 10 --procs 16 4
    python benchmarks/service_load.py --backends sqlite postgresql
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get(
    "ASSAY_BENCH_POSTGRES_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
EXP = {
    "parameters": [
        {"name": "x", "type": "float", "bounds": [0, 1]},
        {"name": "y", "type": "float", "bounds": [0, 1]},
    ],
    "objective": "f",
    "outcome_constraints": ["c <= 0.8"],
}


def tree_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` and its descendants (the uvicorn workers),
    so far. A load-independent cost: wall-clock figures on shared cores swing with whatever
    else runs, CPU per request does not (PostgreSQL's own CPU is not counted, for either
    peer)."""
    if pid is None:
        return 0.0
    import psutil

    try:
        root = psutil.Process(pid)
        total = 0.0
        for p in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total
    except psutil.Error:
        return 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Server:
    """``assay serve`` in a subprocess on a free port (upgrades the schema first)."""

    def __init__(self, database_url: str, workers: int) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        subprocess.run(
            [sys.executable, "-m", "assay.service.cli", "db", "upgrade", "--database-url", database_url],
            check=True, capture_output=True,
        )  # fmt: skip
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "assay.service.cli", "serve", "--database-url", database_url,
             "--port", str(self.port), "--log-level", "warning", "--workers", str(workers),
             "--no-orchestrator"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "ASSAY_REAPER_INTERVAL_S": "5"},
        )  # fmt: skip
        for _ in range(300):
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(Path(self.log.name).read_text())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


# -- client processes ------------------------------------------------------------------------
def run_processes(target: Any, n: int, args: tuple) -> list[dict]:
    """Start ``n`` processes running ``target(k, barrier, queue, *args)``; each waits on the
    barrier once ready, so the timed part starts together. Returns their result dicts."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(n)
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(k, barrier, queue, *args)) for k in range(n)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return results


def assay_cycle_client(
    k: int, barrier: Any, queue: Any, url: str, exp_id: int, seconds: float
) -> None:
    asks: list[float] = []
    tells: list[float] = []
    errors = 0
    with httpx.Client(base_url=url + "/api/v1", timeout=120) as http:
        http.get("/health")  # connection open before the clock starts
        barrier.wait()
        cpu0 = time.process_time()
        end = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < end:
            i += 1
            t0 = time.perf_counter()
            r = http.post(f"/experiments/{exp_id}/trials:ask", json={"n": 1})
            t1 = time.perf_counter()
            if r.status_code != 200:
                errors += 1
                continue
            t = r.json()["trials"][0]
            x, y = t["parameters"]["x"], t["parameters"]["y"]
            obs = {
                "f": [-((x - 0.3) ** 2) - (y - 0.6) ** 2 + 0.01 * (k + i % 3), 0.01],
                "c": [x + y, 0.01],
            }
            r2 = http.post(f"/trials/{t['id']}:complete", json={"observations": obs})
            t2 = time.perf_counter()
            if r2.status_code != 200:
                errors += 1
                continue
            asks.append(t1 - t0)
            tells.append(t2 - t1)
    queue.put({"asks": asks, "tells": tells, "errors": errors, "cpu": time.process_time() - cpu0})


def assay_tell_client(
    k: int, barrier: Any, queue: Any, url: str, ids: list[int], n_procs: int
) -> None:
    done, errors = 0, 0
    mine = ids[k::n_procs]
    with httpx.Client(base_url=url + "/api/v1", timeout=120) as http:
        http.get("/health")
        barrier.wait()
        t0 = time.perf_counter()
        for trial_id in mine:
            r = http.post(
                f"/trials/{trial_id}:complete",
                json={"observations": {"f": [0.5, 0.1], "c": [0.2, 0.1]}},
            )
            if r.status_code == 200:
                done += 1
            else:
                errors += 1
        t1 = time.perf_counter()
    queue.put({"done": done, "errors": errors, "t0": t0, "t1": t1})


def optuna_client(
    k: int, barrier: Any, queue: Any, database_url: str, study_name: str, seconds: float
) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(
        database_url,
        engine_kwargs={"pool_size": 2}
        if database_url.startswith("postgresql")
        else {"connect_args": {"timeout": 60}},
    )
    study = optuna.load_study(
        study_name=study_name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=k)
    )
    cycles, errors = 0, 0
    barrier.wait()
    cpu0 = time.process_time()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        try:
            trial = study.ask()
            x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
            trial.set_user_attr("c", x + y)
            study.tell(trial, -((x - 0.3) ** 2) - (y - 0.6) ** 2)
            cycles += 1
        except Exception:  # count and keep loading
            errors += 1
    queue.put({"cycles": cycles, "errors": errors, "cpu": time.process_time() - cpu0})


# -- cells -----------------------------------------------------------------------------------
def new_experiment(url: str, name: str, seed: int = 0) -> int:
    r = httpx.post(
        url + "/api/v1/experiments",
        json={**EXP, "name": f"{name}-{uuid.uuid4().hex[:6]}", "generator": "sobol", "seed": seed},
        timeout=60,
    )
    r.raise_for_status()
    return int(r.json()["id"])


def assay_cycles(url: str, procs: int, seconds: float, server_pid: int | None = None) -> dict:
    exp_id = new_experiment(url, f"cycles-{procs}")
    cpu0 = tree_cpu_s(server_pid)
    res = run_processes(assay_cycle_client, procs, (url, exp_id, seconds))
    server_cpu = tree_cpu_s(server_pid) - cpu0
    n = max(1, sum(len(r["asks"]) for r in res))
    asks = [a for r in res for a in r["asks"]]
    tells = [t for r in res for t in r["tells"]]
    return {
        "ask_p50_ms": 1000 * pct(asks, 0.5), "ask_p99_ms": 1000 * pct(asks, 0.99),
        "tell_p50_ms": 1000 * pct(tells, 0.5), "tell_p99_ms": 1000 * pct(tells, 0.99),
        "cycles_per_s": len(asks) / seconds, "errors": sum(r["errors"] for r in res),
        "server_cpu_ms": 1000 * server_cpu / n,
        "client_cpu_ms": 1000 * sum(r["cpu"] for r in res) / n,
    }  # fmt: skip


def assay_tells(url: str, procs: int, total: int) -> dict:
    exp_id = new_experiment(url, f"tells-{procs}", seed=1)
    ids: list[int] = []
    with httpx.Client(base_url=url + "/api/v1", timeout=300) as http:
        while len(ids) < total:
            r = http.post(f"/experiments/{exp_id}/trials:ask", json={"n": 100})
            r.raise_for_status()
            ids += [t["id"] for t in r.json()["trials"]]
    res = run_processes(assay_tell_client, procs, (url, ids[:total], procs))
    wall = max(r["t1"] for r in res) - min(r["t0"] for r in res)
    done = sum(r["done"] for r in res)
    return {"obs_per_s": done / wall, "errors": sum(r["errors"] for r in res)}


def optuna_cycles(database_url: str, procs: int, seconds: float) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    optuna.create_study(storage=database_url, study_name=name)
    res = run_processes(optuna_client, procs, (database_url, name, seconds))
    return {
        "cycles_per_s": sum(r["cycles"] for r in res) / seconds,
        "errors": sum(r["errors"] for r in res),
        "client_cpu_ms": 1000 * sum(r["cpu"] for r in res) / max(1, sum(r["cycles"] for r in res)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--backends", nargs="*", default=["postgresql"])
    parser.add_argument("--procs", nargs="*", type=int, default=[16, 4])
    parser.add_argument("--seconds", type=float, default=15.0, help="wall time of each cell")
    parser.add_argument("--tells", type=int, default=3000, help="trials completed per tell cell")
    parser.add_argument("--skip-optuna", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    overhead: dict[str, dict] = {}
    for backend in args.backends:
        admin = dbname = None
        if backend == "sqlite":
            tmp = tempfile.mkdtemp()
            assay_url = f"sqlite:///{tmp}/assay.db"
            optuna_url = f"sqlite:///{tmp}/optuna.db"
        else:
            from sqlalchemy import create_engine
            from sqlalchemy.engine import make_url

            dbname = f"assay_bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as c:  # same server, separate databases (both have "trials")
                c.exec_driver_sql(f'CREATE DATABASE "{dbname}"')
                c.exec_driver_sql(f'CREATE DATABASE "{dbname}_optuna"')
            base = make_url(PG_ADMIN)
            assay_url = base.set(database=dbname).render_as_string(hide_password=False)
            optuna_url = base.set(database=f"{dbname}_optuna").render_as_string(hide_password=False)
        server = Server(assay_url, args.workers)
        try:
            assay_cycles(server.url, 2, 1.0)  # warm-up: imports, pools, caches
            print(f"{backend}: service overhead (1 process) ...", file=sys.stderr, flush=True)
            overhead[backend] = assay_cycles(
                server.url, 1, min(args.seconds, 10.0), server.proc.pid
            )
            for procs in args.procs:
                print(f"{backend}: {procs} processes ...", file=sys.stderr, flush=True)
                cyc = assay_cycles(server.url, procs, args.seconds, server.proc.pid)
                tells = assay_tells(server.url, procs, args.tells)
                opt = None if args.skip_optuna else optuna_cycles(optuna_url, procs, args.seconds)
                rows.append((backend, procs, cyc, tells, opt))
        finally:
            server.stop()
            if admin is not None:
                with admin.connect() as c:
                    for name in (dbname, f"{dbname}_optuna"):
                        c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(
        f"\nassay serve --workers {args.workers}; {args.seconds:.0f} s per cell; client "
        f"processes (fork); machine: {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at the end (shared cores inflate absolute figures; the "
        "ratio compares Assay and Optuna under the same load)\n"
    )
    print(
        "| backend | 1 process: sobol ask p50 ms | tell p50 ms | ask+tell cycles/s "
        "| server CPU ms per cycle |"
    )
    print("|---|---|---|---|---|")
    for backend, o in overhead.items():
        print(
            f"| {backend} | {o['ask_p50_ms']:.1f} | {o['tell_p50_ms']:.1f} "
            f"| {o['cycles_per_s']:.0f} | {o['server_cpu_ms']:.1f} |"
        )
    print()
    print(
        "| backend | processes | ask+tell cycles/s (Assay) | cycles/s (Optuna RDB) | ratio "
        "| ask p50 / p99 ms | tell p50 / p99 ms | tell-only obs/s | errors "
        "| CPU ms per cycle: Assay server + clients / Optuna clients |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for backend, procs, cyc, tells, opt in rows:
        o = f"{opt['cycles_per_s']:.1f}" if opt else "—"
        ratio = f"{cyc['cycles_per_s'] / opt['cycles_per_s']:.2f}x" if opt else "—"
        errs = cyc["errors"] + tells["errors"] + (opt["errors"] if opt else 0)
        print(
            f"| {backend} | {procs} | {cyc['cycles_per_s']:.1f} | {o} | {ratio} "
            f"| {cyc['ask_p50_ms']:.1f} / {cyc['ask_p99_ms']:.1f} "
            f"| {cyc['tell_p50_ms']:.1f} / {cyc['tell_p99_ms']:.1f} "
            f"| {tells['obs_per_s']:.0f} | {errs} "
            f"| {cyc['server_cpu_ms']:.1f} + {cyc['client_cpu_ms']:.1f} / "
            f"{opt['client_cpu_ms'] if opt else float('nan'):.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
