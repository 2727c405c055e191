"""Experiments through the stock client."""

import mlflow
import pytest
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException


def test_create_get_rename_tag_delete_restore(client, unique):
    name = unique()
    experiment_id = client.create_experiment(name, tags={"team": "ml"})
    experiment = client.get_experiment(experiment_id)
    assert experiment.name == name
    assert experiment.tags == {"team": "ml"}
    assert experiment.lifecycle_stage == "active"
    assert experiment.artifact_location == f"mlflow-artifacts:/{experiment_id}"
    assert client.get_experiment_by_name(name).experiment_id == experiment_id

    client.rename_experiment(experiment_id, name + "-renamed")
    assert client.get_experiment(experiment_id).name == name + "-renamed"
    assert client.get_experiment_by_name(name) is None

    client.set_experiment_tag(experiment_id, "stage", "dev")
    client.delete_experiment_tag(experiment_id, "team")
    assert client.get_experiment(experiment_id).tags == {"stage": "dev"}

    client.delete_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "deleted"
    client.restore_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "active"


def test_duplicate_name_is_refused(client, unique):
    name = unique()
    client.create_experiment(name)
    with pytest.raises(MlflowException) as error:
        client.create_experiment(name)
    assert error.value.error_code == "RESOURCE_ALREADY_EXISTS"


def test_set_experiment_creates_when_missing(client, unique):
    name = unique()
    experiment = mlflow.set_experiment(name)
    assert experiment.name == name
    assert mlflow.set_experiment(name).experiment_id == experiment.experiment_id


def test_search_filters_orders_and_pages(client, unique):
    prefix = unique("search")
    ids = [client.create_experiment(f"{prefix}-{i}", tags={"parity": str(i % 2)}) for i in range(7)]
    found = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'", order_by=["name DESC"])
    assert [e.name for e in found] == [f"{prefix}-{i}" for i in reversed(range(7))]
    odd = client.search_experiments(filter_string=f"name LIKE '{prefix}-%' AND tags.parity = '1'")
    assert sorted(e.name for e in odd) == [f"{prefix}-{i}" for i in (1, 3, 5)]

    page = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'", order_by=["name ASC"], max_results=3)
    names = [e.name for e in page]
    while page.token:
        page = client.search_experiments(
            filter_string=f"name LIKE '{prefix}-%'", order_by=["name ASC"], max_results=3, page_token=page.token
        )
        names += [e.name for e in page]
    assert names == [f"{prefix}-{i}" for i in range(7)]

    client.delete_experiment(ids[0])
    active = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'")
    deleted = client.search_experiments(view_type=ViewType.DELETED_ONLY, filter_string=f"name LIKE '{prefix}-%'")
    everything = client.search_experiments(view_type=ViewType.ALL, filter_string=f"name LIKE '{prefix}-%'")
    assert (len(active), [e.experiment_id for e in deleted], len(everything)) == (6, [ids[0]], 7)


def test_bad_filter_is_an_invalid_parameter(client):
    with pytest.raises(MlflowException) as error:
        client.search_experiments(filter_string="name ~ 'x'")
    assert error.value.error_code == "INVALID_PARAMETER_VALUE"
