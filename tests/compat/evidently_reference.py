"""Evidently's and scipy's drift numbers for a reference and a current sample, run in the
Evidently venv (Evidently 0.7 needs pandas 2): what tarn's drift metrics must equal.

    python evidently_reference.py REFERENCE.parquet CURRENT.parquet SPEC.json > OUT.json

SPEC names the numerical and categorical columns. OUT holds, per column, Evidently's default
test (DataDriftPreset: its method and score), its PSI, Jensen-Shannon, normed Wasserstein and KS
scores, scipy's KS statistic and p-value and chi-square statistic and p-value; and the preset's
share of drifted columns."""

import json
import sys
import warnings

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.legacy.calculations.stattests import (
    jensenshannon_stat_test,
    ks_stat_test,
    psi_stat_test,
    wasserstein_stat_test,
)
from evidently.legacy.core import ColumnType
from evidently.presets import DataDriftPreset
from scipy import stats

warnings.simplefilter("ignore")


def main(reference_path, current_path, spec_path):
    reference = pd.read_parquet(reference_path)
    current = pd.read_parquet(current_path)
    spec = json.loads(open(spec_path).read())
    numerical, categorical = spec["numerical"], spec["categorical"]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    columns = numerical + categorical
    snapshot = Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(current[columns], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    out = {"columns": {}}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("DriftedColumnsCount"):
            out["share"] = metric["value"]["share"]
            out["count"] = metric["value"]["count"]
        elif config["type"].endswith("ValueDrift"):
            out["columns"][config["column"]] = {
                "method": config["method"],
                "score": float(metric["value"]),
            }
    for column in columns:
        kind = ColumnType.Numerical if column in numerical else ColumnType.Categorical
        ref = reference[column].replace([np.inf, -np.inf], np.nan).dropna()
        cur = current[column].replace([np.inf, -np.inf], np.nan).dropna()
        entry = out["columns"][column]
        entry["psi"] = float(psi_stat_test(ref, cur, kind, None).drift_score)
        entry["js"] = float(jensenshannon_stat_test(ref, cur, kind, None).drift_score)
        if kind == ColumnType.Numerical:
            entry["wasserstein"] = float(wasserstein_stat_test(ref, cur, kind, None).drift_score)
            entry["ks_pvalue_evidently"] = float(ks_stat_test(ref, cur, kind, None).drift_score)
            ks = stats.ks_2samp(ref.to_numpy(), cur.to_numpy())
            entry["ks"] = [float(ks.statistic), float(ks.pvalue)]
        else:
            keys = sorted(set(ref.unique()) | set(cur.unique()))
            ref_counts = ref.value_counts()
            cur_counts = cur.value_counts()
            expected = np.array([ref_counts.get(k, 0) for k in keys], dtype=float) * len(cur) / len(ref)
            observed = np.array([cur_counts.get(k, 0) for k in keys], dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):
                chi = stats.chisquare(observed, expected)
            entry["chi"] = [float(chi.statistic), float(chi.pvalue)]
            p = np.array([ref_counts.get(k, 0) for k in keys], dtype=float) / len(ref)
            q = np.array([cur_counts.get(k, 0) for k in keys], dtype=float) / len(cur)
            entry["tv"] = float(0.5 * np.abs(p - q).sum())
            entry["linf"] = float(np.abs(p - q).max())
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(*sys.argv[1:4])
