"""Every Embedded method of PyPI alloy-python 1.0.0 against an ingot server, with only each
client's `url` attribute changed (the SDK's own base URL is a module constant).

Run by tests/it/sdks.rs (INGOT_URL, INGOT_KEY, INGOT_INTEGRATION, INGOT_EVENT). Several of the
SDK's methods return a 422 body instead of raising, so every answer is checked for content.
Prints one JSON line of what was made and which methods were called.
"""

import json
import os
import time

from alloy_python import Embedded

URL = os.environ["INGOT_URL"] + "/2023-12"
INTEGRATION = os.environ["INGOT_INTEGRATION"]
EVENT = os.environ["INGOT_EVENT"]

alloy = Embedded(os.environ["INGOT_KEY"])
parts = [alloy.User, alloy.App, alloy.Integration, alloy.Tokens, alloy.Workflows, alloy.Events,
         alloy.Compliance, alloy.Logs, alloy.Credentials, alloy.Link, alloy.Analytics]
for part in parts:
    part.url = URL
called = []


def call(part, name, *args):
    called.append(f"{type(part).__name__}.{name}")
    return getattr(part, name)(*args)


def for_user(user_id):
    for part in parts:
        if hasattr(part, "set_user_id"):
            part.set_user_id(user_id)


made = call(alloy.User, "create_user", {"username": "py-sdk", "fullName": "Py Sdk"})
user = made["userId"]
for_user(user)
assert call(alloy.User, "get_user")["fullName"] == "Py Sdk"
assert call(alloy.User, "update_user", {"fullName": "Py Sdk 2"})["fullName"] == "Py Sdk 2"
batch = call(alloy.User, "create_batch_users", {"users": [{"username": "py-batch"}]})
assert [u["username"] for u in batch["createdUsers"]] == ["py-batch"], batch
assert "py-batch" in [u["username"] for u in call(alloy.User, "list_users")["data"]]
assert call(alloy.Tokens, "get")["token"].count(".") == 2

cred = call(alloy.Credentials, "create", {"type": "apiKey", "data": {"apiKey": "py-secret"}})
assert cred["success"] is True
assert [c["credentialId"] for c in call(alloy.Credentials, "list_user_credentials")["data"]] == [cred["credentialId"]]
assert [c["type"] for c in call(alloy.Credentials, "get_metadata")["data"]] == ["apiKey"]

contacts = next(i["integrationId"] for i in call(alloy.Integration, "list_integrations")["data"] if i["app"] == "contacts")
oauth = call(alloy.Credentials, "generate_oauth_link", "contacts", contacts)
assert oauth["oauthUrl"].startswith("https://id.example/authorize?"), oauth
assert "crm" in [a["app"] for a in call(alloy.App, "get_apps")["data"]]
listed = call(alloy.Integration, "list_integrations")["data"]
assert [i["installed"] for i in listed if i["integrationId"] == INTEGRATION] == [False], listed
assert INTEGRATION in [i["integrationId"] for i in call(alloy.Tokens, "list_integrations")["data"]]
one = call(alloy.Integration, "get_integration", INTEGRATION)["data"]
assert one["app"] == "crm" and one["installed"] is False, one
link = call(alloy.Link, "generate", INTEGRATION)
assert "/embedded-install?link=il_" in link["url"], link
assert [e["name"] for e in call(alloy.Events, "list")["data"]] == [EVENT]

# Install through the API (the SDK has no install call), then drive the workflows.
import urllib.request
req = urllib.request.Request(f"{URL}/users/{user}/integrations/{INTEGRATION}/install", data=b"{}", method="POST",
                             headers={"Authorization": f"Bearer {os.environ['INGOT_KEY']}"})
assert urllib.request.urlopen(req).status == 200
workflows = {w["name"]: w for w in call(alloy.Workflows, "list")["data"]}
sync, report = workflows["Sync"]["workflowId"], workflows["Report"]["workflowId"]
assert call(alloy.Workflows, "get", sync)["data"]["installedVersion"] == 1
assert call(alloy.Workflows, "deactivate", sync) == {"activated": False}
assert call(alloy.Workflows, "activate", sync) == {"activated": True}
assert [v["status"] for v in call(alloy.Workflows, "list_versions", sync)["data"]] == ["installed"]
assert call(alloy.Workflows, "upgrade", sync)["upgraded"] is False
fired = call(alloy.Events, "run", EVENT, {"contact": "c-2"})
assert len(fired["executionIds"]) == 1, fired

deadline = time.time() + 60
while True:
    runs = call(alloy.Logs, "get_workflow_logs", sync)["data"]
    if runs and runs[0]["finished"]:
        break
    assert time.time() < deadline, runs
    time.sleep(0.05)
assert runs[0]["status"] == "succeeded", runs
rerun = call(alloy.Logs, "rerun_workflow_execution", sync, runs[0]["executionId"])
assert rerun["executionUuid"], rerun
assert call(alloy.Logs, "get_workflow_errors", sync)["data"] == []
stats = call(alloy.Analytics, "get", sync)
assert set(stats) >= {"totalAppActions", "totalWorkflowRuns", "totalErrors"}, stats

assert call(alloy.Workflows, "deactivate_all") == {"message": "Success"}
assert "message" in call(alloy.Compliance, "delete_user_logs")
assert call(alloy.Workflows, "delete", report) == {"deleted": True}
assert call(alloy.Credentials, "delete", cred["credentialId"])["success"] is True
for_user("py-batch")
assert call(alloy.User, "delete_user") == {"success": True}

methods = [f"{type(p).__name__}.{n}" for p in parts for n in dir(p)
           if callable(getattr(p, n)) and not n.startswith("_") and n not in ("set_user_id", "set_username")]
print(json.dumps({"user": user, "called": called, "methods": methods}))
