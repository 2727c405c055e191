"""Workspaces by URL, tokens and basic auth, and permissions enforced for the stock client."""

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException


def test_workspaces_are_separate(server, as_user, unique):
    name = unique()
    dev = as_user(token=server.admin_token, workspace="dev")
    dev_id = dev.create_experiment(name)
    dev_run = dev.create_run(dev_id)
    dev.log_metric(dev_run.info.run_id, "where", 1.0)

    prod = as_user(token=server.admin_token, workspace="prod")
    prod_id = prod.create_experiment(name)
    prod_run = prod.create_run(prod_id)
    prod.log_metric(prod_run.info.run_id, "where", 2.0)
    with mlflow.start_run(experiment_id=prod_id) as run:
        mlflow.log_text("prod only", "where.txt")
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/where.txt") == "prod only"

    assert prod.get_run(prod_run.info.run_id).data.metrics == {"where": 2.0}
    with pytest.raises(MlflowException) as error:
        prod.get_run(dev_run.info.run_id)
    assert error.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    dev = as_user(token=server.admin_token, workspace="dev")
    assert dev.get_run(dev_run.info.run_id).data.metrics == {"where": 1.0}
    with pytest.raises(MlflowException):
        dev.get_run(run.info.run_id)


def test_token_and_basic_auth(server, as_user, unique):
    token = server.create_user("compat-alice", "alice-password-1")
    with_token = as_user(token=token)
    experiment_id = with_token.create_experiment(unique())
    assert with_token.get_experiment(experiment_id).experiment_id == experiment_id
    with_password = as_user(username="compat-alice", password="alice-password-1")
    assert with_password.get_experiment(experiment_id).experiment_id == experiment_id
    run = with_password.create_run(experiment_id)
    assert run.info.user_id == "compat-alice"

    for credentials in ({}, {"token": "tarn_not_a_real_token"}, {"username": "compat-alice", "password": "wrong"}):
        anonymous = as_user(**credentials)
        with pytest.raises(MlflowException) as error:
            anonymous.get_experiment(experiment_id)
        assert error.value.error_code == "UNAUTHENTICATED", credentials


def test_permissions(server, as_user, unique):
    owner_token = server.create_user("compat-owner", "owner-password-1")
    other_token = server.create_user("compat-bob", "bob-password-12")
    owner = as_user(token=owner_token)
    name = unique("private")
    experiment_id = owner.create_experiment(name)
    run = owner.create_run(experiment_id)
    run_id = run.info.run_id

    bob = as_user(token=other_token)
    for action in (
        lambda: bob.get_experiment(experiment_id),
        lambda: bob.get_run(run_id),
        lambda: bob.log_metric(run_id, "m", 1.0),
        lambda: bob.get_metric_history(run_id, "m"),
    ):
        with pytest.raises(MlflowException) as error:
            action()
        assert error.value.error_code == "PERMISSION_DENIED"
    assert name not in [e.name for e in bob.search_experiments()]
    assert bob.search_runs([experiment_id]) == []

    server.grant(owner_token, experiment_id, "compat-bob", "CAN_READ")
    bob = as_user(token=other_token)
    assert bob.get_experiment(experiment_id).name == name
    assert bob.get_run(run_id).info.run_id == run_id
    assert name in [e.name for e in bob.search_experiments()]
    with pytest.raises(MlflowException) as error:
        bob.log_metric(run_id, "m", 1.0)
    assert error.value.error_code == "PERMISSION_DENIED"

    server.grant(owner_token, experiment_id, "compat-bob", "CAN_EDIT")
    bob.log_metric(run_id, "m", 1.0)
    assert bob.get_run(run_id).data.metrics == {"m": 1.0}
    with pytest.raises(MlflowException) as error:
        bob.delete_experiment(experiment_id)
    assert error.value.error_code == "PERMISSION_DENIED"


def test_non_member_is_refused_in_another_workspace(server, as_user):
    token = server.create_user("compat-carol", "carol-password-1", workspaces=("dev",))
    prod = as_user(token=token, workspace="prod")
    with pytest.raises(MlflowException) as error:
        prod.search_experiments()
    assert error.value.error_code == "PERMISSION_DENIED"


def test_health_needs_no_credentials(server):
    assert requests.get(server.base + "/health", timeout=5).text == "OK"
