"""search_runs with MLflow's filter grammar, ordering and paging."""

import pytest
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException


@pytest.fixture
def seeded(client, unique):
    experiment_id = client.create_experiment(unique())
    runs = {}
    for i in range(30):
        run = client.create_run(experiment_id, run_name=f"run-{i:02d}", tags={"team": "alpha" if i % 3 else "Beta"})
        client.log_metric(run.info.run_id, "acc", i / 30)
        client.log_param(run.info.run_id, "model", ["rf", "lr", "gb"][i % 3])
        if i % 2:
            client.set_terminated(run.info.run_id)
        runs[f"run-{i:02d}"] = run.info.run_id
    return experiment_id, runs


def names(runs):
    return sorted(r.info.run_name for r in runs)


def test_filters(client, seeded):
    experiment_id, _ = seeded
    search = lambda f: client.search_runs([experiment_id], filter_string=f, max_results=1000)
    assert len(search("metrics.acc > 0.5")) == 14
    assert names(search("metrics.acc >= 0.9 and params.model = 'rf'")) == ["run-27"]
    assert len(search("params.model != 'rf'")) == 20
    assert len(search("tags.team LIKE 'alp%'")) == 20
    assert len(search("tags.team LIKE 'beta'")) == 0
    assert len(search("tags.team ILIKE 'beta'")) == 10
    assert len(search("attributes.status = 'FINISHED'")) == 15
    assert names(search("attributes.run_name IN ('run-01', 'run-02')")) == ["run-01", "run-02"]
    assert len(search("tags.missing IS NULL")) == 30
    assert names(search("attributes.`Run Name` = 'run-03'")) == ["run-03"]


def test_order_and_pages(client, seeded):
    experiment_id, _ = seeded
    ordered = client.search_runs([experiment_id], order_by=["metrics.acc DESC"], max_results=1000)
    assert [r.info.run_name for r in ordered] == [f"run-{i:02d}" for i in reversed(range(30))]
    seen = []
    page = client.search_runs([experiment_id], order_by=["params.model ASC", "metrics.acc ASC"], max_results=7)
    seen += page
    while page.token:
        page = client.search_runs(
            [experiment_id], order_by=["params.model ASC", "metrics.acc ASC"], max_results=7, page_token=page.token
        )
        seen += page
    assert len(seen) == 30 and len({r.info.run_id for r in seen}) == 30
    models = [r.data.params["model"] for r in seen]
    assert models == sorted(models)


def test_deleted_runs_and_view_types(client, seeded):
    experiment_id, runs = seeded
    client.delete_run(runs["run-00"])
    assert len(client.search_runs([experiment_id], max_results=1000)) == 29
    deleted = client.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == [runs["run-00"]]


@pytest.mark.parametrize(
    "hostile",
    [
        "params.model = 'rf' OR 1=1",
        "params.model = 'rf'; DROP TABLE runs; --",
        "params.model = 'rf' UNION SELECT token_hash FROM tokens",
        "metrics.acc > 0 --",
    ],
)
def test_injection_attempts_are_invalid_and_harmless(client, seeded, hostile):
    experiment_id, _ = seeded
    with pytest.raises(MlflowException) as error:
        client.search_runs([experiment_id], filter_string=hostile)
    assert error.value.error_code == "INVALID_PARAMETER_VALUE"
    assert len(client.search_runs([experiment_id], max_results=1000)) == 30


def test_quotes_inside_values_are_values(client, seeded):
    experiment_id, _ = seeded
    assert client.search_runs([experiment_id], filter_string="params.model = 'rf'' OR ''1''=''1'") == []
