"""The privacy ledger: per-dataset (ε, δ) budgets that every DP release is charged against.

Accounting and persistence, not modelling: the rules (:mod:`.state`), the interface
(:mod:`.base`), and the backends — in memory (:mod:`.memory`), one JSON file for the offline
CLI (:mod:`.file`), and the Assay database (:mod:`assay.storage.sql.ledger`, reached through
``store.privacy_ledger(project)``). Releases (:mod:`assay.generative.tabular.release`) only see
a narrow protocol of it; the caller (service or CLI) passes the concrete ledger in.

May import: the standard library and :mod:`assay.platform.errors` (never SQLAlchemy here; the
SQL ledger lives with the SQL store).
"""

from assay.platform.errors import PrivacyBudgetExceededError
from assay.storage.ledger.base import PrivacyLedger, StateLedger
from assay.storage.ledger.file import JsonFilePrivacyLedger
from assay.storage.ledger.memory import InMemoryPrivacyLedger
from assay.storage.ledger.state import TOLERANCE, BudgetStatus, Charge, LedgerState

__all__ = [
    "TOLERANCE",
    "BudgetStatus",
    "Charge",
    "InMemoryPrivacyLedger",
    "JsonFilePrivacyLedger",
    "LedgerState",
    "PrivacyBudgetExceededError",
    "PrivacyLedger",
    "StateLedger",
]
