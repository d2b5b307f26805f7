"""The ``assay`` command line.

``assay serve``            run the REST API (and dashboard) with uvicorn
``assay db upgrade``       create or upgrade the database schema
``assay keys create``      print a new API key for a project (shown once)
``assay demo``             a noisy constrained optimization, live in the terminal
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
        }.items()
        if v is not None
    }
    return Settings(**overrides)


def _cmd_demo(args: argparse.Namespace) -> int:
    from assay.service.demo import run_demo

    run_demo(trials=args.trials, batch=args.batch, seed=args.seed)
    return 0


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    from assay.storage.factory import normalize_database_url
    from assay.storage.migrate import current_revision, head_revision, upgrade
    from assay.storage.sql import make_engine

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
    token = create_api_key(store, args.project, name=args.name)
    store.close()
    print(token)
    print(
        f"# API key for project {args.project!r}; it is shown only once. Send it as "
        "'Authorization: Bearer <key>'.",
        file=sys.stderr,
    )
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = _settings(args)
    if not settings.auth_required and not settings.loopback:
        print("refusing to serve without authentication on a non-loopback address", file=sys.stderr)
        return 2
    from assay.storage.factory import open_store

    store = open_store(settings.database_url, migrate=False)  # refuses an old schema
    mode = (
        "API keys required"
        if settings.auth_required
        else (f"NO AUTHENTICATION (local mode: bound to {settings.host} only)")
    )
    url = f"http://{settings.host}:{settings.port}"
    print(
        f"Assay serving on {url}  (dashboard {url}/, API {url}/api/v1, docs {url}/docs)\n"
        f"  database: {settings.database_url}\n  auth: {mode}",
        flush=True,
    )
    if args.workers > 1:
        store.close()
        os.environ.update(
            ASSAY_DATABASE_URL=settings.database_url, ASSAY_HOST=settings.host,
            ASSAY_PORT=str(settings.port), ASSAY_AUTH=settings.auth,
        )  # fmt: skip
        uvicorn.run(
            "assay.service.app:create_app_from_env", factory=True, host=settings.host,
            port=settings.port, workers=args.workers, log_level=args.log_level,
        )  # fmt: skip
        return 0
    from assay.service.app import create_app

    uvicorn.run(
        create_app(settings, store=store), host=settings.host, port=settings.port,
        log_level=args.log_level,
    )  # fmt: skip
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
    serve.set_defaults(func=_cmd_serve)

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
    db_option(kc)
    kc.set_defaults(func=_cmd_keys_create)

    demo = sub.add_parser("demo", help="a noisy constrained optimization, live in the terminal")
    demo.add_argument("--trials", type=int, default=25)
    demo.add_argument("--batch", type=int, default=1)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_cmd_demo)
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
