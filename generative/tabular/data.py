"""Tables for the DP tabular workload, with nothing downloaded at run time.

* :func:`load_rand_hie` — a real experiment's unit-level table that ships inside a PyPI
  package: the RAND Health Insurance Experiment extract bundled with ``statsmodels``
  (``statsmodels.datasets.randhie``; public domain; 20,190 person-years, Cameron & Trivedi
  2005). The randomised arm is the coinsurance rate (0/25/50/95/100%); outcomes include
  outpatient visits (heavy-tailed counts) and self-rated health. Note that a person appears in
  up to five yearly rows, so "one row" is a person-year, not a person.
* :func:`ab_logs` — a generator of realistic unit-level A/B test logs: user segment, device,
  country, arm, sessions, clicks and revenue with a heavy (log-normal × Pareto) tail, with
  segment/device/country effects and small treatment effects, as seen in online experiments.

Each loader returns ``(schema, table)`` with ``table`` a dict of NumPy columns.

Example:
    >>> schema, table = ab_logs(1000, seed=0)
    >>> sorted(table) == sorted(schema.names)
    True
"""

from __future__ import annotations

import numpy as np

from assay.generative.tabular.schema import TableSchema
from assay.platform.errors import UnsupportedError

RAND_HIE_SCHEMA = {
    "columns": [
        {"name": "coinsurance", "type": "categorical", "values": ["0", "25", "50", "95", "100"]},
        {"name": "idp", "type": "categorical", "values": ["0", "1"]},
        {"name": "lpi", "type": "numeric", "lower": 0, "upper": 8, "bins": 8},
        {"name": "fmde", "type": "numeric", "lower": 0, "upper": 9, "bins": 9},
        {"name": "physlm", "type": "numeric", "lower": 0, "upper": 1, "bins": 4},
        {"name": "disea", "type": "numeric", "lower": 0, "upper": 60, "bins": 12},
        {
            "name": "mdvis",
            "type": "numeric",
            "lower": 0,
            "upper": 80,
            "bins": 12,
            "scale": "log",
            "integer": True,
        },
        {"name": "health", "type": "categorical", "values": ["excellent", "good", "fair", "poor"]},
    ]
}

AB_LOGS_SCHEMA = {
    "columns": [
        {"name": "segment", "type": "categorical", "values": ["new", "casual", "regular", "power"]},
        {
            "name": "device",
            "type": "categorical",
            "values": ["ios", "android", "desktop", "tablet"],
        },
        {
            "name": "country",
            "type": "categorical",
            "values": ["US", "IN", "BR", "GB", "DE", "JP", "FR", "MX"],
        },
        {"name": "arm", "type": "categorical", "values": ["control", "treatment"]},
        {
            "name": "sessions",
            "type": "numeric",
            "lower": 0,
            "upper": 200,
            "bins": 12,
            "scale": "log",
            "integer": True,
        },
        {
            "name": "clicks",
            "type": "numeric",
            "lower": 0,
            "upper": 2000,
            "bins": 12,
            "scale": "log",
            "integer": True,
        },
        {
            "name": "revenue",
            "type": "numeric",
            "lower": 0,
            "upper": 10000,
            "bins": 16,
            "scale": "log",
        },
    ]
}


def load_rand_hie() -> tuple[TableSchema, dict[str, np.ndarray]]:
    """The RAND HIE table from ``statsmodels`` with the declared :data:`RAND_HIE_SCHEMA`.

    Raises:
        UnsupportedError: ``statsmodels`` is not installed (``pip install 'assay[privacy]'``).
    """
    try:
        from statsmodels.datasets import randhie
    except ImportError as e:  # pragma: no cover - the privacy extra installs it
        raise UnsupportedError(
            "the RAND HIE table ships with statsmodels; install assay[privacy]"
        ) from e
    d = randhie.load_pandas().data
    coins = np.rint(np.expm1(d["lncoins"].to_numpy())).astype(int).astype(str)
    health = np.full(len(d), "excellent", dtype=object)
    health[d["hlthg"].to_numpy() == 1] = "good"
    health[d["hlthf"].to_numpy() == 1] = "fair"
    health[d["hlthp"].to_numpy() == 1] = "poor"
    table = {
        "coinsurance": coins.astype(object),
        "idp": d["idp"].to_numpy().astype(int).astype(str).astype(object),
        "lpi": d["lpi"].to_numpy(float),
        "fmde": d["fmde"].to_numpy(float),
        "physlm": d["physlm"].to_numpy(float),
        "disea": d["disea"].to_numpy(float),
        "mdvis": d["mdvis"].to_numpy(int),
        "health": health,
    }
    return TableSchema.from_dict(RAND_HIE_SCHEMA), table


def ab_logs(
    n: int, seed: int = 0, treatment_lift: float = 0.05
) -> tuple[TableSchema, dict[str, np.ndarray]]:
    """Unit-level logs of a two-arm online experiment (one row per user).

    Generative story: a user's segment sets their activity level; device and country shift
    it; sessions are negative binomial (over-dispersed counts) around that level; clicks are
    binomial in sessions with a segment/device click rate; a user converts with a probability
    that grows with engagement, and a converting user's revenue is log-normal times a Pareto
    factor (a few whales dominate totals). Treatment multiplies the session rate, click rate
    and conversion odds by ``1 + treatment_lift``.

    Args:
        n: Number of users.
        seed: RNG seed.
        treatment_lift: Relative treatment effect on engagement and conversion.

    Returns:
        ``(schema, table)`` with the columns of :data:`AB_LOGS_SCHEMA`.
    """
    rng = np.random.default_rng(seed)
    seg_names = np.array(["new", "casual", "regular", "power"], dtype=object)
    seg = rng.choice(4, size=n, p=[0.35, 0.35, 0.22, 0.08])
    dev_names = np.array(["ios", "android", "desktop", "tablet"], dtype=object)
    dev_p = np.array(
        [[0.30, 0.45, 0.20, 0.05], [0.32, 0.40, 0.22, 0.06], [0.35, 0.30, 0.28, 0.07],
         [0.40, 0.20, 0.32, 0.08]]
    )  # fmt: skip
    dev = (rng.random((n, 1)) > dev_p[seg].cumsum(axis=1)).sum(axis=1)
    countries = np.array(["US", "IN", "BR", "GB", "DE", "JP", "FR", "MX"], dtype=object)
    ctry = rng.choice(8, size=n, p=[0.32, 0.18, 0.12, 0.10, 0.09, 0.08, 0.06, 0.05])
    arm = rng.integers(0, 2, size=n)
    lift = 1 + treatment_lift * arm

    seg_rate = np.array([1.5, 4.0, 12.0, 40.0])[seg]
    dev_mult = np.array([1.1, 1.0, 0.8, 0.9])[dev]
    ctry_mult = np.array([1.1, 0.9, 0.95, 1.0, 1.0, 1.2, 0.95, 0.9])[ctry]
    mean_sessions = seg_rate * dev_mult * ctry_mult * lift
    shape = 1.5  # negative binomial dispersion (gamma-Poisson)
    sessions = rng.poisson(rng.gamma(shape, mean_sessions / shape))
    ctr = np.clip(
        np.array([0.8, 1.0, 1.2, 1.4])[seg] * np.array([0.9, 0.8, 1.3, 1.0])[dev], 0, None
    )
    clicks = rng.binomial(sessions * 3, np.clip(0.25 * ctr * lift, 0, 0.95))
    logit = -4.0 + 0.9 * np.log1p(clicks) + 0.6 * (ctry_mult > 1.05) + np.log(lift)
    converts = rng.random(n) < 1 / (1 + np.exp(-logit))
    base = rng.lognormal(mean=3.0 + 0.3 * seg, sigma=0.8)
    whale = rng.pareto(1.8, size=n) + 1.0
    revenue = np.where(converts, np.round(base * whale, 2), 0.0)
    table = {
        "segment": seg_names[seg],
        "device": dev_names[dev],
        "country": countries[ctry],
        "arm": np.where(arm == 1, "treatment", "control").astype(object),
        "sessions": sessions.astype(int),
        "clicks": clicks.astype(int),
        "revenue": revenue,
    }
    return TableSchema.from_dict(AB_LOGS_SCHEMA), table


def split_rows(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random train/test split of ``n`` row indices."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = round(n * test_fraction)
    return perm[n_test:], perm[:n_test]


def take(table: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    """Rows ``idx`` of a columnar table."""
    return {k: np.asarray(v)[idx] for k, v in table.items()}
