"""The model registry through the stock client: registered models, versions, stages, aliases,
tags, search, and loading `models:/` URIs with pyfunc."""

import mlflow
import numpy as np
import pytest
import requests
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LogisticRegression


def _fit(seed=7):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(200, 4))
    labels = (features[:, 0] + 0.5 * features[:, 1] > 0).astype(int)
    return LogisticRegression().fit(features, labels), features


def _log_and_register(name, seed=7):
    model, features = _fit(seed)
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name=name)
    return info, run, model, features


def test_log_model_registers_and_loads_by_version_stage_and_alias(client, unique):
    mlflow.set_experiment(unique())
    name = unique("fraud")
    info, run, model, features = _log_and_register(name)
    assert info.registered_model_version == "1"
    version = client.get_model_version(name, "1")
    assert version.run_id == run.info.run_id
    assert version.status == "READY"
    assert version.current_stage == "None"

    by_version = mlflow.pyfunc.load_model(f"models:/{name}/1")
    np.testing.assert_array_equal(by_version.predict(features), model.predict(features))

    client.transition_model_version_stage(name, "1", "Staging")
    client.transition_model_version_stage(name, "1", "production")
    assert client.get_model_version(name, "1").current_stage == "Production"
    by_stage = mlflow.pyfunc.load_model(f"models:/{name}/Production")
    np.testing.assert_array_equal(by_stage.predict(features), model.predict(features))

    client.set_registered_model_alias(name, "champion", "1")
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    champion = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    np.testing.assert_array_equal(champion.predict(features), model.predict(features))
    assert client.get_registered_model(name).aliases == {"champion": "1"}


def test_versions_survive_deleting_the_run_and_its_artifacts(server, client, unique):
    """A version owns a copy of its files: deleting the source artifacts breaks nothing."""
    mlflow.set_experiment(unique())
    name = unique("immutable")
    info, run, model, features = _log_and_register(name)
    logged = client.get_logged_model(info.model_id)
    artifact_path = logged.artifact_location.split("mlflow-artifacts:/", 1)[1]
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    base = server.base
    registry_path = client.get_model_version_download_uri(name, "1").split("mlflow-artifacts:/", 1)[1]
    original = requests.get(f"{base}/api/2.0/mlflow-artifacts/artifacts/{registry_path}/MLmodel", headers=headers, timeout=10)
    assert original.status_code == 200 and b"flavors" in original.content
    # Rewriting the source file leaves the version's copy as it was.
    rewritten = requests.put(f"{base}/api/2.0/mlflow-artifacts/artifacts/{artifact_path}/MLmodel", data=b"changed", headers=headers, timeout=10)
    assert rewritten.status_code == 200
    copy = requests.get(f"{base}/api/2.0/mlflow-artifacts/artifacts/{registry_path}/MLmodel", headers=headers, timeout=10)
    assert copy.content == original.content
    deleted = requests.delete(f"{base}/api/2.0/mlflow-artifacts/artifacts/{artifact_path}", headers=headers, timeout=10)
    assert deleted.status_code == 200
    client.delete_run(run.info.run_id)
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/1")
    np.testing.assert_array_equal(loaded.predict(features), model.predict(features))
    # The registry's copy cannot be overwritten through the artifact proxy.
    overwrite = requests.put(f"{base}/api/2.0/mlflow-artifacts/artifacts/{registry_path}/MLmodel", data=b"x", headers=headers, timeout=10)
    assert overwrite.status_code == 403


def test_stages_archive_and_latest_versions(client, unique):
    mlflow.set_experiment(unique())
    name = unique("stages")
    for seed in (1, 2, 3):
        _log_and_register(name, seed)
    client.transition_model_version_stage(name, "1", "Production")
    client.transition_model_version_stage(name, "2", "Staging")
    client.transition_model_version_stage(name, "3", "Production", archive_existing_versions=True)
    stages = {v.version: v.current_stage for v in client.search_model_versions(f"name = '{name}'")}
    assert stages == {"1": "Archived", "2": "Staging", "3": "Production"}
    latest = {v.current_stage: v.version for v in client.get_latest_versions(name, stages=["Production", "Staging"])}
    assert latest == {"Production": "3", "Staging": "2"}
    model = client.get_registered_model(name)
    assert {v.current_stage: v.version for v in model.latest_versions} == {"Archived": "1", "Staging": "2", "Production": "3"}
    with pytest.raises(MlflowException) as error:
        client.transition_model_version_stage(name, "1", "Prod")
    assert error.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as error:
        client.transition_model_version_stage(name, "1", "Archived", archive_existing_versions=True)
    assert error.value.error_code == "INVALID_PARAMETER_VALUE"


def test_models_rename_update_tags_search_delete(client, unique):
    prefix = unique("reg")
    for i in range(3):
        client.create_registered_model(f"{prefix}-{i}", tags={"team": "a" if i < 2 else "b"}, description=f"model {i}")
    with pytest.raises(MlflowException) as error:
        client.create_registered_model(f"{prefix}-0")
    assert error.value.error_code == "RESOURCE_ALREADY_EXISTS"

    found = client.search_registered_models(filter_string=f"name LIKE '{prefix}-%' AND tags.team = 'a'")
    assert sorted(m.name for m in found) == [f"{prefix}-0", f"{prefix}-1"]
    ordered = client.search_registered_models(filter_string=f"name LIKE '{prefix}-%'", order_by=["name DESC"])
    assert [m.name for m in ordered] == [f"{prefix}-2", f"{prefix}-1", f"{prefix}-0"]
    first = client.search_registered_models(filter_string=f"name LIKE '{prefix}-%'", max_results=2)
    assert len(first) == 2 and first.token
    second = client.search_registered_models(filter_string=f"name LIKE '{prefix}-%'", max_results=2, page_token=first.token)
    assert [m.name for m in second] == [f"{prefix}-2"]

    client.update_registered_model(f"{prefix}-0", description="better")
    client.set_registered_model_tag(f"{prefix}-0", "owner", "ml-team")
    client.delete_registered_model_tag(f"{prefix}-0", "team")
    model = client.get_registered_model(f"{prefix}-0")
    assert model.description == "better"
    assert model.tags == {"owner": "ml-team"}

    client.rename_registered_model(f"{prefix}-0", f"{prefix}-renamed")
    assert client.get_registered_model(f"{prefix}-renamed").description == "better"
    with pytest.raises(MlflowException) as error:
        client.get_registered_model(f"{prefix}-0")
    assert error.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as error:
        client.rename_registered_model(f"{prefix}-1", f"{prefix}-2")
    assert error.value.error_code == "RESOURCE_ALREADY_EXISTS"

    client.delete_registered_model(f"{prefix}-renamed")
    with pytest.raises(MlflowException):
        client.get_registered_model(f"{prefix}-renamed")


def test_version_tags_aliases_descriptions_and_delete(client, unique):
    mlflow.set_experiment(unique())
    name = unique("versions")
    for seed in (1, 2):
        _log_and_register(name, seed)
    client.set_model_version_tag(name, "1", "validated", "yes")
    client.update_model_version(name, "1", description="first")
    version = client.get_model_version(name, "1")
    assert version.tags == {"validated": "yes"}
    assert version.description == "first"
    found = client.search_model_versions(f"name = '{name}' AND tags.validated = 'yes'")
    assert [v.version for v in found] == ["1"]
    client.delete_model_version_tag(name, "1", "validated")
    assert client.get_model_version(name, "1").tags == {}

    client.set_registered_model_alias(name, "champion", "1")
    client.set_registered_model_alias(name, "champion", "2")
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    assert client.get_model_version(name, "2").aliases == ["champion"]
    for bad_alias in ("latest", "v3", "bad alias"):
        with pytest.raises(MlflowException) as error:
            client.set_registered_model_alias(name, bad_alias, "1")
        assert error.value.error_code == "INVALID_PARAMETER_VALUE"
    client.delete_registered_model_alias(name, "champion")
    with pytest.raises(MlflowException) as error:
        client.get_model_version_by_alias(name, "champion")
    assert error.value.error_code == "INVALID_PARAMETER_VALUE"

    client.delete_model_version(name, "2")
    with pytest.raises(MlflowException) as error:
        client.get_model_version(name, "2")
    assert error.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    # Numbers are never reused.
    _log_and_register(name, 3)
    assert sorted(v.version for v in client.search_model_versions(f"name = '{name}'")) == ["1", "3"]
    with pytest.raises(MlflowException) as error:
        client.get_model_version(name, "99")
    assert error.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_search_model_versions_by_run_and_order(client, unique):
    mlflow.set_experiment(unique())
    name = unique("search")
    runs = [_log_and_register(name, seed)[1].info.run_id for seed in (1, 2, 3)]
    found = client.search_model_versions(f"run_id IN ('{runs[0]}', '{runs[2]}')")
    assert sorted(v.version for v in found) == ["1", "3"]
    ordered = client.search_model_versions(f"name = '{name}'", order_by=["version_number ASC"])
    assert [v.version for v in ordered] == ["1", "2", "3"]
    assert [v.version for v in client.search_model_versions(f"name = '{name}' AND version_number > 1")] == ["3", "2"]
    for bad in ("name = ", "version_number = 'x' OR 1=1", "tags.x ~ 'y'"):
        with pytest.raises(MlflowException) as error:
            client.search_model_versions(bad)
        assert error.value.error_code == "INVALID_PARAMETER_VALUE"


def test_registry_permissions(server, as_user, unique):
    """READ sees, EDIT versions and tags, staging managers move outside Production, production
    managers into Production, only MANAGE deletes or renames."""
    owner_token = server.create_user("reg-owner", "owner-password-1")
    dana_token = server.create_user("reg-dana", "dana-password-12")
    owner = as_user(token=owner_token)
    mlflow.set_experiment(unique())
    name = unique("governed")
    _log_and_register(name)
    model_id = requests.get(f"{server.base}/api/2.0/mlflow/databricks/registered-models/get", params={"name": name}, headers={"Authorization": f"Bearer {owner_token}"}, timeout=10).json()["registered_model_databricks"]["id"]

    def grant(level):
        answer = requests.patch(
            f"{server.base}/api/2.0/permissions/registered-models/{model_id}",
            json={"access_control_list": [{"user_name": "reg-dana", "permission_level": level}]},
            headers={"Authorization": f"Bearer {owner_token}"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text

    def denied(action):
        with pytest.raises(MlflowException) as error:
            action()
        assert error.value.error_code == "PERMISSION_DENIED"

    dana = as_user(token=dana_token)
    denied(lambda: dana.get_registered_model(name))
    assert name not in [m.name for m in dana.search_registered_models()]

    grant("CAN_READ")
    assert dana.get_registered_model(name).name == name
    assert [v.version for v in dana.search_model_versions(f"name = '{name}'")] == ["1"]
    denied(lambda: dana.set_model_version_tag(name, "1", "k", "v"))

    grant("CAN_EDIT")
    dana.set_model_version_tag(name, "1", "k", "v")
    dana.set_registered_model_alias(name, "candidate", "1")
    denied(lambda: dana.transition_model_version_stage(name, "1", "Staging"))

    grant("CAN_MANAGE_STAGING_VERSIONS")
    dana.transition_model_version_stage(name, "1", "Staging")
    denied(lambda: dana.transition_model_version_stage(name, "1", "Production"))

    grant("CAN_MANAGE_PRODUCTION_VERSIONS")
    dana.transition_model_version_stage(name, "1", "Production")
    denied(lambda: dana.delete_model_version(name, "1"))
    denied(lambda: dana.rename_registered_model(name, name + "-x"))
    denied(lambda: dana.delete_registered_model(name))

    owner = as_user(token=owner_token)
    owner.transition_model_version_stage(name, "1", "Archived")
    owner.delete_registered_model(name)
