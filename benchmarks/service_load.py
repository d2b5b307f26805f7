"""Service load: ask latency and tell throughput of a live ``assay serve``, against Optuna's
RDB storage doing the equivalent ask/tell on the same database server, in one run.

For each backend (SQLite file, PostgreSQL) and each concurrency (1, 4, 16 client threads):

* ``sobol`` (model step excluded, i.e. service overhead: HTTP + validation + storage):
  ask p50/p99 latency over ask/tell cycles, and ask+tell cycles per second;
* a tell-only phase: trials asked up front, then all clients complete them as fast as they
  can -> observations per second;
* ``noisy_ei`` (model step included): ask p50/p99 with 1 and 4 clients (fewer cycles);
* Optuna: ``RDBStorage`` on the same server, ``RandomSampler``, one float parameter pair,
  each client doing ``study.ask()`` + suggests + ``study.tell()`` -> cycles per second.

Targets: tell >= 500 obs/s on PostgreSQL with 16 clients; sobol ask p50 <= 20 ms;
Assay ask+tell throughput >= 2x Optuna RDB's on the same backend.

    python benchmarks/service_load.py                 # full run, markdown tables on stdout
    python benchmarks/service_load.py --quick         # fewer cycles
    python benchmarks/service_load.py --workers 2     # several uvicorn worker processes
    python benchmarks/service_load.py --auth keys     # every request with a member API key
    python benchmarks/service_load.py --clients 1 --sobol-only   # service overhead only
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

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


#: Sent with every request (``--auth keys`` puts a member key here).
HEADERS: dict[str, str] = {}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Server:
    def __init__(self, database_url: str, workers: int, auth: str = "auto") -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        subprocess.run(
            [sys.executable, "-m", "assay.service.cli", "db", "upgrade", "--database-url", database_url],
            check=True, capture_output=True,
        )  # fmt: skip
        if auth == "keys":
            cmd = [sys.executable, "-m", "assay.service.cli", "keys", "create", "--project",
                   "bench", "--database-url", database_url]  # fmt: skip
            made = subprocess.run([*cmd, "--role", "member"], capture_output=True, text=True)
            if made.returncode != 0:  # a version without roles
                made = subprocess.run(cmd, capture_output=True, text=True, check=True)
            HEADERS["Authorization"] = f"Bearer {made.stdout.strip()}"
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "assay.service.cli", "serve", "--database-url", database_url,
             "--port", str(self.port), "--log-level", "warning", "--workers", str(workers),
             "--auth", auth],
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


def run_threads(n: int, fn) -> float:  # type: ignore[no-untyped-def]
    threads = [threading.Thread(target=fn, args=(k,)) for k in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def assay_cycles(url: str, generator: str, clients: int, cycles: int) -> dict:
    name = f"{generator}-{clients}-{uuid.uuid4().hex[:6]}"
    settings = {"num_restarts": 4, "raw_samples": 128} if generator == "noisy_ei" else {}
    exp = httpx.post(
        url + "/api/v1/experiments",
        headers=HEADERS,
        json={
            **EXP,
            "name": name,
            "generator": generator,
            "generator_settings": settings,
            "seed": 0,
        },
    ).json()
    asks: list[float] = []
    tells: list[float] = []
    errors: list[int] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        with httpx.Client(base_url=url + "/api/v1", timeout=120, headers=HEADERS) as http:
            for i in range(cycles):
                t0 = time.perf_counter()
                r = http.post(f"/experiments/{exp['id']}/trials:ask", json={"n": 1})
                t1 = time.perf_counter()
                if r.status_code != 200:
                    errors.append(r.status_code)
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
                    errors.append(r2.status_code)
                with lock:
                    asks.append(t1 - t0)
                    tells.append(t2 - t1)

    wall = run_threads(clients, client)
    return {
        "ask_p50_ms": 1000 * pct(asks, 0.5), "ask_p99_ms": 1000 * pct(asks, 0.99),
        "tell_p50_ms": 1000 * pct(tells, 0.5), "cycles_per_s": len(asks) / wall,
        "errors": len(errors),
    }  # fmt: skip


def assay_tell_throughput(url: str, clients: int, per_client: int) -> float:
    exp = httpx.post(
        url + "/api/v1/experiments",
        headers=HEADERS,
        json={
            **EXP,
            "name": f"tells-{clients}-{uuid.uuid4().hex[:6]}",
            "generator": "sobol",
            "seed": 1,
        },
    ).json()
    ids: list[int] = []
    with httpx.Client(base_url=url + "/api/v1", timeout=120, headers=HEADERS) as http:
        for _ in range(clients * per_client // 100 + 1):
            r = http.post(f"/experiments/{exp['id']}/trials:ask", json={"n": 100})
            ids += [t["id"] for t in r.json()["trials"]]
    ids = ids[: clients * per_client]
    done = [0]
    lock = threading.Lock()

    def client(k: int) -> None:
        with httpx.Client(base_url=url + "/api/v1", timeout=120, headers=HEADERS) as http:
            for trial_id in ids[k::clients]:
                r = http.post(
                    f"/trials/{trial_id}:complete",
                    json={"observations": {"f": [0.5, 0.1], "c": [0.2, 0.1]}},
                )
                if r.status_code == 200:
                    with lock:
                        done[0] += 1

    wall = run_threads(clients, client)
    return done[0] / wall


def optuna_cycles(database_url: str, clients: int, cycles: int) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(
        database_url, engine_kwargs={"pool_size": max(5, clients), "max_overflow": clients}
        if database_url.startswith("postgresql") else {"connect_args": {"timeout": 60}},
    )  # fmt: skip
    study = optuna.create_study(
        storage=storage, study_name=f"bench-{uuid.uuid4().hex[:8]}",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )  # fmt: skip
    count = [0]
    lock = threading.Lock()

    def client(k: int) -> None:
        for _ in range(cycles):
            trial = study.ask()
            x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
            trial.set_user_attr("c", x + y)
            study.tell(trial, -((x - 0.3) ** 2) - (y - 0.6) ** 2)
            with lock:
                count[0] += 1

    wall = run_threads(clients, client)
    return count[0] / wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--backends", nargs="*", default=["sqlite", "postgresql"])
    parser.add_argument(
        "--auth",
        choices=["auto", "keys"],
        default="auto",
        help="keys: every request carries a member API key (all checks on)",
    )
    parser.add_argument("--clients", nargs="*", type=int, default=[1, 4, 16])
    parser.add_argument(
        "--sobol-only",
        action="store_true",
        help="only the sobol ask/tell cycles (no tell-only, Optuna, noisy_ei)",
    )
    args = parser.parse_args(argv)
    cycles = {1: 60, 4: 30, 16: 15} if not args.quick else {1: 20, 4: 10, 16: 5}
    model_cycles = 8 if not args.quick else 4
    tells_per_client = 40 if not args.quick else 15
    rows = []
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
        server = Server(assay_url, args.workers, args.auth)
        try:
            for clients in args.clients:
                print(f"{backend}: {clients} clients ...", file=sys.stderr, flush=True)
                sob = assay_cycles(server.url, "sobol", clients, cycles.get(clients, 15))
                if args.sobol_only:
                    rows.append((backend, clients, sob, float("nan"), float("nan"), None))
                    continue
                tell_rate = assay_tell_throughput(server.url, clients, tells_per_client)
                opt = optuna_cycles(optuna_url, clients, cycles.get(clients, 15))
                model = (
                    assay_cycles(server.url, "noisy_ei", clients, model_cycles)
                    if clients in (1, 4)
                    else None
                )
                rows.append((backend, clients, sob, tell_rate, opt, model))
        finally:
            server.stop()
            if admin is not None:
                with admin.connect() as c:
                    for name in (dbname, f"{dbname}_optuna"):
                        c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(
        f"\nuvicorn workers: {args.workers}; auth: {args.auth}; machine: {os.cpu_count()} cores\n"
    )
    print(
        "| backend | clients | sobol ask p50 / p99 ms | tell p50 ms | ask+tell cycles/s (Assay) | ask+tell cycles/s (Optuna RDB) | ratio | tell-only obs/s | noisy_ei ask p50 / p99 ms | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for backend, clients, sob, tell_rate, opt, model in rows:
        m = f"{model['ask_p50_ms']:.0f} / {model['ask_p99_ms']:.0f}" if model else "—"
        print(
            f"| {backend} | {clients} | {sob['ask_p50_ms']:.1f} / {sob['ask_p99_ms']:.1f} "
            f"| {sob['tell_p50_ms']:.1f} | {sob['cycles_per_s']:.0f} | {opt:.0f} "
            f"| {sob['cycles_per_s'] / opt:.1f}x | {tell_rate:.0f} | {m} | {sob['errors']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
