"""Table monitors through `databricks-sdk`'s `w.quality_monitors`, as a user drives them: an
inference-log monitor over days of predictions with a shift injected halfway finds drift in
exactly the shifted columns and windows; the profile and quality metrics equal numpy's and
scikit-learn's on the same rows; the drift values equal Evidently's and scipy's (run in
Evidently's own venv); labels that arrive later fill the quality metrics; bad settings are
refused and store nothing; a failed refresh leaves the metrics tables as they were."""

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import deltalake
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from databricks.sdk.errors import DatabricksError, NotFound, PermissionDenied
from databricks.sdk.service.catalog import (
    MonitorCronSchedule,
    MonitorInferenceLog,
    MonitorInferenceLogProblemType,
    MonitorRefreshInfoState,
    MonitorSnapshot,
    MonitorTimeSeries,
)
from scipy import stats
from sklearn import metrics as skm

from test_job_runs import workspace
from test_lakehouse import UC, arrow_body, call, grant, local_path

DAY_US = 86_400_000_000
START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-6
TYPE_TEXT = {
    pa.int64(): "bigint",
    pa.float64(): "double",
    pa.string(): "string",
    pa.bool_(): "boolean",
    pa.timestamp("us", tz="UTC"): "timestamp",
}


@pytest.fixture
def schema(server):
    name = f"monitored_{uuid.uuid4().hex[:8]}"
    created = call(server, "POST", f"{UC}/schemas", json={"name": name, "catalog_name": "dev"})
    assert created.status_code == 200, created.text
    return name


def create_table(server, full_name, rows, token=None, properties=None):
    catalog, schema, name = full_name.split(".")
    columns = [{"name": f.name, "type_text": TYPE_TEXT[f.type]} for f in rows.schema]
    created = call(server, "POST", f"{UC}/tables", token=token, json={"name": name, "catalog_name": catalog, "schema_name": schema, "columns": columns, "properties": properties or {}})
    assert created.status_code == 200, created.text
    written = call(server, "POST", f"/api/2.0/tarn/tables/{full_name}/data", token=token, data=arrow_body(rows), headers={"Content-Type": "application/vnd.apache.arrow.stream"})
    assert written.status_code == 200, written.text
    return created.json()


def predictions(days=6, per_day=1500, shift_from=3, seed=5, unlabelled_from=None):
    """Predictions over `days` days; from day `shift_from` on, `amount` moves up by 1.5
    standard deviations and `region` leans east. Labels agree with predictions 80% of the
    time; rows from `unlabelled_from` on have no label yet."""
    rng = np.random.default_rng(seed)
    rows = []
    for day in range(days):
        shifted = day >= shift_from
        n = per_day
        seconds = np.sort(rng.integers(0, 86_400, n))
        label = rng.random(n) < 0.3
        correct = rng.random(n) < 0.8
        prediction = np.where(correct, label, ~label)
        probability = np.clip(np.where(prediction, 0.6, 0.4) + rng.normal(0, 0.15, n), 0.01, 0.99)
        regions = ["north", "south", "east", "west"]
        weights = [0.1, 0.1, 0.7, 0.1] if shifted else [0.25, 0.25, 0.25, 0.25]
        frame = pd.DataFrame({
            "ts": START_US + day * DAY_US + seconds * 1_000_000,
            "model_version": rng.choice(["1", "2"], n),
            "amount": rng.normal(130 if shifted else 100, 20, n),
            "age": rng.integers(18, 80, n),
            "region": rng.choice(regions, n, p=weights),
            "tenure": rng.normal(5, 2, n),
            "prediction": np.where(prediction, "yes", "no"),
            "label": np.where(label, "yes", "no"),
            "probability": probability,
        })
        if unlabelled_from is not None and day >= unlabelled_from:
            frame["label"] = None
        rows.append(frame)
    frame = pd.concat(rows, ignore_index=True)
    frame.loc[frame.sample(frac=0.02, random_state=seed).index, "tenure"] = np.nan
    return frame


def to_arrow(frame):
    columns = {}
    for name in frame.columns:
        series = frame[name]
        if name == "ts":
            columns[name] = pa.array(series.to_numpy(), type=pa.timestamp("us", tz="UTC"))
        elif pd.api.types.is_integer_dtype(series):
            columns[name] = pa.array(series.to_numpy(), type=pa.int64())
        elif pd.api.types.is_float_dtype(series):
            values = series.to_numpy(dtype=float)
            columns[name] = pa.array(values, type=pa.float64(), mask=np.isnan(values) if name == "tenure" else None)
        else:
            columns[name] = pa.array([None if pd.isna(v) else str(v) for v in series], type=pa.string())
    return pa.table(columns)


def refreshed(w, table_name, timeout=120):
    refresh = w.quality_monitors.run_refresh(table_name=table_name)
    deadline = time.time() + timeout
    while True:
        info = w.quality_monitors.get_refresh(table_name=table_name, refresh_id=refresh.refresh_id)
        if info.state not in (MonitorRefreshInfoState.PENDING, MonitorRefreshInfoState.RUNNING):
            return info
        assert time.time() < deadline, f"refresh {refresh.refresh_id} stayed {info.state}"
        time.sleep(0.1)


def metrics_frame(server, full_name):
    info = call(server, "GET", f"{UC}/tables/{full_name}").json()
    return deltalake.DeltaTable(local_path(info)).to_pyarrow_table().to_pandas()


def day_start(day):
    return pd.Timestamp(START_US + day * DAY_US, unit="us", tz="UTC")


def whole(frame):
    return frame[frame.slice_key.isna() & frame.model_id.isna()]


def window_of(frame, day):
    return frame[frame.window.map(lambda w: w is not None and w["start"] == day_start(day))]


def test_an_inference_monitor_finds_the_injected_shift_and_labels_fill_quality(server, schema):
    w = workspace(server)
    table = f"dev.{schema}.predictions"
    data = predictions(unlabelled_from=5)
    create_table(server, table, to_arrow(data))
    baseline = f"dev.{schema}.baseline"
    create_table(server, baseline, to_arrow(predictions(days=1, per_day=3000, seed=9)).drop(["ts", "model_version"]))

    info = w.quality_monitors.create(
        table_name=table,
        output_schema_name=f"dev.{schema}",
        assets_dir=f"/Workspace/Shared/{schema}",
        inference_log=MonitorInferenceLog(
            problem_type=MonitorInferenceLogProblemType.PROBLEM_TYPE_CLASSIFICATION,
            timestamp_col="ts",
            granularities=["1 day"],
            model_id_col="model_version",
            prediction_col="prediction",
            label_col="label",
            prediction_proba_col="probability",
        ),
        baseline_table_name=baseline,
        slicing_exprs=["region", "amount > 120"],
        schedule=MonitorCronSchedule(quartz_cron_expression="0 0 * * * ?", timezone_id="UTC"),
    )
    assert info.profile_metrics_table_name == f"dev.{schema}.predictions_profile_metrics"
    assert info.drift_metrics_table_name == f"dev.{schema}.predictions_drift_metrics"
    assert info.monitor_version == 1 and info.status.value == "MONITOR_STATUS_ACTIVE"
    assert w.quality_monitors.get(table_name=table).inference_log.model_id_col == "model_version"

    done = refreshed(w, table)
    assert done.state == MonitorRefreshInfoState.SUCCESS, done.message
    assert done.end_time_ms >= done.start_time_ms
    assert [r.refresh_id for r in w.quality_monitors.list_refreshes(table_name=table).refreshes] == [done.refresh_id]

    profile = metrics_frame(server, info.profile_metrics_table_name)
    drift = metrics_frame(server, info.drift_metrics_table_name)
    assert set(profile.logging_table_commit_version) == {1}
    assert set(profile.monitor_version) == {1}

    # Profiles: one row per window and column for the whole table, equal to numpy's numbers.
    day1 = data[(data.ts >= START_US + DAY_US) & (data.ts < START_US + 2 * DAY_US)]
    inputs = whole(profile[profile.log_type == "INPUT"])
    assert sorted(inputs.window.map(lambda w: w["start"]).unique()) == [day_start(d) for d in range(6)]
    amount = window_of(inputs, 1).set_index("column_name").loc["amount"]
    values = day1.amount.to_numpy()
    assert amount["count"] == len(values) and amount.num_nulls == 0 and amount.data_type == "double"
    assert abs(amount.avg - values.mean()) < TOLERANCE
    assert abs(amount.stddev - values.std(ddof=1)) < TOLERANCE
    assert (amount["min"], amount["max"]) == (values.min(), values.max())
    expected_quantiles = np.quantile(values, [0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0])
    assert np.allclose(amount.quantiles, expected_quantiles, atol=TOLERANCE, rtol=0)
    assert abs(amount["median"] - np.median(values)) < TOLERANCE
    tenure = window_of(inputs, 1).set_index("column_name").loc["tenure"]
    assert tenure.num_nulls == day1.tenure.isna().sum() > 0
    assert abs(tenure.percent_null - 100 * day1.tenure.isna().mean()) < TOLERANCE
    region = window_of(inputs, 1).set_index("column_name").loc["region"]
    counts = day1.region.value_counts()
    assert region.distinct_count == 4
    assert [(i["item"], i["count"]) for i in region.frequent_items][0] == (counts.index[0], counts.iloc[0])
    table_row = window_of(inputs, 1).set_index("column_name").loc[":table"]
    assert table_row["count"] == len(day1)
    assert set(table_row.non_null_columns) == {"model_version", "amount", "age", "region", "tenure", "prediction", "label", "probability"}

    # Slices: a column gives one slice per value, a predicate true and false; each model too.
    day1_rows = window_of(profile[(profile.column_name == ":table") & profile.model_id.isna()], 1)
    sliced = {(r.slice_key, r.slice_value): r["count"] for _, r in day1_rows.iterrows() if r.slice_key is not None}
    assert {k: v for k, v in sliced.items() if k[0] == "region"} == {("region", k): v for k, v in counts.items()}
    above = int((day1.amount > 120).sum())
    assert sliced[("amount > 120", "true")] == above and sliced[("amount > 120", "false")] == len(day1) - above
    per_model = window_of(profile[(profile.column_name == ":table") & profile.slice_key.isna() & profile.model_id.notna()], 1)
    assert dict(zip(per_model.model_id, per_model["count"])) == day1.model_version.value_counts().to_dict()

    # Quality: equal to scikit-learn's on the same rows; none for the day without labels.
    quality = window_of(whole(profile[profile.column_name == ":table"]), 1).iloc[0]
    truth, predicted = day1.label.to_numpy(), day1.prediction.to_numpy()
    assert abs(quality.accuracy_score - skm.accuracy_score(truth, predicted)) < TOLERANCE
    for name, function in [("precision", skm.precision_score), ("recall", skm.recall_score), ("f1_score", skm.f1_score)]:
        ours = quality[name]
        assert abs(ours["macro"] - function(truth, predicted, average="macro")) < TOLERANCE, name
        assert abs(ours["weighted"] - function(truth, predicted, average="weighted")) < TOLERANCE, name
        per_class = dict(ours["one_vs_all"])
        for cls, value in zip(["no", "yes"], function(truth, predicted, average=None, labels=["no", "yes"])):
            assert abs(per_class[cls] - value) < TOLERANCE, (name, cls)
    positive = truth == "yes"
    assert abs(quality.roc_auc_score - skm.roc_auc_score(positive, day1.probability)) < TOLERANCE
    assert abs(quality.log_loss - skm.log_loss(positive, day1.probability)) < TOLERANCE
    matrix = {(e["prediction"], e["label"]): e["count"] for e in quality.confusion_matrix}
    assert matrix[("yes", "yes")] == int(((predicted == "yes") & (truth == "yes")).sum())
    unlabelled = window_of(whole(profile[profile.column_name == ":table"]), 5).iloc[0]
    assert pd.isna(unlabelled.accuracy_score)

    # Drift between consecutive days: exactly the shifted columns, exactly where it begins.
    consecutive = whole(drift[(drift.drift_type == "CONSECUTIVE") & (drift.column_name != ":table")])
    flagged = {(r.window["start"], r.column_name) for _, r in consecutive.iterrows() if r.drift_detected}
    assert flagged == {(day_start(3), "amount"), (day_start(3), "region")}, flagged
    assert set(consecutive.column_name) == {"amount", "age", "region", "tenure", "prediction", "label", "probability"}
    # Against the baseline (the unshifted distribution): every day from the shift on.
    against_baseline = whole(drift[(drift.drift_type == "BASELINE") & (drift.column_name != ":table")])
    flagged = {(r.window["start"], r.column_name) for _, r in against_baseline.iterrows() if r.drift_detected}
    assert flagged == {(day_start(d), c) for d in (3, 4, 5) for c in ("amount", "region")}, flagged
    shares = whole(drift[(drift.drift_type == "BASELINE") & (drift.column_name == ":table")])
    day3 = window_of(shares, 3).iloc[0]
    assert abs(day3.share_of_drifted_columns - 2 / 7) < TOLERANCE and not day3.dataset_drift
    assert window_of(shares, 0).iloc[0].window_cmp is None

    # Labels arrive for the last day: the next refresh fills its quality metrics.
    late = data[data.ts >= START_US + 5 * DAY_US].copy()
    late["label"] = np.where(late.prediction == "yes", "yes", "no")
    merged = call(server, "POST", f"/api/2.0/tarn/tables/{table}/merge", params={"keys": "ts,model_version,amount"}, data=arrow_body(to_arrow(late)), headers={"Content-Type": "application/vnd.apache.arrow.stream"})
    assert merged.status_code == 200, merged.text
    assert refreshed(w, table).state == MonitorRefreshInfoState.SUCCESS
    profile = metrics_frame(server, info.profile_metrics_table_name)
    assert set(profile.logging_table_commit_version) == {2}
    filled = window_of(whole(profile[profile.column_name == ":table"]), 5).iloc[0]
    assert filled.accuracy_score == 1.0

    # Updating replaces the settings and bumps the version; deleting leaves the tables.
    updated = w.quality_monitors.update(
        table_name=table,
        output_schema_name=f"dev.{schema}",
        inference_log=MonitorInferenceLog(
            problem_type=MonitorInferenceLogProblemType.PROBLEM_TYPE_CLASSIFICATION,
            timestamp_col="ts",
            granularities=["1 day", "1 week"],
            model_id_col="model_version",
            prediction_col="prediction",
        ),
    )
    assert updated.monitor_version == 2 and updated.inference_log.granularities == ["1 day", "1 week"]
    assert refreshed(w, table).state == MonitorRefreshInfoState.SUCCESS
    profile = metrics_frame(server, info.profile_metrics_table_name)
    assert set(profile.granularity.dropna()) == {"1 day", "1 week"} and set(profile.monitor_version) == {2}
    w.quality_monitors.delete(table_name=table)
    with pytest.raises(NotFound):
        w.quality_monitors.get(table_name=table)
    assert call(server, "GET", f"{UC}/tables/{info.profile_metrics_table_name}").status_code == 200


def evidently_reference(tmp_path, reference, current, numerical, categorical):
    python = os.environ.get("TARN_EVIDENTLY_PYTHON")
    if not python:
        venv = subprocess.run([str(ROOT / "scripts/ensure-venv.sh"), str(ROOT / "tests/compat/requirements-evidently.txt")], check=True, capture_output=True, text=True).stdout.strip()
        python = f"{venv}/bin/python"
    reference.to_parquet(tmp_path / "reference.parquet")
    current.to_parquet(tmp_path / "current.parquet")
    (tmp_path / "spec.json").write_text(json.dumps({"numerical": numerical, "categorical": categorical}))
    out = subprocess.run(
        [python, str(ROOT / "tests/compat/evidently_reference.py"), str(tmp_path / "reference.parquet"), str(tmp_path / "current.parquet"), str(tmp_path / "spec.json")],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout)


EVIDENTLY_METHODS = {
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
}


def drift_sample(rows, seed, shifted):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "ts": START_US + rng.integers(0, DAY_US, rows),
        "normal": rng.normal(0.4 if shifted else 0.0, 1.0, rows),
        "wide": rng.normal(0.0, 1.6 if shifted else 1.0, rows),
        "steady": rng.exponential(2.0, rows),
        "mixture": np.where(rng.random(rows) < (0.2 if shifted else 0.0), rng.normal(3, 0.5, rows), rng.normal(0, 1, rows)),
        "few": rng.integers(0, 4, rows),
        "binary": rng.integers(0, 2, rows),
        "colour": rng.choice(["red", "green", "blue", "black"], rows, p=[0.4, 0.3, 0.2, 0.1] if shifted else [0.25, 0.25, 0.25, 0.25]),
        "flag": rng.choice(["on", "off"], rows, p=[0.6, 0.4] if shifted else [0.5, 0.5]),
    })


@pytest.mark.parametrize("reference_rows,current_rows", [(3000, 2500), (800, 600)])
def test_drift_values_equal_evidently_and_scipy(server, schema, tmp_path, reference_rows, current_rows):
    """Above 1000 reference rows Evidently judges by normed Wasserstein and Jensen-Shannon, at
    or below by KS, chi-square and the z-test: both regimes, every statistic checked."""
    w = workspace(server)
    reference = drift_sample(reference_rows, seed=reference_rows, shifted=False)
    current = drift_sample(current_rows, seed=current_rows + 1, shifted=True)
    table, baseline = f"dev.{schema}.current", f"dev.{schema}.reference"
    create_table(server, table, to_arrow(current))
    create_table(server, baseline, to_arrow(reference))
    w.quality_monitors.create(
        table_name=table,
        output_schema_name=f"dev.{schema}",
        assets_dir=f"/Shared/{schema}",
        time_series=MonitorTimeSeries(timestamp_col="ts", granularities=["1 day"]),
        baseline_table_name=baseline,
    )
    assert refreshed(w, table).state == MonitorRefreshInfoState.SUCCESS
    drift = metrics_frame(server, f"dev.{schema}.current_drift_metrics")
    drift = drift[drift.drift_type == "BASELINE"].set_index("column_name")
    numerical = ["normal", "wide", "steady", "mixture", "few", "binary"]
    categorical = ["colour", "flag"]
    expected = evidently_reference(tmp_path, reference, current, numerical, categorical)

    for column in numerical + categorical:
        ours, theirs = drift.loc[column], expected["columns"][column]
        assert ours.drift_test == EVIDENTLY_METHODS[theirs["method"]], column
        assert abs(ours.drift_score - theirs["score"]) < TOLERANCE, (column, ours.drift_score, theirs["score"])
        assert abs(ours.population_stability_index - theirs["psi"]) < TOLERANCE, column
        assert abs(ours.js_distance - theirs["js"]) < TOLERANCE, column
        if column in numerical:
            assert abs(ours.wasserstein_distance - theirs["wasserstein"]) < TOLERANCE, column
            assert abs(ours.ks_test["statistic"] - theirs["ks"][0]) < TOLERANCE, column
            assert abs(ours.ks_test["pvalue"] - theirs["ks"][1]) < TOLERANCE, column
            assert abs(ours.ks_test["pvalue"] - theirs["ks_pvalue_evidently"]) < TOLERANCE, column
        else:
            assert abs(ours.chi_squared_test["statistic"] - theirs["chi"][0]) < TOLERANCE, column
            assert abs(ours.chi_squared_test["pvalue"] - theirs["chi"][1]) < TOLERANCE, column
            assert abs(ours.tv_distance - theirs["tv"]) < TOLERANCE, column
            assert abs(ours.l_infinity_distance - theirs["linf"]) < TOLERANCE, column
    table_row = drift.loc[":table"]
    assert abs(table_row.share_of_drifted_columns - expected["share"]) < TOLERANCE
    # The shifted columns drift, the steady one does not (as Evidently says, checked above).
    assert drift.loc["normal"].drift_detected and not drift.loc["steady"].drift_detected


def same(ours, theirs, path="row"):
    """Equal values, floats to 1e-9 (sums over the same rows in another order)."""
    if isinstance(ours, float) and isinstance(theirs, float):
        assert (np.isnan(ours) and np.isnan(theirs)) or abs(ours - theirs) <= 1e-9 * max(1.0, abs(theirs)), (path, ours, theirs)
    elif isinstance(ours, dict):
        assert ours.keys() == theirs.keys(), path
        for key in ours:
            same(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(ours, (list, tuple)):
        assert len(ours) == len(theirs), (path, ours, theirs)
        for i, (a, b) in enumerate(zip(ours, theirs)):
            same(a, b, f"{path}[{i}]")
    else:
        assert ours == theirs, (path, ours, theirs)


def metrics_rows(server, full_name):
    """The metrics table's rows without their provenance, in one order."""
    info = call(server, "GET", f"{UC}/tables/{full_name}").json()
    rows = deltalake.DeltaTable(local_path(info)).to_pyarrow_table().to_pylist()
    for row in rows:
        row.pop("logging_table_commit_version")
        row.pop("monitor_version")
    key = lambda r: json.dumps([r.get("log_type") or r.get("drift_type"), r["granularity"], str(r["window"]), r["model_id"], r["slice_key"], r["slice_value"], r["column_name"]])
    return sorted(rows, key=key)


def append(server, table, frame):
    written = call(server, "POST", f"/api/2.0/tarn/tables/{table}/data", data=arrow_body(to_arrow(frame)), headers={"Content-Type": "application/vnd.apache.arrow.stream"})
    assert written.status_code == 200, written.text


def daily_versions(server, profile_name):
    """The profile metrics, their day rows, and the table version each day reflects."""
    profile = metrics_frame(server, profile_name)
    daily = profile[(profile.granularity == "1 day")]
    return profile, daily, {r.window["start"]: r.logging_table_commit_version for _, r in daily.iterrows()}


def test_an_incremental_refresh_recomputes_only_touched_windows_and_equals_a_full_one(server, schema):
    w = workspace(server)
    table = f"dev.{schema}.predictions"
    data = predictions(days=5, per_day=400, shift_from=9)
    create_table(server, table, to_arrow(data), properties={"delta.enableChangeDataFeed": "true"})
    baseline = f"dev.{schema}.baseline"
    create_table(server, baseline, to_arrow(predictions(days=1, per_day=500, seed=4)))
    settings = dict(
        table_name=table, output_schema_name=f"dev.{schema}", assets_dir="/Shared/x",
        time_series=MonitorTimeSeries(timestamp_col="ts", granularities=["1 day", "1 week"]),
        baseline_table_name=baseline, slicing_exprs=["region"],
    )
    w.quality_monitors.create(**settings)
    assert refreshed(w, table).state == MonitorRefreshInfoState.SUCCESS
    # Nothing new: the refresh succeeds and writes nothing.
    profile_name = f"dev.{schema}.predictions_profile_metrics"
    history = call(server, "GET", f"/api/2.0/tarn/tables/{profile_name}/history").json()
    assert refreshed(w, table).state == MonitorRefreshInfoState.SUCCESS
    assert call(server, "GET", f"/api/2.0/tarn/tables/{profile_name}/history").json() == history

    # Rows arrive for day 2: day 2 and day 3 (whose previous day changed) are recomputed.
    late = predictions(days=3, per_day=150, shift_from=9, seed=77)
    late = late[late.ts >= START_US + 2 * DAY_US]
    late = late[late.ts < START_US + 3 * DAY_US]
    append(server, table, late)
    assert refreshed(w, table).state == MonitorRefreshInfoState.SUCCESS
    profile, daily, versions = daily_versions(server, profile_name)
    assert versions == {day_start(0): 1, day_start(1): 1, day_start(2): 2, day_start(3): 2, day_start(4): 1}
    assert window_of(whole(daily[daily.column_name == ":table"]), 2).iloc[0]["count"] == 400 + len(late)
    assert set(profile[profile.granularity == "1 week"].logging_table_commit_version) == {2}

    # Rows for a new day after the last: day 5 is compared with day 4, which the server kept
    # from the first refresh (through the second, which did not touch it) instead of reading.
    new_day = predictions(days=6, per_day=120, shift_from=9, seed=78)
    new_day = new_day[new_day.ts >= START_US + 5 * DAY_US]
    append(server, table, new_day)
    assert refreshed(w, table).state == MonitorRefreshInfoState.SUCCESS
    _, _, versions = daily_versions(server, profile_name)
    assert versions == {day_start(0): 1, day_start(1): 1, day_start(2): 2, day_start(3): 2, day_start(4): 1, day_start(5): 3}
    drift = metrics_frame(server, f"dev.{schema}.predictions_drift_metrics")
    compared = drift[(drift.granularity == "1 day") & (drift.drift_type == "CONSECUTIVE") & (drift.logging_table_commit_version == 3)]
    assert {r.window_cmp["start"] for _, r in compared.iterrows()} == {day_start(4)}
    incremental = (metrics_rows(server, profile_name), metrics_rows(server, f"dev.{schema}.predictions_drift_metrics"))

    # The same metrics as a refresh of everything.
    w.quality_monitors.delete(table_name=table)
    w.quality_monitors.create(**settings)
    assert refreshed(w, table).state == MonitorRefreshInfoState.SUCCESS
    full = (metrics_rows(server, profile_name), metrics_rows(server, f"dev.{schema}.predictions_drift_metrics"))
    same(incremental, full)


def test_bad_settings_are_refused_and_store_nothing(server, schema):
    w = workspace(server)
    table = f"dev.{schema}.predictions"
    create_table(server, table, to_arrow(predictions(days=1, per_day=50)))

    def inference(**changes):
        fields = dict(problem_type=MonitorInferenceLogProblemType.PROBLEM_TYPE_REGRESSION, timestamp_col="ts", granularities=["1 day"], model_id_col="model_version", prediction_col="amount")
        fields.update(changes)
        return MonitorInferenceLog(**fields)

    cases = [
        (dict(inference_log=inference(timestamp_col="missing")), "missing"),
        (dict(inference_log=inference(granularities=["7 minutes"])), "granularity"),
        (dict(inference_log=inference(granularities=[])), "granularities"),
        (dict(inference_log=inference(prediction_col="region")), "prediction_col"),
        (dict(inference_log=inference(timestamp_col="amount")), "timestamp"),
        (dict(inference_log=inference(label_col="region")), "label_col"),
        (dict(inference_log=inference(prediction_proba_col="probability")), "classification"),
        (dict(inference_log=inference(), time_series=MonitorTimeSeries(timestamp_col="ts", granularities=["1 day"])), "one of"),
        (dict(), "profile type"),
        (dict(snapshot=MonitorSnapshot(), slicing_exprs=["no_such_column > 1"]), "slicing"),
        (dict(snapshot=MonitorSnapshot(), schedule=MonitorCronSchedule(quartz_cron_expression="every day", timezone_id="UTC")), "cron"),
        (dict(snapshot=MonitorSnapshot(), schedule=MonitorCronSchedule(quartz_cron_expression="0 0 * * * ?", timezone_id="Mars/Olympus")), "timezone"),
        (dict(snapshot=MonitorSnapshot(), baseline_table_name=f"dev.{schema}.nothing"), "nothing"),
    ]
    for settings, words in cases:
        with pytest.raises(DatabricksError) as refused:
            w.quality_monitors.create(table_name=table, output_schema_name=f"dev.{schema}", assets_dir="/Shared/x", **settings)
        assert words.lower() in str(refused.value).lower(), (settings, str(refused.value))
        with pytest.raises(NotFound):
            w.quality_monitors.get(table_name=table)
    with pytest.raises(DatabricksError) as refused:
        w.quality_monitors.create(table_name=table, output_schema_name="nocatalog", assets_dir="/Shared/x", snapshot=MonitorSnapshot())
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    # Unknown fields and the wrong types are refused with MLflow's error JSON.
    response = call(server, "POST", f"{UC}/tables/{table}/monitor", json={"output_schema_name": f"dev.{schema}", "snapshot": {}, "drop_tables": True})
    assert response.status_code == 400 and response.json()["error_code"] == "INVALID_PARAMETER_VALUE", response.text
    with pytest.raises(NotFound):
        w.quality_monitors.get(table_name=table)
    with pytest.raises(NotFound):
        w.quality_monitors.get(table_name=f"dev.{schema}.no_table")
    # A monitor is made once; a second is refused.
    w.quality_monitors.create(table_name=table, output_schema_name=f"dev.{schema}", assets_dir="/Shared/x", snapshot=MonitorSnapshot())
    with pytest.raises(DatabricksError) as refused:
        w.quality_monitors.create(table_name=table, output_schema_name=f"dev.{schema}", assets_dir="/Shared/x", snapshot=MonitorSnapshot())
    assert refused.value.error_code == "RESOURCE_ALREADY_EXISTS"


def test_managing_takes_ownership_or_manage_and_reading_takes_select(server, schema):
    table = f"dev.{schema}.predictions"
    create_table(server, table, to_arrow(predictions(days=2, per_day=40)))
    name = f"analyst-{uuid.uuid4().hex[:6]}"
    analyst = workspace(server, token=server.create_user(name, "long-password-9"))
    admin = workspace(server)

    def create(w):
        return w.quality_monitors.create(table_name=table, output_schema_name=f"dev.{schema}", assets_dir="/Shared/x", time_series=MonitorTimeSeries(timestamp_col="ts", granularities=["1 day"]))

    with pytest.raises(PermissionDenied):
        create(analyst)
    grant(server, "table", table, name, add=["SELECT"])
    with pytest.raises(PermissionDenied) as refused:
        create(analyst)
    assert "MANAGE" in str(refused.value)
    create(admin)
    assert analyst.quality_monitors.get(table_name=table).table_name == table
    with pytest.raises(PermissionDenied):
        analyst.quality_monitors.run_refresh(table_name=table)
    with pytest.raises(PermissionDenied):
        analyst.quality_monitors.delete(table_name=table)
    grant(server, "table", table, name, add=["MANAGE"])
    grant(server, "schema", f"dev.{schema}", name, add=["CREATE_TABLE"])
    assert refreshed(analyst, table).state == MonitorRefreshInfoState.SUCCESS
    analyst.quality_monitors.delete(table_name=table)


def test_a_failed_refresh_leaves_the_metrics_tables_as_they_were(server, schema):
    w = workspace(server)
    table = f"dev.{schema}.predictions"
    create_table(server, table, to_arrow(predictions(days=2, per_day=100)))
    baseline = f"dev.{schema}.baseline"
    create_table(server, baseline, to_arrow(predictions(days=1, per_day=100, seed=3)))
    w.quality_monitors.create(
        table_name=table, output_schema_name=f"dev.{schema}", assets_dir="/Shared/x",
        time_series=MonitorTimeSeries(timestamp_col="ts", granularities=["1 day"]),
        baseline_table_name=baseline,
    )
    assert refreshed(w, table).state == MonitorRefreshInfoState.SUCCESS
    profile_name = f"dev.{schema}.predictions_profile_metrics"
    before = call(server, "GET", f"/api/2.0/tarn/tables/{profile_name}/history").json()
    # The baseline goes away: the next refresh fails, says why, and writes nothing.
    assert call(server, "DELETE", f"{UC}/tables/{baseline}").status_code == 200
    failed = refreshed(w, table)
    assert failed.state == MonitorRefreshInfoState.FAILED and baseline in failed.message
    assert call(server, "GET", f"/api/2.0/tarn/tables/{profile_name}/history").json() == before
    monitor = w.quality_monitors.get(table_name=table)
    assert monitor.status.value == "MONITOR_STATUS_ERROR" and baseline in monitor.latest_monitor_failure_msg
    # An ended refresh cannot be cancelled.
    with pytest.raises(DatabricksError) as refused:
        w.quality_monitors.cancel_refresh(table_name=table, refresh_id=failed.refresh_id)
    assert refused.value.error_code == "RESOURCE_CONFLICT"
    trail = call(server, "GET", "/api/2.0/tarn/audit", params={"entity": "monitor_refresh", "object": table}).json()["events"]
    assert [e["data"]["state"] for e in trail] == ["SUCCESS", "FAILED"]
    assert trail[0]["data"]["source_version"] == 1 and trail[1]["data"]["source_version"] is None


def test_the_cli_creates_refreshes_and_shows_a_monitor(server, schema, tmp_path):
    table, baseline = f"dev.{schema}.current", f"dev.{schema}.reference"
    create_table(server, table, to_arrow(predictions(days=3, per_day=1200, shift_from=2)))
    create_table(server, baseline, to_arrow(predictions(days=1, per_day=1500, seed=8)))
    settings = tmp_path / "monitor.json"
    settings.write_text(json.dumps({
        "output_schema_name": f"dev.{schema}",
        "time_series": {"timestamp_col": "ts", "granularities": ["1 day"]},
        "baseline_table_name": baseline,
    }))
    created = server.cli("monitors", "create", table, "--settings", str(settings)).stdout
    assert f"dev.{schema}.current_profile_metrics" in created
    shown = server.cli("monitors", "refresh", table).stdout
    assert "succeeded" in shown and "3600 rows" not in shown and "1200 rows" in shown
    lines = {line.split()[0]: line for line in shown.splitlines() if line and line.split()[0] in ("amount", "region", "age")}
    assert "wasserstein" in lines["amount"] and "DRIFT" in lines["amount"]
    assert "jensenshannon" in lines["region"] and "DRIFT" in lines["region"]
    assert "DRIFT" not in lines["age"]
    assert any(bar in lines["amount"] for bar in "▁▂▃▄▅▆▇█")
    again = server.cli("monitors", "show", table, "--granularity", "1 day").stdout
    assert again.splitlines()[1:] == shown.splitlines()[2:]
    # Charts: SVG from the API for pages to embed, and a self-contained HTML report.
    chart = call(server, "GET", f"/api/2.0/tarn/monitors/{table}/charts/amount", params={"metric": "drift"})
    assert chart.status_code == 200 and chart.headers["content-type"] == "image/svg+xml"
    assert chart.text.startswith("<svg") and "amount: drift (wasserstein)" in chart.text and "threshold 0.1" in chart.text
    assert chart.text.count("<circle") == 5, "three windows against the baseline, two against the day before"
    rows = call(server, "GET", f"/api/2.0/tarn/monitors/{table}/charts/:table", params={"metric": "rows"})
    assert rows.status_code == 200 and "rows per window" in rows.text
    bad = call(server, "GET", f"/api/2.0/tarn/monitors/{table}/charts/amount", params={"metric": "colour"})
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert call(server, "GET", f"/api/2.0/tarn/monitors/{table}/charts/nothing").status_code == 404
    report = tmp_path / "report.html"
    assert "Wrote the report" in server.cli("monitors", "report", table, "--out", str(report)).stdout
    html = report.read_text()
    assert html.startswith("<!doctype html>") and html.count("<svg") >= 10 and "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    refused = server.cli("monitors", "show", table, "--granularity", "1 hour", check=False)
    assert refused.returncode != 0 and "no granularity" in refused.stderr


def test_a_schedule_refreshes_the_monitor_until_paused(server, schema):
    from databricks.sdk.service.catalog import MonitorCronSchedulePauseStatus, MonitorRefreshInfoTrigger

    w = workspace(server)
    table = f"dev.{schema}.predictions"
    create_table(server, table, to_arrow(predictions(days=2, per_day=50)))
    every_two_seconds = MonitorCronSchedule(quartz_cron_expression="0/2 * * * * ?", timezone_id="Europe/Amsterdam")
    settings = dict(table_name=table, output_schema_name=f"dev.{schema}", time_series=MonitorTimeSeries(timestamp_col="ts", granularities=["1 day"]))
    w.quality_monitors.create(assets_dir="/Shared/x", schedule=every_two_seconds, **settings)
    deadline = time.time() + 60
    while True:
        scheduled = [r for r in w.quality_monitors.list_refreshes(table_name=table).refreshes or [] if r.trigger == MonitorRefreshInfoTrigger.SCHEDULE]
        if any(r.state == MonitorRefreshInfoState.SUCCESS for r in scheduled):
            break
        assert time.time() < deadline, "no scheduled refresh succeeded"
        time.sleep(0.2)
    assert metrics_frame(server, f"dev.{schema}.predictions_profile_metrics")["count"].max() > 0
    paused = MonitorCronSchedule(quartz_cron_expression="0/2 * * * * ?", timezone_id="UTC", pause_status=MonitorCronSchedulePauseStatus.PAUSED)
    w.quality_monitors.update(schedule=paused, **settings)
    time.sleep(1)
    before = len(w.quality_monitors.list_refreshes(table_name=table).refreshes)
    time.sleep(4.5)
    assert len(w.quality_monitors.list_refreshes(table_name=table).refreshes) == before


def test_custom_metrics_are_computed_per_group_and_compared(server, schema):
    """Aggregate, derived and drift custom metrics (`w.quality_monitors`' `custom_metrics`) are
    columns of the metrics tables, equal to numpy's per window, slice and baseline, and the same
    after an incremental refresh as after a full one; definitions that do not evaluate are
    refused."""
    from databricks.sdk.service.catalog import MonitorMetric, MonitorMetricType

    w = workspace(server)
    table = f"dev.{schema}.predictions"
    data = predictions(days=3, per_day=300, shift_from=2)
    create_table(server, table, to_arrow(data), properties={"delta.enableChangeDataFeed": "true"})
    baseline = f"dev.{schema}.baseline"
    base = predictions(days=1, per_day=400, seed=4)
    create_table(server, baseline, to_arrow(base))
    double = '{"name": "output", "type": "double", "nullable": true, "metadata": {}}'
    metrics = [
        MonitorMetric(name="log_avg", definition="avg(ln({{input_column}}))", input_columns=["amount"],
                      output_data_type=double, type=MonitorMetricType.CUSTOM_METRIC_TYPE_AGGREGATE),
        MonitorMetric(name="mean_square", definition="avg({{input_column}} * {{input_column}})", input_columns=["amount", "tenure"],
                      output_data_type=double, type=MonitorMetricType.CUSTOM_METRIC_TYPE_AGGREGATE),
        MonitorMetric(name="spend", definition="sum(amount * age)", input_columns=[":table"],
                      output_data_type=double, type=MonitorMetricType.CUSTOM_METRIC_TYPE_AGGREGATE),
        MonitorMetric(name="geo_mean", definition="exp(log_avg)", input_columns=["amount"],
                      output_data_type=double, type=MonitorMetricType.CUSTOM_METRIC_TYPE_DERIVED),
        MonitorMetric(name="log_avg_delta", definition="{{current_df}}.log_avg - {{base_df}}.log_avg",
                      input_columns=["amount"], output_data_type=double,
                      type=MonitorMetricType.CUSTOM_METRIC_TYPE_DRIFT),
    ]
    settings = dict(
        table_name=table, output_schema_name=f"dev.{schema}", assets_dir="/Shared/x",
        time_series=MonitorTimeSeries(timestamp_col="ts", granularities=["1 day"]),
        baseline_table_name=baseline, slicing_exprs=["region"], custom_metrics=metrics,
    )
    for bad, words in [
        (MonitorMetric(name="m", definition="avg(nope({{input_column}}))", input_columns=["amount"], output_data_type=double, type=MonitorMetricType.CUSTOM_METRIC_TYPE_AGGREGATE), "nope"),
        (MonitorMetric(name="m", definition="avg({{input_column}})", input_columns=["missing"], output_data_type=double, type=MonitorMetricType.CUSTOM_METRIC_TYPE_AGGREGATE), "missing"),
        (MonitorMetric(name="avg", definition="avg({{input_column}})", input_columns=["amount"], output_data_type=double, type=MonitorMetricType.CUSTOM_METRIC_TYPE_AGGREGATE), "taken"),
        (MonitorMetric(name="m", definition="{{current_df}}.unknown - 1", input_columns=["amount"], output_data_type=double, type=MonitorMetricType.CUSTOM_METRIC_TYPE_DRIFT), "unknown"),
    ]:
        with pytest.raises(DatabricksError) as refused:
            w.quality_monitors.create(**{**settings, "custom_metrics": [bad]})
        assert refused.value.error_code == "INVALID_PARAMETER_VALUE" and words in str(refused.value), (words, str(refused.value))
    w.quality_monitors.create(**settings)
    assert refreshed(w, table).state == MonitorRefreshInfoState.SUCCESS

    profile = metrics_frame(server, f"dev.{schema}.predictions_profile_metrics")
    drift = metrics_frame(server, f"dev.{schema}.predictions_drift_metrics")
    day1 = data[(data.ts >= START_US + DAY_US) & (data.ts < START_US + 2 * DAY_US)]
    inputs = profile[profile.log_type == "INPUT"]
    east = window_of(inputs[(inputs.slice_key == "region") & (inputs.slice_value == "east") & inputs.model_id.isna()], 1).set_index("column_name")
    rows = day1[day1.region == "east"]
    assert abs(east.loc["amount"].log_avg - np.log(rows.amount).mean()) < TOLERANCE
    assert abs(east.loc["amount"].geo_mean - np.exp(np.log(rows.amount).mean())) < TOLERANCE
    assert abs(east.loc["tenure"].mean_square - (rows.tenure.dropna() ** 2).mean()) < TOLERANCE * 100
    assert abs(east.loc[":table"].spend - (rows.amount * rows.age).sum()) < 1e-6 * abs((rows.amount * rows.age).sum())
    assert np.isnan(east.loc["age"].log_avg)
    base_rows = profile[(profile.log_type == "BASELINE") & profile.slice_key.isna()].set_index("column_name")
    assert abs(base_rows.loc["amount"].log_avg - np.log(base.amount).mean()) < TOLERANCE

    # Drift: each window against the one before and against the baseline.
    amount_drift = whole(drift[drift.column_name == "amount"])
    day0 = data[data.ts < START_US + DAY_US]
    consecutive = window_of(amount_drift[amount_drift.drift_type == "CONSECUTIVE"], 1).iloc[0]
    assert abs(consecutive.log_avg_delta - (np.log(day1.amount).mean() - np.log(day0.amount).mean())) < TOLERANCE
    against_base = window_of(amount_drift[amount_drift.drift_type == "BASELINE"], 1).iloc[0]
    assert abs(against_base.log_avg_delta - (np.log(day1.amount).mean() - np.log(base.amount).mean())) < TOLERANCE

    # Late rows for day 1: an incremental refresh gives what a full one gives.
    late = predictions(days=2, per_day=100, shift_from=9, seed=31)
    late = late[late.ts >= START_US + DAY_US]
    append(server, table, late)
    assert refreshed(w, table).state == MonitorRefreshInfoState.SUCCESS
    profile_name, drift_name = f"dev.{schema}.predictions_profile_metrics", f"dev.{schema}.predictions_drift_metrics"
    incremental = (metrics_rows(server, profile_name), metrics_rows(server, drift_name))
    w.quality_monitors.delete(table_name=table)
    w.quality_monitors.create(**settings)
    assert refreshed(w, table).state == MonitorRefreshInfoState.SUCCESS
    same(incremental, (metrics_rows(server, profile_name), metrics_rows(server, drift_name)))
