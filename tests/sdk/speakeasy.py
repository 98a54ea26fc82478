"""Every method of PyPI alloy-python-sdk-ai 0.0.1 (Speakeasy, generated from Alloy's 2024-03
OpenAPI) against an ingot server, with only the base URL changed.

Run by tests/it/sdks.rs with INGOT_URL, INGOT_KEY, INGOT_INTEGRATION (an integration whose
first workflow listens to the event INGOT_EVENT and whose second fails) in the environment.
Each call must succeed (2xx), parse into the SDK's models, and carry back what was sent.
Prints one JSON line of what was made, for the Rust side to check through the API.
"""

import json
import os
import sys
import time

from alloypythonsdk import AlloyPythonSDK
from alloypythonsdk.models import operations

URL = os.environ["INGOT_URL"]
KEY = os.environ["INGOT_KEY"]
INTEGRATION = os.environ["INGOT_INTEGRATION"]
EVENT = os.environ["INGOT_EVENT"]

sdk = AlloyPythonSDK(api_key=f"Bearer {KEY}", server_url=f"{URL}/2024-03")
called = []


def call(name, *args, **kwargs):
    """Calls one SDK method; it must answer 2xx with a body the SDK parsed."""
    res = getattr(sdk, name)(*args, **kwargs)
    status = res.http_meta.response.status_code
    assert 200 <= status < 300, f"{name}: {status} {res.http_meta.response.text}"
    called.append(name)
    return res


def body(res):
    """The parsed body model (Speakeasy puts it in `object`), or the raw JSON."""
    return getattr(res, "object", None) or res.http_meta.response.json()


def wait_finished(workflow_id, user_id, n):
    deadline = time.time() + 60
    while True:
        res = call("get_workflow_logs", operations.GetWorkflowLogsRequest(workflow_id=workflow_id, user_id=user_id, limit=30))
        runs = res.http_meta.response.json()["data"]
        if len(runs) >= n and all(r["finished"] for r in runs):
            return runs
        assert time.time() < deadline, f"runs did not finish: {runs}"
        time.sleep(0.05)


# Users.
made = body(call("create_a_user", operations.CreateAUserRequestBody(username="speakeasy@example.com", full_name="Speak Easy")))
user = made.user_id
assert user and len(user) == 24, made
got = call("get_a_user", user).http_meta.response.json()
assert got["username"] == "speakeasy@example.com" and got["fullName"] == "Speak Easy", got
updated = body(call("update_a_user", user, operations.UpdateAUserRequestBody(full_name="Speak Easier")))
assert updated.full_name == "Speak Easier" and updated.user_id == user, updated
batch = body(call("batch_create_users", operations.BatchCreateUsersRequestBody(
    users=[{"username": "batch-1"}, {"username": "batch-2", "fullName": "Two"}, {"username": "speakeasy@example.com"}])))
assert [u.full_name for u in batch.invalid_users] == [None], batch
listed = call("list_all_users").http_meta.response.json()["data"]
assert {"speakeasy@example.com", "batch-1", "batch-2"} <= {u["username"] for u in listed}, listed
token = body(call("generate_jwt_token", user)).token
assert token and token.count(".") == 2, token

# Credentials and their types.
types = body(call("get_credential_metadata")).data
assert "apiKey" in [t.name for t in types], types
oauth = next(t for t in types if t.name == "oauth2")
assert oauth.is_oauth is True and oauth.properties[0].name == "accessToken", oauth
app = body(call("credential_medata_by_app", "crm")).data
assert app.name == "apiKey" and app.is_oauth is False and app.properties[0].display_name == "API key", app
cred = body(call("create_a_credential", operations.CreateACredentialRequestBody(
    user_id=user, credential={"type": "apiKey", "name": "mine", "data": {"apiKey": "sdk-secret"}})))
assert cred.success is True and cred.credential_id, cred
creds = call("list_user_credentials", user).http_meta.response.json()["data"]
assert [c["credentialId"] for c in creds] == [cred.credential_id], creds

link = body(call("generate_oauth_link", user, "contacts", "my contacts"))
assert link.oauth_url.startswith("https://id.example/authorize?") and "code_challenge=" in link.oauth_url, link

# Integrations, as the user sees them.
integrations = body(call("list_integrations", user)).data
mine = next(i for i in integrations if i.integration_id == INTEGRATION)
assert mine.app == "crm" and mine.installed is False, mine
assert all(w.installed is False for w in mine.workflows), mine
one = body(call("get_an_integration", INTEGRATION, user)).data
assert one.integration_id == INTEGRATION and one.workflows[0].blocks[0].name, one
apps = call("list_apps").http_meta.response.json()["data"]
assert "crm" in [a["app"] for a in apps], apps
events = body(call("list_events")).data
assert [e.name for e in events] == [EVENT], events

# Installing headlessly: the user has an apiKey credential, so nothing is asked.
started = body(call("start_installation", operations.StartInstallationRequestBody(user_id=user, integration_id=INTEGRATION)))
assert started.installation_id and started.data == [], started
done = body(call("complete_installation", operations.CompleteInstallationRequestBody(installation_id=started.installation_id, data=[])))
assert done.message == "success", done
one = body(call("get_an_integration", INTEGRATION, user)).data
assert one.installed is True and all(w.installed and w.active for w in one.workflows), one
link = body(call("generate_alloy_link", user, INTEGRATION))
assert "/embedded-install?link=il_" in link.url, link

# Workflows.
workflows = body(call("list_workflows", user)).data
assert len(workflows) == 2 and all(w.installed and w.version == 1 for w in workflows), workflows
by_name = {w.name: w for w in workflows}
sync, report = by_name["Sync"].workflow_id, by_name["Report"].workflow_id
found = body(call("find_a_workflow", user, sync)).data
assert found.workflow_id == sync and found.installed_version == 1, found
off = body(call("deactivate_a_workflow", operations.DeactivateAWorkflowRequestBody(user_id=user, workflow_id=sync)))
assert off.activated is False, off
on = body(call("activate_a_workflow", operations.ActivateAWorkflowRequestBody(user_id=user, workflow_name="Sync")))
assert on.activated is True, on
versions = call("list_versions", user, sync).http_meta.response.json()["data"]
assert [v["status"] for v in versions] == ["installed"], versions
upgraded = body(call("upgrade_workflow", sync, user))
assert upgraded.upgraded is False, "already at the newest version"
users_of = call("list_users_by_workflowid", sync).http_meta.response.json()["data"]
assert [u["userId"] for u in users_of] == [user], users_of

# Runs, logs, errors, analytics.
ran = body(call("run_workflow", operations.RunWorkflowRequestBody(user_id=user, workflow_id=report, data={"n": 1})))
assert ran.message == "success", ran
fired = body(call("run_event", operations.RunEventRequestBody(event=EVENT, user_id=user, data={"contact": "c-1"})))
assert fired.message, fired
runs = wait_finished(report, user, 1)
assert runs[0]["status"] == "failed" and runs[0]["inputs"] == {"n": 1}, runs
rerun = body(call("rerun_workfow", report, runs[0]["executionId"], user))
assert rerun.execution_uuid, rerun
wait_finished(report, user, 2)
wait_finished(sync, user, 1)
errors = call("get_workflow_errors", report, user).http_meta.response.json()["data"]
assert len(errors) == 2 and errors[0]["workflowId"] == report, errors
stats = body(call("get_workflow_analytics", report))
assert (stats.total_workflow_runs, stats.total_errors, stats.total_app_actions) == (2, 2, 0), stats
stats = body(call("get_workflow_analytics", sync))
assert (stats.total_workflow_runs, stats.total_app_actions) == (1, 1), stats

# Tidying up, as a customer would.
assert body(call("disable_all_workflows_for_a_user", user)).message == "Success"
assert body(call("delete_logs_for_a_user", user)).message
assert body(call("delete_a_credential", cred.credential_id, user)).success is True
call("delete_workflow", user, report)
batch_one = next(u["userId"] for u in listed if u["username"] == "batch-1")
assert body(call("delete_a_user", batch_one)).success is True
assert body(call("list_workflows", user)).data[0].workflow_id == sync

print(json.dumps({"user": user, "called": called}))
