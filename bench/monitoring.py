#!/usr/bin/env python3
"""Monitoring benchmark, side by side in one run on the same generated data
(`shared/reference/features-monitoring.md` §3.4 for the drift data):

  drift        1M current vs 1M reference rows x 20 numeric columns (5 shifted as in the
               reference: +0.5 sd, sd x 1.5, +0.05 sd, +0.15 sd, a 20% mixture): tarn's refresh
               of a monitor with the reference as its baseline (drift of every column: normed
               Wasserstein, KS, PSI, Jensen-Shannon, and the profiles) versus Evidently's
               DataDriftPreset (its own venv) and the same four statistics in numpy/scipy by
               hand; the values are checked equal (1e-6) before any time is reported
  profile      profile metrics of a 10M-row inference table by day windows with 3 slicing
               expressions: tarn's refresh versus the equivalent DuckDB SQL over the table's
               Parquet files (GROUPING SETS of day and slice: counts, nulls, zeros, mean, sd,
               min, max, 11 exact quantiles, distinct counts, value histograms), with tarn's
               peak memory (the server's peak resident set during the refresh)
  incremental  the refresh after appending 1% new rows to the 10M-row table versus a full
               refresh of the same table

    python bench/monitoring.py                                 # full size
    python bench/monitoring.py --drift-rows 20000 --profile-rows 200000 --skip-evidently   # smoke

Runs under the test venv and uses `cargo build --profile quick` unless --tarn-bin is given.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from features import arrow_body, peak_rss_mib, reset_peak_rss  # noqa: E402
from lakehouse import ROOT, TarnServer, ensure_venv, tarn_binary, timed  # noqa: E402

DAY_US = 86_400_000_000
START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
UC = "/api/2.1/unity-catalog"
ARROW = {"Content-Type": "application/vnd.apache.arrow.stream"}

EVIDENTLY_SIDE = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
reference = pd.read_parquet(sys.argv[1]).drop(columns=["ts"])
current = pd.read_parquet(sys.argv[2]).drop(columns=["ts"])
columns = list(reference.columns)
definition = DataDefinition(numerical_columns=columns)
started = time.perf_counter()
snapshot = Report([DataDriftPreset()]).run(
    current_data=Dataset.from_pandas(current, data_definition=definition),
    reference_data=Dataset.from_pandas(reference, data_definition=definition),
)
result = snapshot.dict()
seconds = time.perf_counter() - started
scores = {m["config"]["column"]: float(m["value"]) for m in result["metrics"] if m["config"]["type"].endswith("ValueDrift")}
share = next(m["value"]["share"] for m in result["metrics"] if m["config"]["type"].endswith("DriftedColumnsCount"))
print(json.dumps({"seconds": seconds, "scores": scores, "share": share}))
"""


def drift_frames(rows, seed=42):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    reference = {f"c{i:02d}": rng.normal(0, 1, rows) for i in range(20)}
    current = {f"c{i:02d}": rng.normal(0, 1, rows) for i in range(20)}
    current["c00"] = current["c00"] + 0.5
    current["c01"] = current["c01"] * 1.5
    current["c02"] = current["c02"] + 0.05
    current["c03"] = current["c03"] + 0.15
    mixture = rng.random(rows) < 0.2
    current["c04"] = np.where(mixture, rng.normal(3, 0.5, rows), current["c04"])
    times = START_US + np.sort(rng.integers(0, DAY_US, rows))
    return (
        pd.DataFrame({"ts": pd.to_datetime(times, unit="us", utc=True), **reference}),
        pd.DataFrame({"ts": pd.to_datetime(times, unit="us", utc=True), **current}),
    )


def by_hand(reference, current):
    """Normed Wasserstein, KS, PSI and JS (Evidently's binning) per column in numpy/scipy."""
    import numpy as np
    from scipy import stats
    from scipy.spatial import distance

    out = {}
    for column in reference.columns:
        if column == "ts":
            continue
        ref, cur = reference[column].to_numpy(), current[column].to_numpy()
        edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        p = np.histogram(ref, edges)[0] / len(ref)
        q = np.histogram(cur, edges)[0] / len(cur)
        js = distance.jensenshannon(p, q)

        def filled(x):
            smallest = x[x != 0].min()
            return np.where(x == 0, smallest / 1e6 if smallest <= 1e-4 else 1e-4, x)

        pf, qf = filled(p), filled(q)
        out[column] = {
            "wasserstein": stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001),
            "ks": stats.ks_2samp(ref, cur).pvalue,
            "psi": float(np.sum((pf - qf) * np.log(pf / qf))),
            "js": float(js),
        }
    return out


def create_table(server, full_name, table, cdf=False, chunk=1_000_000):
    catalog, schema, name = full_name.split(".")
    types = {"double": "double", "int64": "bigint", "string": "string", "large_string": "string", "timestamp[us, tz=UTC]": "timestamp", "timestamp[ns, tz=UTC]": "timestamp"}
    columns = [{"name": f.name, "type_text": types[str(f.type)]} for f in table.schema]
    properties = {"delta.enableChangeDataFeed": "true"} if cdf else {}
    server.session.post(f"{server.base}{UC}/tables", json={"name": name, "catalog_name": catalog, "schema_name": schema, "columns": columns, "properties": properties}).raise_for_status()
    append(server, full_name, table, chunk)


def append(server, full_name, table, chunk=1_000_000):
    for start in range(0, table.num_rows, chunk):
        part = table.slice(start, chunk)
        server.session.post(f"{server.base}/api/2.0/tarn/tables/{full_name}/data", data=arrow_body(part), headers=ARROW, timeout=1200).raise_for_status()


def refresh(server, table):
    """Runs a refresh and waits for its end; the refresh's own time (server side: from its
    request to its end, as the refresh records them, so the client's polling interval is not
    counted), the client's wall time to seeing its end, and the server's peak resident set
    during it."""
    reset_peak_rss(server.process.pid)
    started = time.perf_counter()
    response = server.session.post(f"{server.base}{UC}/tables/{table}/monitor/refreshes", timeout=60)
    response.raise_for_status()
    refresh_id = response.json()["refresh_id"]
    while True:
        info = server.session.get(f"{server.base}{UC}/tables/{table}/monitor/refreshes/{refresh_id}", timeout=60).json()
        if info["state"] not in ("PENDING", "RUNNING"):
            break
        time.sleep(0.05)
    if info["state"] != "SUCCESS":
        raise RuntimeError(f"refresh of {table} ended {info}")
    wall = time.perf_counter() - started
    return (int(info["end_time_ms"]) - int(info["start_time_ms"])) / 1000, wall, peak_rss_mib(server.process.pid)


def metrics_table(server, full_name):
    import deltalake

    location = server.session.get(f"{server.base}{UC}/tables/{full_name}").json()["storage_location"]
    return deltalake.DeltaTable(location.removeprefix("file://")).to_pyarrow_table().to_pandas()


def profile_table(rows, days, seed=7):
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    times = START_US + np.sort(rng.integers(0, days * DAY_US, rows))
    regions = np.array(["north", "south", "east", "west", "central"])
    channels = np.array(["web", "app", "store"])
    return pa.table({
        "ts": pa.array(times, pa.timestamp("us", tz="UTC")),
        "model_version": pa.array(np.where(rng.random(rows) < 0.5, "1", "2")),
        "amount": rng.gamma(2.0, 50.0, rows),
        "age": rng.integers(18, 90, rows),
        "score": rng.random(rows),
        "tenure": rng.normal(5, 2, rows),
        "items": rng.poisson(3, rows).astype(np.int64),
        "region": pa.array(regions[rng.integers(0, 5, rows)]),
        "channel": pa.array(channels[rng.integers(0, 3, rows)]),
        "prediction": rng.normal(100, 30, rows),
    })


DUCKDB_PROFILE = """
WITH source AS (
    SELECT *, date_trunc('day', ts) AS day, region AS s_region, amount > 100 AS s_amount, channel AS s_channel
    FROM read_parquet('{files}')
)
SELECT day, s_region, s_amount, s_channel, count(*) AS rows,
{numeric}
{text}
FROM source
GROUP BY GROUPING SETS ((day), (day, s_region), (day, s_amount), (day, s_channel))
"""


def duckdb_profile_sql(files):
    numeric = ["amount", "age", "score", "tenure", "items", "prediction"]
    text = ["model_version", "region", "channel"]
    quantiles = "[0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0]"
    parts = []
    for c in numeric:
        parts.append(
            f"count({c}) AS {c}_n, count(*) FILTER (WHERE {c} = 0) AS {c}_zeros, avg({c}) AS {c}_avg, stddev_samp({c}) AS {c}_sd, "
            f"min({c}) AS {c}_min, max({c}) AS {c}_max, quantile_cont({c}, {quantiles}) AS {c}_q, count(DISTINCT {c}) AS {c}_distinct"
        )
    text_parts = [
        f"count({c}) AS {c}_n, count(DISTINCT {c}) AS {c}_distinct, min(length({c})) AS {c}_minlen, max(length({c})) AS {c}_maxlen, avg(length({c})) AS {c}_avglen, histogram({c}) AS {c}_items"
        for c in text
    ]
    return DUCKDB_PROFILE.format(files=files, numeric=",\n".join(parts) + ",", text=",\n".join(text_parts))


def main():
    ensure_venv()
    import duckdb
    import numpy as np
    import pyarrow as pa

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drift-rows", type=int, default=1_000_000)
    parser.add_argument("--profile-rows", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--tarn-bin")
    parser.add_argument("--workdir")
    args = parser.parse_args()
    binary = tarn_binary(args)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tarn-bench-monitoring-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    server = TarnServer(binary, workdir / "tarn")
    try:
        server.session.post(f"{server.base}{UC}/schemas", json={"name": "bench", "catalog_name": "dev"}).raise_for_status()

        # Drift.
        print(f"drift: generating 2 x {args.drift_rows:,} rows x 20 columns...", flush=True)
        reference, current = drift_frames(args.drift_rows)
        reference.to_parquet(workdir / "reference.parquet")
        current.to_parquet(workdir / "current.parquet")
        create_table(server, "dev.bench.reference", pa.Table.from_pandas(reference, preserve_index=False))
        create_table(server, "dev.bench.current", pa.Table.from_pandas(current, preserve_index=False))
        server.session.post(f"{server.base}{UC}/tables/dev.bench.current/monitor", json={
            "output_schema_name": "dev.bench",
            "time_series": {"timestamp_col": "ts", "granularities": ["1 day"]},
            "baseline_table_name": "dev.bench.reference",
        }).raise_for_status()
        tarn_drift, wall, tarn_drift_peak = refresh(server, "dev.bench.current")
        print(f"  tarn refresh {tarn_drift:.2f}s (seen ended by the client polling every 50 ms after {wall:.2f}s; {tarn_drift_peak:.0f} MiB peak)", flush=True)
        hand_time, hand = timed(lambda: by_hand(reference, current))
        print(f"  numpy/scipy by hand {hand_time:.2f}s", flush=True)
        drift = metrics_table(server, "dev.bench.current_drift_metrics")
        drift = drift[(drift.drift_type == "BASELINE") & drift.slice_key.isna()].set_index("column_name")
        for column, expected in hand.items():
            ours = drift.loc[column]
            for name, value in [("wasserstein", ours.wasserstein_distance), ("ks", ours.ks_test["pvalue"]), ("psi", ours.population_stability_index), ("js", ours.js_distance)]:
                if abs(value - expected[name]) > 1e-6:
                    raise RuntimeError(f"{column} {name}: tarn {value}, numpy/scipy {expected[name]}")
        flagged = sorted(c for c in hand if drift.loc[c].drift_detected)
        print(f"  values equal numpy/scipy's; drifted columns: {flagged}", flush=True)
        results.append(("drift", f"2 x {args.drift_rows:,} rows x 20 cols", tarn_drift, "numpy/scipy by hand", hand_time))
        if not args.skip_evidently:
            python = Path(subprocess.run([str(ROOT / "scripts/ensure-venv.sh"), str(ROOT / "tests/compat/requirements-evidently.txt")], check=True, capture_output=True, text=True).stdout.strip()) / "bin" / "python"
            side = workdir / "evidently_side.py"
            side.write_text(EVIDENTLY_SIDE)
            print("  Evidently DataDriftPreset (minutes at 1M rows)...", flush=True)
            out = json.loads(subprocess.run([str(python), str(side), str(workdir / "reference.parquet"), str(workdir / "current.parquet")], check=True, capture_output=True, text=True).stdout)
            for column, score in out["scores"].items():
                if abs(drift.loc[column].drift_score - score) > 1e-6:
                    raise RuntimeError(f"{column}: tarn {drift.loc[column].drift_score}, Evidently {score}")
            if abs(drift.loc[":table"].share_of_drifted_columns - out["share"]) > 1e-9:
                raise RuntimeError("the share of drifted columns differs from Evidently's")
            print(f"  Evidently {out['seconds']:.1f}s; scores and share equal tarn's", flush=True)
            results.append(("drift", f"2 x {args.drift_rows:,} rows x 20 cols", tarn_drift, "Evidently DataDriftPreset", out["seconds"]))

        # Profile of a large inference table, then an incremental refresh.
        print(f"profile: generating {args.profile_rows:,} rows over {args.days} days...", flush=True)
        table = profile_table(args.profile_rows, args.days)
        create_table(server, "dev.bench.inference", table, cdf=True)
        server.session.post(f"{server.base}{UC}/tables/dev.bench.inference/monitor", json={
            "output_schema_name": "dev.bench",
            "time_series": {"timestamp_col": "ts", "granularities": ["1 day"]},
            "slicing_exprs": ["region", "amount > 100", "channel"],
        }).raise_for_status()
        tarn_profile, wall, tarn_peak = refresh(server, "dev.bench.inference")
        print(f"  tarn refresh {tarn_profile:.2f}s (seen ended after {wall:.2f}s; {tarn_peak:.0f} MiB peak)", flush=True)
        location = server.session.get(f"{server.base}{UC}/tables/dev.bench.inference").json()["storage_location"].removeprefix("file://")
        connection = duckdb.connect()
        sql = duckdb_profile_sql(f"{location}/*.parquet")
        duck_time, duck_rows = timed(lambda: connection.sql(sql).fetchall())
        profile = metrics_table(server, "dev.bench.inference_profile_metrics")
        whole = profile[profile.slice_key.isna() & (profile.column_name == "amount")]
        day_rows = sorted((int(r.window["start"].timestamp() * 1e6), r["count"], r.avg) for _, r in whole.iterrows())
        duck_whole = sorted((int(r[0].timestamp() * 1e6), r[4], r[7]) for r in duck_rows if r[1] is None and r[2] is None and r[3] is None)
        if len(day_rows) != len(duck_whole) or any(a[0] != b[0] or a[1] != b[1] or abs(a[2] - b[2]) > 1e-6 for a, b in zip(day_rows, duck_whole)):
            raise RuntimeError(f"tarn's day profiles differ from DuckDB's: {day_rows[:2]} vs {duck_whole[:2]}")
        print(f"  DuckDB {duck_time:.2f}s ({len(duck_rows)} groups); day counts and means agree", flush=True)
        results.append(("profile", f"{args.profile_rows:,} rows, days x 3 slices", tarn_profile, "DuckDB SQL", duck_time))

        new = profile_table(args.profile_rows // 100, 1, seed=11)
        shifted = pa.array(np.asarray(new.column("ts").cast(pa.int64())) + args.days * DAY_US, pa.timestamp("us", tz="UTC"))
        new = new.set_column(0, "ts", shifted)
        append(server, "dev.bench.inference", new)
        incremental, wall, incremental_peak = refresh(server, "dev.bench.inference")
        print(f"  incremental refresh after 1% new rows {incremental:.2f}s (seen ended after {wall:.2f}s; {incremental_peak:.0f} MiB peak)", flush=True)
        results.append(("incremental", f"+{new.num_rows:,} rows (1%)", incremental, "tarn full refresh", tarn_profile))
        results.append(("memory", "profile refresh peak", tarn_peak, "limit 2 GiB", 2048.0))
    finally:
        server.stop()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(f"{'phase':<12} {'work':<34} {'tarn':>10} {'competitor':<28} {'theirs':>10} {'ratio':>8}")
    for phase, work, ours, competitor, theirs in results:
        unit = (lambda v: f"{v:.0f} MiB") if phase == "memory" else (lambda v: f"{v:.2f} s")
        print(f"{phase:<12} {work:<34} {unit(ours):>10} {competitor:<28} {unit(theirs):>10} {theirs / ours:>7.1f}x")
    print("ratio = competitor / tarn (above 1: tarn is faster, or under the memory limit)")


if __name__ == "__main__":
    main()
