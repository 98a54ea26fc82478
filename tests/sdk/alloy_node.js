// Every Embedded method of npm alloy-node 2.2.1 against an ingot server. The SDK's hosts are
// constants in its source, so the only change is an interceptor on the axios instance the SDK
// itself loads, pointing https://embedded.runalloy.com at ingot; the version segments the SDK
// writes (2023-01, 2023-06) are kept.
//
// Run by tests/it/sdks.rs (INGOT_URL, INGOT_KEY, INGOT_INTEGRATION, INGOT_EVENT) with NODE_PATH
// at the installed SDK. Prints one JSON line: what was made, what was called, and every
// method of the SDK outside the Unified API.
"use strict";
const assert = require("node:assert/strict");
const path = require("node:path");

const Alloy = require("alloy-node");
const sdkAxios = require(require.resolve("axios", { paths: [path.dirname(require.resolve("alloy-node"))] }));
const { INGOT_URL, INGOT_KEY, INGOT_INTEGRATION, INGOT_EVENT } = process.env;
sdkAxios.interceptors.request.use((config) => {
  config.url = config.url.replace("https://embedded.runalloy.com", INGOT_URL);
  return config;
});

const called = [];
const alloy = new Alloy(INGOT_KEY);
const call = async (name, ...args) => {
  called.push(name);
  return alloy[name](...args);
};

async function main() {
  const made = await call("createUser", { username: "node-sdk", fullName: "Node Sdk" });
  assert.equal(made.username, "node-sdk");
  await call("identify", "node-sdk");
  assert.equal(alloy.userId, made.userId);
  assert.equal((await call("getUser", "node-sdk")).fullName, "Node Sdk");
  assert.equal((await call("updateUser", { fullName: "Node Sdk 2" })).fullName, "Node Sdk 2");
  assert.ok((await call("getUsers")).data.some((u) => u.userId === made.userId));
  assert.equal((await call("getUserToken")).token.split(".").length, 3);

  const oauth = await call("getUserOauthRedirect", { credentialName: "contacts" });
  assert.ok(oauth.oauthUrl.startsWith("https://id.example/authorize?"), JSON.stringify(oauth));
  const type = await call("getCredential", "crm");
  assert.equal(type.data.name, "apiKey");
  assert.ok((await call("getApps")).data.some((a) => a.app === "crm"));
  const integrations = (await call("getIntegrations")).data;
  assert.equal(integrations.find((i) => i.integrationId === INGOT_INTEGRATION).installed, false);
  assert.equal((await call("getIntegration", INGOT_INTEGRATION)).data.app, "crm");
  assert.match((await call("generateLink", INGOT_INTEGRATION)).url, /\/embedded-install\?link=il_/);

  // The SDK has no credential or install call: both through the API.
  const api = (method, route, body) =>
    sdkAxios.request({ method, url: `${INGOT_URL}${route}`, headers: { Authorization: `Bearer ${INGOT_KEY}` }, data: body });
  await api("POST", `/users/${made.userId}/credentials`, { type: "apiKey", data: { apiKey: "node-secret" } });
  await api("POST", `/users/${made.userId}/integrations/${INGOT_INTEGRATION}/install`, {});

  const workflows = (await call("getWorkflows")).data;
  const sync = workflows.find((w) => w.name === "Sync").workflowId;
  const report = workflows.find((w) => w.name === "Report").workflowId;
  assert.equal((await call("getWorkflow", sync)).data.installedVersion, 1);
  assert.equal((await call("getVersions", sync)).data[0].status, "installed");
  assert.deepEqual(await call("deactivate", { workflowId: sync }), { activated: false });
  assert.deepEqual(await call("reactivate", { workflowName: "Sync" }), { activated: true });
  assert.equal((await call("getWorkflowDetails", sync)).data[0].userId, made.userId);

  const fired = await call("event", INGOT_EVENT, { contact: "c-3" });
  assert.equal(fired.executionIds.length, 1);
  const ran = await call("run", report, { n: 2 });
  assert.equal(ran.message, "success");
  const byName = await call("run", "Report", { n: 3 });
  assert.equal(byName.message, "success");
  let logs;
  for (const deadline = Date.now() + 60000; ; ) {
    logs = (await call("getLogs", report)).data;
    if (logs.length === 2 && logs.every((e) => e.finished)) break;
    assert.ok(Date.now() < deadline, JSON.stringify(logs));
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.deepEqual(logs.map((e) => e.inputs.n).sort(), [2, 3]);
  const stats = await call("getAnalytics", report);
  assert.equal(stats.totalWorkflowRuns, 2);
  assert.equal(stats.totalErrors, 2);

  assert.equal((await call("disableAllWorkflows")).message, "Success");
  assert.ok((await call("deleteLogs")).message);
  assert.deepEqual(await call("deleteWorkflow", report), { deleted: true });
  called.push("clear");
  alloy.clear();
  assert.equal(alloy.userId, null);
  await call("identify", "node-sdk");
  assert.deepEqual(await call("deleteUser"), { success: true });

  const methods = Object.getOwnPropertyNames(Alloy.prototype).filter(
    (m) => m !== "constructor" && !String(Alloy.prototype[m]).includes("/one/"),
  );
  console.log(JSON.stringify({ user: made.userId, called, methods }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
