"""The ``assay`` command line.

``assay serve``            run the REST API (and dashboard) with uvicorn
``assay db upgrade``       create or upgrade the database schema
``assay keys create``      print a new API key for a project and role (shown once)
``assay keys list``        list keys (id, project, role, prefix, revoked)
``assay keys revoke ID``   revoke a key and its dashboard sessions, at once everywhere
``assay demo``             a noisy constrained optimization, live in the terminal
``assay export EXP``       an experiment as a versioned JSON document
``assay import FILE``      an experiment from an export, an Ax snapshot or an Optuna study
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from assay.platform.errors import AssayError


def _settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from assay.service.settings import Settings

    overrides = {
        k: v
        for k, v in {
            "database_url": getattr(args, "database_url", None),
            "host": getattr(args, "host", None),
            "port": getattr(args, "port", None),
            "auth": getattr(args, "auth", None),
            "allow_arbitrary_jobs": True if getattr(args, "allow_arbitrary_jobs", False) else None,
            "log_format": getattr(args, "log_format", None),
        }.items()
        if v is not None
    }
    return Settings(**overrides)


def _cmd_demo(args: argparse.Namespace) -> int:
    from assay.service.demo import run_demo

    run_demo(trials=args.trials, batch=args.batch, seed=args.seed)
    return 0


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    from assay.storage.migrate import current_revision, head_revision, upgrade
    from assay.storage.sql import make_engine
    from assay.storage.urls import normalize_database_url

    settings = _settings(args)
    engine = make_engine(normalize_database_url(settings.database_url))
    before = current_revision(engine)
    upgrade(engine)
    where = engine.url.render_as_string(hide_password=True)
    print(f"database {where}: schema {before or 'empty'} -> {head_revision()}")
    engine.dispose()
    return 0


def _cmd_keys_create(args: argparse.Namespace) -> int:
    from assay.service.auth import create_api_key
    from assay.storage.factory import open_store

    settings = _settings(args)
    store = open_store(settings.database_url, migrate=False)
    token = create_api_key(store, args.project, name=args.name, role=args.role)
    store.close()
    print(token)
    print(
        f"# {args.role} API key for project {args.project!r}; it is shown only once. Send it "
        "as 'Authorization: Bearer <key>'.",
        file=sys.stderr,
    )
    return 0


def _cmd_keys_list(args: argparse.Namespace) -> int:
    from assay.storage.factory import open_store

    store = open_store(_settings(args).database_url, migrate=False)
    keys = store.list_api_keys(project=args.project)
    store.close()
    print(f"{'id':>5}  {'project':<20} {'role':<7} {'prefix':<11} {'name':<16} status")
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        print(f"{k.id:>5}  {k.project:<20} {k.role:<7} {k.prefix:<11} {k.name:<16} {state}")
    return 0


def _cmd_keys_revoke(args: argparse.Namespace) -> int:
    from assay.storage.factory import open_store

    store = open_store(_settings(args).database_url, migrate=False)
    key = store.revoke_api_key(args.id)
    store.close()
    print(f"revoked key {key.id} ({key.prefix}…, project {key.project!r}, role {key.role})")
    return 0


def _console_event(message: str) -> None:
    import time

    print(f"{time.strftime('%H:%M:%S')}  {message}", flush=True)


def _make_orchestrator(args: argparse.Namespace, settings, store, executor: str, service_url):  # type: ignore[no-untyped-def]
    from assay.service.engine import Engine
    from assay.service.jobs.orchestrator import Orchestrator
    from assay.service.jobs.policy import JobPolicy

    if executor == "local":
        from assay.service.jobs.local import LocalExecutor

        ex = LocalExecutor(cpus=settings.local_cpus)
    elif executor == "ray":
        from assay.service.jobs.ray_executor import RayExecutor

        ex = RayExecutor(address=getattr(args, "ray_address", None))
    else:
        from assay.service.jobs.slurm_executor import SlurmExecutor

        ex = SlurmExecutor(
            getattr(args, "slurm_folder", None) or ".assay/submitit",
            cluster=getattr(args, "slurm_cluster", "slurm"),
        )
    return Orchestrator(
        Engine(store),
        {executor: ex},
        default_executor=executor,
        worker_id=getattr(args, "worker_id", None),
        log_dir=settings.log_dir,
        service_url=service_url,
        database_url=settings.database_url if service_url is None else None,
        poll_interval=getattr(args, "poll_interval", 0.5),
        lease_seconds=getattr(args, "lease_seconds", 120.0),
        stale_after_s=getattr(args, "stale_after", 60.0),
        on_event=_console_event,
        job_policy=JobPolicy.from_settings(settings),
    )


def _ensure_demo(store) -> int:  # type: ignore[no-untyped-def]
    """Create (once) and start the demo experiment; returns its id."""
    from assay.service.demo_job import DEMO_EXPERIMENT
    from assay.service.engine import Engine

    engine = Engine(store, actor="demo")
    existing = [e for e in store.list_experiments() if e.name == DEMO_EXPERIMENT["name"]]
    exp_id = existing[0].id if existing else engine.create_experiment(DEMO_EXPERIMENT).id
    if store.get_experiment(exp_id).run_state != "done":
        engine.set_run(exp_id, "resume")
    return exp_id


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = _settings(args)
    if not settings.auth_required and not settings.loopback:
        print("refusing to serve without authentication on a non-loopback address", file=sys.stderr)
        return 2
    from assay.storage.factory import open_store

    store = open_store(settings.database_url, migrate=False)  # refuses an old schema
    if args.workers > 1 and (settings.metrics or settings.metrics_token):
        _multiprocess_metrics_dir()  # before anything imports prometheus_client
    log_config = None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG
    if settings.log_format == "json":
        from assay.service.observability import configure_logging

        configure_logging("json", logging.DEBUG if args.verbose else logging.INFO)
    mode = (
        "API keys required"
        if settings.auth_required
        else (
            f"no key for local requests only (bound to {settings.host}; peer, Host and no "
            "proxy headers checked per request); set ASSAY_AUTH=keys behind a proxy or tunnel"
            if settings.auth == "auto"
            else "NO AUTHENTICATION (--auth none: every request is trusted; loopback only)"
        )
    )
    url = f"http://{settings.host}:{settings.port}"
    run_jobs = settings.orchestrator and not args.no_orchestrator and args.workers == 1
    print(
        f"Assay serving on {url}  (dashboard {url}/, API {url}/api/v1, docs {url}/docs)\n"
        f"  database: {settings.database_url}\n  auth: {mode}\n"
        f"  trial jobs: {'local executor in this process' if run_jobs else 'off (run `assay worker`)'}",
        flush=True,
    )
    if args.demo:
        exp_id = _ensure_demo(store)
        print(
            f"  demo: experiment {exp_id} tunes a small MLP on the digits data, two jobs at a "
            f"time; watch {url}/experiments/{exp_id} or {url}/api/v1/experiments/{exp_id}/jobs",
            flush=True,
        )
    if args.workers > 1:
        store.close()
        os.environ.update(
            ASSAY_DATABASE_URL=settings.database_url, ASSAY_HOST=settings.host,
            ASSAY_PORT=str(settings.port), ASSAY_AUTH=settings.auth,
            ASSAY_BOUND_HOST=settings.host,  # lets the factory trust a loopback bind
            ASSAY_ALLOW_ARBITRARY_JOBS=str(settings.allow_arbitrary_jobs).lower(),
            ASSAY_LOG_FORMAT=settings.log_format,
        )  # fmt: skip
        uvicorn.run(
            "assay.service.app:create_app_from_env", factory=True, host=settings.host,
            port=settings.port, workers=args.workers, log_level=args.log_level,
            log_config=log_config, access_log=log_config is not None,
        )  # fmt: skip
        return 0
    from assay.service.app import create_app

    orchestrator = _make_orchestrator(args, settings, store, "local", url) if run_jobs else None
    uvicorn.run(
        create_app(settings, store=store, orchestrator=orchestrator), host=settings.host,
        port=settings.port, log_level=args.log_level, log_config=log_config,
        access_log=log_config is not None,
    )  # fmt: skip
    return 0


def _client(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """A client on ``--url`` (a server or a database; default ``$ASSAY_URL``, else the
    settings' database)."""
    from assay.service.client import Client

    url = args.url or os.environ.get("ASSAY_URL") or _settings(args).database_url
    token = args.token or os.environ.get("ASSAY_TOKEN")
    return Client(url, token=token, project=args.project)


def _cmd_export(args: argparse.Namespace) -> int:
    import json

    with _client(args) as client:
        document = client.export_experiment(args.experiment)
    text = json.dumps(document, indent=1)
    if args.out in (None, "-"):
        print(text)
    else:
        with open(args.out, "w") as f:
            f.write(text)
        n = len(document["trials"])
        print(f"experiment {args.experiment} ({n} trials) -> {args.out}", file=sys.stderr)
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    import json

    source = args.source
    if source == "auto":
        if "://" in args.file or args.file.endswith((".db", ".log", ".jsonl")):
            source = "optuna"
        else:
            with open(args.file) as f:
                head = json.load(f)
            source = "assay" if head.get("format") == "assay.experiment" else "ax"
    with _client(args) as client:
        if source == "optuna":
            url = args.file
            if "://" not in url and args.file.endswith(".db"):
                url = f"sqlite:///{os.path.abspath(args.file)}"
            result = client.import_optuna(url, args.study, name=args.name)
        elif source == "ax":
            result = client.import_ax(args.file, name=args.name)
        else:
            result = client.import_experiment(args.file, name=args.name)
    exp = result.experiment
    print(f"imported {source} -> experiment {exp.id} {exp.name!r} ({len(exp.trials)} trials)")
    for line in result.report.not_carried:
        print(f"  not carried: {line}")
    return 0


def _multiprocess_metrics_dir() -> str:
    """Several workers share their metrics through files (prometheus_client's multiprocess
    mode): ``$PROMETHEUS_MULTIPROC_DIR``, or a fresh temporary folder, emptied at start."""
    import tempfile
    from pathlib import Path

    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="assay-prom-")
    Path(folder).mkdir(parents=True, exist_ok=True)
    for f in Path(folder).glob("*.db"):
        f.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    return folder


def _cmd_worker(args: argparse.Namespace) -> int:
    import signal
    import threading

    from assay.storage.factory import open_store

    settings = _settings(args)
    store = open_store(settings.database_url, migrate=False)
    orch = _make_orchestrator(args, settings, store, args.executor, args.service_url)
    print(
        f"Assay worker {orch.worker_id}: executor {args.executor}, database "
        f"{settings.database_url}, logs {settings.log_dir}",
        flush=True,
    )
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    orch.start()
    done.wait()
    orch.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="assay", description="Assay adaptive experimentation")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def db_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--database-url",
            help="SQLAlchemy URL (default $ASSAY_DATABASE_URL or sqlite:///./assay.db)",
        )

    serve = sub.add_parser("serve", help="run the REST API and dashboard")
    db_option(serve)
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--auth", choices=["auto", "keys", "none"], help="auth mode (default auto)")
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="json: one JSON object per line with request ids (default $ASSAY_LOG_FORMAT, text)",
    )
    serve.add_argument("--no-orchestrator", action="store_true", help="do not run trial jobs")
    serve.add_argument("--demo", action="store_true", help="create and run the demo experiment")
    serve.add_argument(
        "--allow-arbitrary-jobs",
        action="store_true",
        help="let admin keys run job specs outside the allowlist (ASSAY_JOB_ENTRYPOINTS/"
        "_COMMANDS): every admin key can then run code on this server and its workers",
    )
    serve.set_defaults(func=_cmd_serve)

    worker = sub.add_parser("worker", help="run trial jobs (no HTTP server)")
    db_option(worker)
    worker.add_argument("--executor", choices=["local", "ray", "slurm"], default="local")
    worker.add_argument("--worker-id", help="stable identity (restarts re-attach its jobs)")
    worker.add_argument("--service-url", help="jobs report over HTTP here (else to the database)")
    worker.add_argument("--ray-address", help="Ray cluster address (default: start a local one)")
    worker.add_argument("--slurm-folder", help="shared folder for submitit job files")
    worker.add_argument("--slurm-cluster", default="slurm", choices=["slurm", "local"])
    worker.add_argument("--poll-interval", type=float, default=0.5)
    worker.add_argument(
        "--lease-seconds",
        type=float,
        default=120.0,
        help="lease on running trials (renewed while the worker lives)",
    )
    worker.add_argument(
        "--stale-after",
        type=float,
        default=60.0,
        help="adopt other workers' jobs after this long without heartbeat",
    )
    worker.set_defaults(func=_cmd_worker)

    db = sub.add_parser("db", help="database schema").add_subparsers(
        dest="db_command", required=True
    )
    up = db.add_parser("upgrade", help="create or upgrade the schema to this version")
    db_option(up)
    up.set_defaults(func=_cmd_db_upgrade)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(
        dest="keys_command", required=True
    )
    kc = keys.add_parser("create", help="create a key for a project (printed once)")
    kc.add_argument("--project", required=True)
    kc.add_argument("--name", default="default", help="a label for the key")
    kc.add_argument(
        "--role",
        choices=["viewer", "member", "admin"],
        default="member",
        help="viewer: read; member: experiments, ask/tell, runs; admin: also keys and "
        "privacy budgets (default member)",
    )
    db_option(kc)
    kc.set_defaults(func=_cmd_keys_create)
    kl = keys.add_parser("list", help="list keys (never their tokens)")
    kl.add_argument("--project", help="only this project's keys")
    db_option(kl)
    kl.set_defaults(func=_cmd_keys_list)
    kr = keys.add_parser("revoke", help="revoke a key (and its dashboard sessions)")
    kr.add_argument("id", type=int, help="the key's id (see 'assay keys list')")
    db_option(kr)
    kr.set_defaults(func=_cmd_keys_revoke)

    demo = sub.add_parser("demo", help="a noisy constrained optimization, live in the terminal")
    demo.add_argument("--trials", type=int, default=25)
    demo.add_argument("--batch", type=int, default=1)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_cmd_demo)

    def client_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", help="server or database URL (default $ASSAY_URL or the database)")
        p.add_argument("--token", help="API key for a server (default $ASSAY_TOKEN)")
        p.add_argument("--project", default="default", help="project (database URLs)")
        db_option(p)

    export = sub.add_parser("export", help="an experiment as a versioned JSON document")
    export.add_argument("experiment", type=int, help="experiment id")
    export.add_argument("--out", help="file to write (default: standard output)")
    client_options(export)
    export.set_defaults(func=_cmd_export)

    imp = sub.add_parser("import", help="an experiment from an export, Ax or Optuna")
    imp.add_argument(
        "file", help="an Assay export or Ax snapshot (JSON), an Optuna RDB URL or journal file"
    )
    imp.add_argument("--from", dest="source", default="auto",
                     choices=["auto", "assay", "ax", "optuna"])  # fmt: skip
    imp.add_argument("--study", help="Optuna study name (when the storage holds several)")
    imp.add_argument("--name", help="rename the imported experiment")
    client_options(imp)
    imp.set_defaults(func=_cmd_import)
    from assay.service.cli_synth import add_synth_parser

    add_synth_parser(sub)  # `assay synth ...`: DP synthetic tables
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except AssayError as e:
        print(f"assay: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
