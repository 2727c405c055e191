"""Identity from outside: SCIM 2.0 Users, Groups and ServicePrincipals with Me, through the
Databricks SDK's `w.users`, `w.groups`, `w.service_principals` and `w.current_user`, as an
identity provider's provisioning or an admin's script uses them; filters, pages and PATCH as
RFC 7643/7644 define them; what is provisioned is what signs in and what permissions name."""

import uuid

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, PermissionDenied, ResourceAlreadyExists
from databricks.sdk.service import iam

SCIM = "/api/2.0/preview/scim/v2"
PATCH_OP = [iam.PatchSchema.URN_IETF_PARAMS_SCIM_API_MESSAGES_2_0_PATCH_OP]


def ws(server, token=None, workspace="dev"):
    return WorkspaceClient(host=server.url(workspace), token=token or server.admin_token)


def scim(server, method, path, token=None, workspace="dev", **kwargs):
    return requests.request(
        method,
        server.url(workspace) + SCIM + path,
        headers={"Authorization": f"Bearer {token or server.admin_token}"},
        timeout=30,
        **kwargs,
    )


@pytest.fixture
def tag():
    return uuid.uuid4().hex[:8]


def test_users_are_provisioned_found_patched_and_deleted_through_the_sdk(server, tag):
    w = ws(server)
    me = w.current_user.me()
    assert me.user_name == "admin" and me.active and me.id

    email = f"ada.{tag}@example.com"
    created = w.users.create(
        user_name=email,
        display_name="Ada Lovelace",
        name=iam.Name(given_name="Ada", family_name="Lovelace"),
        emails=[iam.ComplexValue(value=email, type="work", primary=True)],
        external_id=f"okta-{tag}",
        entitlements=[iam.ComplexValue(value="workspace-access"), iam.ComplexValue(value="databricks-sql-access")],
    )
    assert created.id and created.user_name == email and created.active
    # Every value sent comes back exactly.
    got = w.users.get(created.id)
    assert got.display_name == "Ada Lovelace"
    assert (got.name.given_name, got.name.family_name) == ("Ada", "Lovelace")
    assert [(e.value, e.type, e.primary) for e in got.emails] == [(email, "work", True)]
    assert got.external_id == f"okta-{tag}"
    assert [e.value for e in got.entitlements] == ["workspace-access", "databricks-sql-access"]
    raw = scim(server, "GET", f"/Users/{created.id}").json()
    assert raw["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:User"]
    assert raw["meta"]["resourceType"] == "User"
    # The user is a member of the workspace it was made in, as tarn's own API says.
    members = server.admin("GET", "/api/2.0/tarn/workspace/members")["members"]
    assert email in [m["name"] for m in members]

    # Filters (RFC 7644 3.4.2.2), as identity providers send them to find a user.
    found = list(w.users.list(filter=f'userName eq "{email.upper()}"'))
    assert [u.id for u in found] == [created.id]
    assert [u.id for u in w.users.list(filter=f'emails[type eq "work" and value ew "{tag}@example.com"]')] == [created.id]
    assert [u.id for u in w.users.list(filter=f'externalId eq "okta-{tag}" and active eq true')] == [created.id]
    assert list(w.users.list(filter=f'externalId eq "OKTA-{tag}"')) == []  # externalId is case-exact
    assert list(w.users.list(filter=f'displayName co "Lovelace" and not (userName sw "ada.{tag}")')) == []
    bad = scim(server, "GET", "/Users", params={"filter": 'userName eq "unclosed'})
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "Invalid SCIM filter" in bad.json()["message"]

    # PATCH: replace attributes, deactivate (the user's token stops working), set a password.
    token = server.admin("POST", "/api/2.0/token-management/on-behalf-of/tokens", json={"principal": email, "comment": "scim"})["token_value"]
    assert ws(server, token).current_user.me().user_name == email
    w.users.patch(
        created.id,
        operations=[
            iam.Patch(op=iam.PatchOp.REPLACE, path="displayName", value="Countess Lovelace"),
            iam.Patch(op=iam.PatchOp.ADD, path="emails", value=[{"value": f"ada@home.{tag}.example", "type": "home"}]),
            # The SDK's Patch drops a falsy value, so `active` goes in an object, as Okta sends it.
            iam.Patch(op=iam.PatchOp.REPLACE, value={"active": False}),
        ],
        schemas=PATCH_OP,
    )
    patched = w.users.get(created.id)
    assert patched.display_name == "Countess Lovelace" and patched.active is False
    assert [e.type for e in patched.emails] == ["work", "home"]
    refused = requests.get(f"{server.base}{SCIM}/Me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert refused.status_code == 401
    w.users.patch(
        created.id,
        operations=[iam.Patch(op=iam.PatchOp.REPLACE, value={"active": True, "password": "a-long-password"})],
        schemas=PATCH_OP,
    )
    signed_in = requests.get(f"{server.base}{SCIM}/Me", auth=(email, "a-long-password"), timeout=30)
    assert signed_in.status_code == 200 and signed_in.json()["userName"] == email
    assert "password" not in signed_in.json()

    # Renaming is refused and changes nothing; so is a malformed PATCH.
    rename = scim(server, "PUT", f"/Users/{created.id}", json={"userName": f"other.{tag}@example.com"})
    assert rename.status_code == 400 and "cannot change" in rename.json()["message"]
    malformed = scim(server, "PATCH", f"/Users/{created.id}", json={"Operations": [{"op": "move", "path": "displayName"}]})
    assert malformed.status_code == 400
    assert w.users.get(created.id).display_name == "Countess Lovelace"

    # PUT replaces the kept attributes.
    w.users.update(created.id, user_name=email, display_name="A. L.", entitlements=[iam.ComplexValue(value="workspace-access")])
    replaced = w.users.get(created.id)
    assert replaced.display_name == "A. L." and not replaced.emails and replaced.name is None
    assert "emails" not in scim(server, "GET", f"/Users/{created.id}").json()

    # Creating the same user again conflicts; deleting removes it (and its access), and the
    # same name made again comes back.
    with pytest.raises(ResourceAlreadyExists):
        w.users.create(user_name=email)
    w.users.delete(created.id)
    with pytest.raises(NotFound):
        w.users.get(created.id)
    assert list(w.users.list(filter=f'userName eq "{email}"')) == []
    assert requests.get(f"{server.base}{SCIM}/Me", auth=(email, "a-long-password"), timeout=30).status_code == 401
    again = w.users.create(user_name=email, display_name="Ada again")
    assert again.id == created.id and again.active and again.display_name == "Ada again"


def test_groups_hold_members_that_permissions_and_pages_see(server, tag):
    w = ws(server)
    users = [w.users.create(user_name=f"member{i}.{tag}@example.com") for i in range(3)]
    robot = w.service_principals.create(display_name=f"ci-{tag}", entitlements=[iam.ComplexValue(value="workspace-access")])
    assert robot.application_id and robot.display_name == f"ci-{tag}" and robot.active
    assert w.service_principals.get(robot.id).application_id == robot.application_id
    assert [sp.id for sp in w.service_principals.list(filter=f'displayName eq "ci-{tag}"')] == [robot.id]

    group = w.groups.create(display_name=f"scientists-{tag}", members=[iam.ComplexValue(value=users[0].id)])
    assert [m.value for m in w.groups.get(group.id).members] == [users[0].id]
    w.groups.patch(
        group.id,
        operations=[iam.Patch(op=iam.PatchOp.ADD, path="members", value=[{"value": users[1].id}, {"value": robot.id}])],
        schemas=PATCH_OP,
    )
    members = {m.value: m.display for m in w.groups.get(group.id).members}
    assert members == {users[0].id: users[0].user_name, users[1].id: users[1].user_name, robot.id: robot.application_id}
    w.groups.patch(
        group.id,
        operations=[iam.Patch(op=iam.PatchOp.REMOVE, path=f'members[value eq "{users[0].id}"]')],
        schemas=PATCH_OP,
    )
    assert sorted(m.value for m in w.groups.get(group.id).members) == sorted([users[1].id, robot.id])
    # A user shows its groups; a filter finds a group by member.
    assert [g.display for g in w.users.get(users[1].id).groups] == [f"scientists-{tag}"]
    assert [g.id for g in w.groups.list(filter=f'members.value eq "{users[1].id}"')] == [group.id]
    unknown = scim(server, "PATCH", f"/Groups/{group.id}", json={"schemas": [PATCH_OP[0].value], "Operations": [{"op": "add", "path": "members", "value": [{"value": "999999"}]}]})
    assert unknown.status_code == 400

    # Membership through SCIM is what permissions use: the group's grant reaches its member.
    experiment = server.admin("POST", "/api/2.0/mlflow/experiments/create", json={"name": f"scim-{tag}"})["experiment_id"]
    token = server.admin("POST", "/api/2.0/token-management/on-behalf-of/tokens", json={"principal": users[1].user_name, "comment": "scim"})["token_value"]
    read = lambda: requests.get(f"{server.base}/api/2.0/mlflow/experiments/get", params={"experiment_id": experiment}, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert read().status_code == 403
    server.admin("PATCH", f"/api/2.0/permissions/experiments/{experiment}", json={"access_control_list": [{"group_name": f"scientists-{tag}", "permission_level": "CAN_READ"}]})
    assert read().status_code == 200
    w.groups.patch(group.id, operations=[iam.Patch(op=iam.PatchOp.REMOVE, path="members")], schemas=PATCH_OP)
    assert w.groups.get(group.id).members in (None, [])
    assert read().status_code == 403

    # Pages: startIndex is 1-based, count bounds a page, totalResults counts all matches; the
    # SDK's own paging walks them all.
    everyone = scim(server, "GET", "/Users", params={"filter": f'userName ew ".{tag}@example.com"', "sortBy": "userName", "sortOrder": "descending"}).json()
    assert everyone["totalResults"] == 3
    assert [r["userName"] for r in everyone["Resources"]] == sorted((u.user_name for u in users), reverse=True)
    page = scim(server, "GET", "/Users", params={"filter": f'userName ew ".{tag}@example.com"', "sortBy": "userName", "startIndex": 2, "count": 1, "attributes": "userName"}).json()
    assert (page["totalResults"], page["startIndex"], page["itemsPerPage"]) == (3, 2, 1)
    assert set(page["Resources"][0]) == {"id", "schemas", "userName"} and page["Resources"][0]["userName"] == users[1].user_name
    assert len(list(w.users.list(filter=f'userName ew ".{tag}@example.com"', count=1))) == 3

    w.groups.delete(group.id)
    with pytest.raises(NotFound):
        w.groups.get(group.id)


def test_only_admins_change_identities_and_every_change_is_audited(server, tag):
    token = server.create_user(f"plain-{tag}", "password-plain-1")
    plain = ws(server, token)
    assert plain.current_user.me().user_name == f"plain-{tag}"
    assert any(u.user_name == f"plain-{tag}" for u in plain.users.list(filter=f'userName eq "plain-{tag}"'))
    with pytest.raises(PermissionDenied):
        plain.users.create(user_name=f"sneaky-{tag}")
    me = plain.current_user.me()
    with pytest.raises(PermissionDenied):
        plain.users.patch(me.id, operations=[iam.Patch(op=iam.PatchOp.ADD, path="entitlements", value=[{"value": "admin"}])], schemas=PATCH_OP)
    assert scim(server, "GET", "/Users").status_code == 200
    assert requests.get(f"{server.base}{SCIM}/Users", timeout=30).status_code == 401
    admin_id = ws(server).current_user.me().id
    assert scim(server, "DELETE", f"/Users/{admin_id}").status_code == 400
    for hostile in ["../1", "1 OR 1=1", "99999999999999999999", "-1"]:
        assert scim(server, "GET", f"/Users/{requests.utils.quote(hostile, safe='')}").status_code == 404
    # A create that cannot be made whole makes nothing.
    for body in [
        {"userName": f"orphan-{tag}", "groups": [{"value": "999999"}]},
        {"userName": f"orphan-{tag}", "password": "short"},
    ]:
        refused = scim(server, "POST", "/Users", json=body)
        assert refused.status_code == 400, refused.text
        assert list(ws(server).users.list(filter=f'userName eq "orphan-{tag}"')) == []
        assert scim(server, "GET", "/Users", params={"filter": f'userName eq "orphan-{tag}"'}).json()["totalResults"] == 0
    too_big = scim(server, "POST", "/Users", json={"userName": f"big-{tag}", "title": "x" * 70_000})
    assert too_big.status_code == 400
    assert list(ws(server).users.list(filter=f'userName eq "big-{tag}"')) == []

    created = ws(server).users.create(user_name=f"audited-{tag}", display_name="Audited")
    ws(server).users.delete(created.id)
    events = server.admin("GET", "/api/2.0/tarn/audit", params={"object": f"audited-{tag}", "account": "true"})["events"]
    actions = [(e["entity"], e["action"]) for e in events]
    assert ("principal", "created") in actions and ("principal", "updated") in actions and ("principal", "deleted") in actions
