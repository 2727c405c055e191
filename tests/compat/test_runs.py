"""Runs, params, metrics and tags through the stock client."""

import math
import time

import mlflow
import pandas as pd
import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException


def test_fluent_run_round_trip(client, unique):
    mlflow.set_experiment(unique())
    with mlflow.start_run(run_name="first") as run:
        mlflow.log_param("lr", 0.1)
        mlflow.log_params({"depth": 3, "model": "rf"})
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.9, "nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")})
        mlflow.set_tag("team", "ml")
        mlflow.set_tags({"a": "1", "b": "2"})
        mlflow.delete_tag("b")
    stored = client.get_run(run.info.run_id)
    assert stored.info.run_name == "first"
    assert stored.info.status == "FINISHED"
    assert stored.info.end_time >= stored.info.start_time
    assert stored.data.params == {"lr": "0.1", "depth": "3", "model": "rf"}
    assert stored.data.metrics["loss"] == pytest.approx(0.2)
    assert stored.data.metrics["acc"] == 0.9
    assert math.isnan(stored.data.metrics["nan"])
    assert stored.data.metrics["inf"] == 1.7976931348623157e308
    assert stored.data.metrics["ninf"] == -1.7976931348623157e308
    assert stored.data.tags["team"] == "ml" and stored.data.tags["a"] == "1" and "b" not in stored.data.tags
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, 1.0 / (s + 1)) for s in range(5)]


def test_log_batch_splits_large_batches(client, unique):
    experiment_id = client.create_experiment(unique())
    run = client.create_run(experiment_id)
    now = int(time.time() * 1000)
    metrics = [Metric("series", float(i), now + i, i) for i in range(2500)]
    params = [Param(f"p{i}", str(i)) for i in range(150)]
    tags = [RunTag(f"t{i}", str(i)) for i in range(120)]
    client.log_batch(run.info.run_id, metrics=metrics, params=params, tags=tags)
    history = client.get_metric_history(run.info.run_id, "series")
    assert [m.value for m in history] == [float(i) for i in range(2500)]
    stored = client.get_run(run.info.run_id)
    assert len(stored.data.params) == 150 and stored.data.params["p149"] == "149"
    assert stored.data.tags["t119"] == "119"
    assert stored.data.metrics["series"] == 2499.0


def test_params_are_immutable(client, unique):
    experiment_id = client.create_experiment(unique())
    run = client.create_run(experiment_id)
    client.log_param(run.info.run_id, "lr", "0.1")
    client.log_param(run.info.run_id, "lr", "0.1")
    with pytest.raises(MlflowException) as error:
        client.log_param(run.info.run_id, "lr", "0.2")
    assert error.value.error_code == "INVALID_PARAMETER_VALUE"
    assert client.get_run(run.info.run_id).data.params == {"lr": "0.1"}


def test_delete_restore_and_deleted_runs_refuse_logging(client, unique):
    experiment_id = client.create_experiment(unique())
    run = client.create_run(experiment_id)
    client.delete_run(run.info.run_id)
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "deleted"
    with pytest.raises(MlflowException):
        client.log_metric(run.info.run_id, "m", 1.0)
    client.restore_run(run.info.run_id)
    client.log_metric(run.info.run_id, "m", 1.0)
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}


def test_unknown_run_is_not_found(client):
    with pytest.raises(MlflowException) as error:
        client.get_run("0123456789abcdef0123456789abcdef")
    assert error.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_log_input_dataset(client, unique):
    mlflow.set_experiment(unique())
    frame = pd.DataFrame({"x": [1, 2, 3], "y": [0, 1, 0]})
    dataset = mlflow.data.from_pandas(frame, name="toy", targets="y")
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="training")
    inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    assert inputs[0].dataset.name == "toy"
    assert inputs[0].dataset.digest == dataset.digest
    assert {t.key: t.value for t in inputs[0].tags}["mlflow.data.context"] == "training"
    found = client.search_runs([run.info.experiment_id], filter_string="datasets.name = 'toy'")
    assert [r.info.run_id for r in found] == [run.info.run_id]
