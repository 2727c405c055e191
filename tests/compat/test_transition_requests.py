"""Transition requests, comments and activities in the Databricks registry's shapes, with the
stage-aware permission checks, against a live server."""

import mlflow
import requests

from test_registry import _log_and_register


def test_request_approve_reject_cancel_and_comment(server, as_user, unique):
    owner_token = server.create_user("tr-owner", "owner-password-1")
    requester_token = server.create_user("tr-req", "requester-pass-1")
    staging_token = server.create_user("tr-staging", "staging-pass-12")
    prod_token = server.create_user("tr-prod", "production-pass-1")
    as_user(token=owner_token)
    mlflow.set_experiment(unique())
    name = unique("reviewed")
    _log_and_register(name, 1)
    _log_and_register(name, 2)

    def api(token, method, path, **body):
        url = f"{server.base}/api/2.0/mlflow/{path}"
        headers = {"Authorization": f"Bearer {token}"}
        if method == "GET":
            return requests.get(url, params=body, headers=headers, timeout=10)
        return requests.request(method, url, json=body, headers=headers, timeout=10)

    model_id = api(owner_token, "GET", "databricks/registered-models/get", name=name).json()["registered_model_databricks"]["id"]
    for user, level in (("tr-req", "CAN_READ"), ("tr-staging", "CAN_MANAGE_STAGING_VERSIONS"), ("tr-prod", "CAN_MANAGE_PRODUCTION_VERSIONS")):
        granted = requests.patch(
            f"{server.base}/api/2.0/permissions/registered-models/{model_id}",
            json={"access_control_list": [{"user_name": user, "permission_level": level}]},
            headers={"Authorization": f"Bearer {owner_token}"},
            timeout=10,
        )
        assert granted.status_code == 200, granted.text

    # Put version 1 in Production directly (with a comment), then request version 2 there.
    direct = api(owner_token, "POST", "databricks/model-versions/transition-stage", name=name, version="1", stage="Production", archive_existing_versions=False, comment="initial")
    assert direct.status_code == 200, direct.text
    assert direct.json()["model_version_databricks"]["current_stage"] == "Production"
    created = api(requester_token, "POST", "transition-requests/create", name=name, version="2", stage="Production", comment="beats v1 on AUC")
    assert created.status_code == 200, created.text
    request = created.json()["request"]
    assert (request["to_stage"], request["user_id"], request["comment"]) == ("Production", "tr-req", "beats v1 on AUC")
    assert request["available_actions"] == ["CANCEL_TRANSITION_REQUEST"]

    listed = api(prod_token, "GET", "transition-requests/list", name=name, version="2").json()["requests"]
    assert [r["available_actions"] for r in listed] == [["APPROVE_TRANSITION_REQUEST", "REJECT_TRANSITION_REQUEST"]]

    for token in (requester_token, staging_token):
        denied = api(token, "POST", "transition-requests/approve", name=name, version="2", stage="Production", archive_existing_versions=True)
        assert denied.status_code == 403, denied.text
        assert denied.json()["error_code"] == "PERMISSION_DENIED"
    missing_flag = api(prod_token, "POST", "transition-requests/approve", name=name, version="2", stage="Production")
    assert missing_flag.status_code == 400
    approved = api(prod_token, "POST", "transition-requests/approve", name=name, version="2", stage="Production", archive_existing_versions=True, comment="approved after review")
    assert approved.status_code == 200, approved.text
    assert approved.json()["activity"]["activity_type"] == "APPROVED_REQUEST"
    client = as_user(token=owner_token)
    assert client.get_model_version(name, "2").current_stage == "Production"
    assert client.get_model_version(name, "1").current_stage == "Archived"
    assert api(prod_token, "GET", "transition-requests/list", name=name, version="2").json()["requests"] == []

    # A staging manager decides requests that stay outside Production.
    api(requester_token, "POST", "transition-requests/create", name=name, version="1", stage="Staging")
    rejected = api(staging_token, "POST", "transition-requests/reject", name=name, version="1", stage="Staging", comment="not again")
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["activity"]["activity_type"] == "REJECTED_REQUEST"
    again = api(staging_token, "POST", "transition-requests/reject", name=name, version="1", stage="Staging")
    assert again.status_code == 404

    # Only the requester (or a manager) cancels a request.
    api(requester_token, "POST", "transition-requests/create", name=name, version="1", stage="None")
    not_theirs = api(staging_token, "DELETE", "transition-requests/delete", name=name, version="1", stage="None", creator="tr-req")
    assert not_theirs.status_code == 403
    cancelled = api(requester_token, "DELETE", "transition-requests/delete", name=name, version="1", stage="None", creator="tr-req")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["activity"]["activity_type"] == "CANCELLED_REQUEST"

    comment = api(requester_token, "POST", "comments/create", name=name, version="2", comment="latency is fine").json()["comment"]
    assert comment["available_actions"] == ["EDIT_COMMENT", "DELETE_COMMENT"]
    assert api(staging_token, "PATCH", "comments/update", id=comment["id"], comment="hijacked").status_code == 403
    edited = api(requester_token, "PATCH", "comments/update", id=comment["id"], comment="latency p99 12 ms")
    assert edited.json()["comment"]["comment"] == "latency p99 12 ms"
    assert api(owner_token, "DELETE", "comments/delete", id=comment["id"]).status_code == 200

    history = api(requester_token, "GET", "model-versions/activities", name=name, version="2").json()["activities"]
    assert [a["activity_type"] for a in history] == ["REQUESTED_TRANSITION", "APPROVED_REQUEST"]
    assert history[1]["from_stage"] == "None" and history[1]["to_stage"] == "Production"
    v1 = [a["activity_type"] for a in api(owner_token, "GET", "model-versions/activities", name=name, version="1").json()["activities"]]
    assert v1 == ["APPLIED_TRANSITION", "SYSTEM_TRANSITION", "REQUESTED_TRANSITION", "REJECTED_REQUEST", "REQUESTED_TRANSITION", "CANCELLED_REQUEST"]
    bad_stage = api(requester_token, "POST", "transition-requests/create", name=name, version="2", stage="Live")
    assert bad_stage.status_code == 400 and bad_stage.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    unknown = api(requester_token, "POST", "transition-requests/create", name=name, version="9", stage="Staging")
    assert unknown.status_code == 404
