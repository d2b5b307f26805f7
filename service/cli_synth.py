"""``assay synth``: release a DP synthetic copy of a table, and manage privacy budgets.

::

    assay synth budget hie --epsilon 10 --delta 1e-5          # set the dataset's budget
    assay synth release data.csv --schema schema.json --dataset hie --epsilon 3 \\
        --out synthetic.csv                                    # + synthetic.csv.privacy.json
    assay synth status hie                                     # budget, spend, releases

Where the budgets live:

* **the Assay database** when a database URL is given (``--database-url`` or
  ``$ASSAY_DATABASE_URL``) and ``--ledger`` is not: the same ``privacy_budgets`` /
  ``privacy_charges`` tables the REST API (``/api/v1/datasets/{name}/privacy-budget``) charges,
  in the project named by ``--project`` (default ``default``). The schema must be current
  (``assay db upgrade``).
* **a JSON file** otherwise, for offline use on one machine: ``--ledger``, else
  ``$ASSAY_PRIVACY_LEDGER``, else ``.assay/privacy_ledger.json``. It has the same semantics
  (the shared suite runs on every backend) but is not shared with a server.

A release that does not fit the remaining budget is refused (exit status 3) and nothing is
written. CSV always works; Parquet needs ``pyarrow``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from assay.generative.tabular import io as tabular_io
from assay.generative.tabular.io import is_parquet, write_table
from assay.platform.errors import AssayError, UnsupportedError, ValidationError

DEFAULT_LEDGER = ".assay/privacy_ledger.json"
EXIT_ERROR, EXIT_BUDGET = 2, 3


@contextlib.contextmanager
def _ledger(args: argparse.Namespace) -> Iterator[Any]:
    """The SQL ledger when a database URL is given and ``--ledger`` is not; else the JSON file."""
    from assay.storage.ledger import JsonFilePrivacyLedger

    if args.ledger and args.database_url:
        raise ValidationError(
            "give --ledger (a JSON file) or --database-url (the Assay database), not both",
            field="ledger",
        )
    url = None if args.ledger else args.database_url or os.environ.get("ASSAY_DATABASE_URL")
    if not url:
        yield JsonFilePrivacyLedger(
            args.ledger or os.environ.get("ASSAY_PRIVACY_LEDGER") or DEFAULT_LEDGER
        )
        return
    from assay.storage.factory import open_store

    store = open_store(url, migrate=False)
    try:
        yield store.privacy_ledger(args.project)
    finally:
        store.close()


def read_table(path: str) -> Any:
    """A CSV or Parquet file (``--input``) as a pandas DataFrame."""
    if not Path(path).exists():
        raise ValidationError(f"input file {path!r} does not exist", field="input")
    return tabular_io.read_table(path)


def _cmd_release(args: argparse.Namespace) -> int:
    import torch

    from assay.generative.tabular.release import release_synthetic
    from assay.generative.tabular.schema import TableSchema
    from assay.generative.tabular.train import TrainConfig

    torch.set_num_threads(args.threads)
    for path in (args.input, args.out):  # fail before the release is charged, not after
        if is_parquet(path) and importlib.util.find_spec("pyarrow") is None:
            raise UnsupportedError(f"{path!r}: Parquet needs pyarrow (pip install pyarrow)")
    try:
        schema_dict = json.loads(Path(args.schema).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValidationError(f"cannot read schema {args.schema!r}: {e}", field="schema") from e
    schema = TableSchema.from_dict(schema_dict)
    table = read_table(args.input)
    config = TrainConfig(
        lr=args.lr,
        max_grad_norm=args.clip,
        batch_size=args.batch_size,
        epochs=args.epochs,
        d_model=args.d_model,
        n_layers=args.n_layers,
    )
    if not args.no_ledger and not args.dataset:
        raise ValidationError("--dataset names the ledger entry to charge", field="dataset")
    with contextlib.ExitStack() as stack:
        ledger = None if args.no_ledger else stack.enter_context(_ledger(args))
        release = release_synthetic(
            schema,
            table,
            epsilon=args.epsilon,
            delta=args.delta,
            method=args.method,
            n_rows=args.rows,
            config=config,
            ledger=ledger,
            dataset=args.dataset,
            release_id=args.release_id,
            seed=args.seed,
        )
    write_table(release.rows, schema.names, args.out)
    report_path = args.report or f"{args.out}.privacy.json"
    Path(report_path).write_text(json.dumps(release.report, indent=2))
    rep = release.report
    recon = rep["reconstruction"]
    print(
        f"wrote {len(release.rows)} synthetic rows to {args.out}; privacy report {report_path}\n"
        f"epsilon spent {rep['epsilon_spent']} at delta {rep['delta']}; "
        f"order-2 RDP epsilon {recon['epsilon2']}"
    )
    if rep.get("ledger"):
        led = rep["ledger"]
        print(
            f"ledger {rep['dataset']!r}: epsilon {led['epsilon_spent']:g} of "
            f"{led['epsilon_budget']:g} spent ({led['releases']} releases)"
        )
    return 0


def _cmd_budget(args: argparse.Namespace) -> int:
    with _ledger(args) as ledger:
        st = ledger.set_budget(args.dataset, args.epsilon, args.delta)
    print(json.dumps(st.to_dict(), indent=2))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    with _ledger(args) as ledger:
        out = ledger.status(args.dataset).to_dict()
        out["charges"] = [c.__dict__ for c in ledger.charges(args.dataset)]
    print(json.dumps(out, indent=2))
    return 0


def _guard(func):
    def wrapped(args: argparse.Namespace) -> int:
        from assay.platform.errors import PrivacyBudgetExceededError

        try:
            return func(args)
        except PrivacyBudgetExceededError as e:
            print(f"refused: {e}", file=sys.stderr)
            return EXIT_BUDGET
        except AssayError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_ERROR

    return wrapped


def add_synth_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``assay synth {release,budget,status}`` on the CLI's subparsers."""
    synth = sub.add_parser("synth", help="DP synthetic tables and privacy budgets")
    ssub = synth.add_subparsers(dest="synth_command", required=True)

    def ledger_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--ledger",
            help="offline ledger in a JSON file; used unless a database URL is given "
            f"(default $ASSAY_PRIVACY_LEDGER or {DEFAULT_LEDGER})",
        )
        p.add_argument(
            "--database-url",
            help="keep budgets in the Assay database (default $ASSAY_DATABASE_URL, unless "
            "--ledger is given)",
        )
        p.add_argument("--project", default="default", help="project of the budget (database)")

    rel = ssub.add_parser("release", help="release a DP synthetic copy of a CSV/Parquet table")
    rel.add_argument("input", help="private table (.csv, or .parquet with pyarrow)")
    rel.add_argument("--schema", required=True, help="schema JSON (public ranges/categories)")
    rel.add_argument("--out", required=True, help="synthetic table to write (.csv/.parquet)")
    rel.add_argument("--report", help="privacy report path (default OUT.privacy.json)")
    rel.add_argument("--dataset", help="ledger entry charged for this release")
    rel.add_argument("--release-id", help="idempotency key of the ledger charge")
    rel.add_argument("--no-ledger", action="store_true", help="release without charging")
    rel.add_argument("--epsilon", type=float, required=True)
    rel.add_argument("--delta", type=float, default=1e-6)
    rel.add_argument("--method", choices=["lm", "mst"], default="lm")
    rel.add_argument("--rows", type=int, help="synthetic rows (default: as many as the input)")
    rel.add_argument("--epochs", type=float, default=5.0)
    rel.add_argument("--batch-size", type=int, default=256)
    rel.add_argument("--lr", type=float, default=3e-3)
    rel.add_argument("--clip", type=float, default=1.0, help="per-sample clipping norm")
    rel.add_argument("--d-model", type=int, default=64)
    rel.add_argument("--n-layers", type=int, default=2)
    rel.add_argument("--seed", type=int, default=0)
    rel.add_argument("--threads", type=int, default=1, help="torch threads")
    ledger_arg(rel)
    rel.set_defaults(func=_guard(_cmd_release))

    bud = ssub.add_parser("budget", help="set a dataset's privacy budget")
    bud.add_argument("dataset")
    bud.add_argument("--epsilon", type=float, required=True)
    bud.add_argument("--delta", type=float, default=1e-5)
    ledger_arg(bud)
    bud.set_defaults(func=_guard(_cmd_budget))

    sta = ssub.add_parser("status", help="a dataset's budget, spend and releases")
    sta.add_argument("dataset")
    ledger_arg(sta)
    sta.set_defaults(func=_guard(_cmd_status))


__all__ = ["add_synth_parser", "read_table", "write_table"]
