// The console in a real browser (chromium, headless, playwright-core), played as an operator.
//
// Run by tests/it/pages.rs with INGOT_URL, INGOT_KEY, INTEGRATION, RUNNER (a user with the
// failing workflow WORKFLOW installed), PEER_URL (a standardwebhooks-verifying receiver),
// EB_JSON (moto's EventBridge settings), NODE_PEERS and SCREENSHOTS. Prints one JSON line.
import assert from "node:assert/strict";
import http from "node:http";
import { createRequire } from "node:module";

const peers = createRequire(`${process.env.NODE_PEERS}/`);
const { chromium } = peers("playwright-core");
const { INGOT_URL, INGOT_KEY, INTEGRATION, RUNNER, WORKFLOW, PEER_URL, EB_JSON, SCREENSHOTS } = process.env;
const eb = JSON.parse(EB_JSON);
const seen = {};
const problems = [];

const api = async (method, path, body, key = INGOT_KEY) => {
  const r = await fetch(`${INGOT_URL}${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, json: await r.json().catch(() => ({})) };
};
const until = async (what, check, ms = 30000) => {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    assert.ok(Date.now() < deadline, `never saw ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox"] });
const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
const page = await context.newPage();
// A refusal the operator is meant to see (a wrong key, an invalid definition) is a console
// error too; each step that provokes one names its status here, and only for that step.
let expected = null;
page.on("console", (m) => m.type() === "error" && !(expected && m.text().includes(`status of ${expected}`)) && problems.push(`console: ${m.text()}`));
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
page.on("dialog", (d) => d.accept());
const shot = (name) => page.screenshot({ path: `${SCREENSHOTS}/console-${name}.png`, fullPage: true });
// Goes to a console page, drawn afresh (through the overview when it is the page showing).
const go = async (hash, ready) => {
  if ((await page.evaluate(() => location.hash)) === hash) {
    await page.evaluate(() => (location.hash = "#/overview"));
    await page.locator("#n-users").waitFor();
  }
  await page.evaluate((h) => (location.hash = h), hash);
  await page.locator(ready).first().waitFor();
};

// Sign in: a wrong key is refused, the right one gives a session cookie the script cannot read.
await page.goto(`${INGOT_URL}/console`);
await page.locator("#api-key").waitFor();
await shot("sign-in");
expected = 401;
await page.locator("#api-key").fill("ingot_dev_nope_nope");
await page.locator("#sign-in").click();
await page.locator("p.error").filter({ hasText: "not accepted" }).waitFor();
expected = null;
await page.locator("#api-key").fill(INGOT_KEY);
await page.locator("#api-key").press("Enter");
await page.locator("#n-users").waitFor();
const cookies = await context.cookies();
seen.cookie = cookies.map(({ name, httpOnly, sameSite, path }) => ({ name, httpOnly, sameSite, path }));
seen.keyInStorage = await page.evaluate((k) => JSON.stringify({ ...localStorage, ...sessionStorage }).includes(k) || document.cookie.includes(k), INGOT_KEY);
await shot("overview");

// Users: create one, open the modal as that user.
await go("#/users", "#user-search");
await page.locator("#new-username").fill("made-in-console");
await page.getByRole("button", { name: "Create user" }).click();
await page.locator("h1").filter({ hasText: "made-in-console" }).waitFor();
seen.created = (await api("GET", "/users/made-in-console")).status;
await page.getByRole("button", { name: "Open", exact: true }).click();
await page.frameLocator("iframe.modal-frame").locator("h1").filter({ hasText: "Demo" }).waitFor();
await shot("user");
await go("#/users", "#user-search");
await page.locator("#user-search").fill("made-");
await page.locator("td").filter({ hasText: "made-in-console" }).waitFor();

// The webhook, to a verifying receiver that does not know the secret yet: the delivery fails.
await go("#/settings", "#webhook-url");
await page.locator("#webhook-url").fill(`${PEER_URL}/hook`);
await page.locator("#webhook-enabled").check();
await page.getByRole("button", { name: "Save webhook" }).click();
const secret = await page.locator("#webhook-secret").textContent();
seen.secretShownOnce = secret.startsWith("whsec_");
assert.equal((await api("POST", "/run/workflow", { userId: RUNNER, workflowId: WORKFLOW, data: {} })).status, 200);
const failed = await until("a failed delivery", async () => (await api("GET", "/settings/logging/deliveries?status=failed")).json.data[0]);
// The receiver learns the secret; the operator retries from the console.
await fetch(`${PEER_URL}/control`, { method: "POST", body: JSON.stringify({ secrets: [secret] }) });
await go("#/settings", "#deliveries");
await page.locator(`#deliveries tr[data-status=failed] button`).first().click();
seen.retried = await until("the retried delivery", async () => {
  const d = (await api("GET", "/settings/logging/deliveries?status=delivered")).json.data;
  return d.find((x) => x.deliveryId === failed.deliveryId) ? true : null;
});
seen.peerAccepted = await until("the peer's acceptance", async () => {
  const st = await (await fetch(`${PEER_URL}/state`)).json();
  return st.accepted.length ? st.accepted.map((a) => a.id) : null;
});

// EventBridge, to moto: save, switch off and on, send a test event.
await go("#/settings", "#eb-key");
await page.locator("#eb-key").fill(eb.accessKeyId);
await page.locator("#eb-secret").fill(eb.secretAccessKey);
await page.locator("#eb-region").fill(eb.region);
await page.locator("#eb-bus").fill(eb.eventBusName);
await page.locator("#eb-endpoint").fill(eb.endpoint);
await page.locator("#eb-enabled").check();
await page.getByRole("button", { name: "Save EventBridge" }).click();
await page.getByRole("button", { name: "Switch off" }).waitFor();
seen.ebSecretOnPage = (await page.content()).includes(eb.secretAccessKey);
await page.getByRole("button", { name: "Switch off" }).click();
await page.getByRole("button", { name: "Switch on" }).waitFor();
seen.ebOff = (await api("GET", "/settings/logging/eventbridge")).json.enabled;
await page.getByRole("button", { name: "Switch on" }).click();
await page.getByRole("button", { name: "Switch off" }).waitFor();
seen.ebOn = (await api("GET", "/settings/logging/eventbridge")).json.enabled;
await page.locator(".card").filter({ hasText: "AWS EventBridge" }).getByRole("button", { name: "Send a test event" }).click();
seen.ebTest = await until("the test event delivered", async () => {
  const d = (await api("GET", "/settings/logging/deliveries?target=eventbridge&status=delivered")).json.data;
  return d.length ? d.length : null;
});
await go("#/settings", "#eb-state");
seen.ebState = await page.locator("#eb-state").textContent();
await shot("settings");

// A page still loading when the operator moves on never draws over the page they went to:
// the settings' re-render is held at its last request until the overview has drawn.
await go("#/settings", "#deliveries");
const deliveriesApi = "**/console/api/settings/logging/deliveries?*";
let release;
const held = new Promise((r) => (release = r));
await page.route(deliveriesApi, async (r) => (await held, r.continue()));
await page.getByRole("button", { name: "Refresh" }).click();
await page.evaluate(() => (location.hash = "#/overview"));
await page.locator("#n-users").waitFor();
const answered = page.waitForResponse((r) => r.url().includes("/console/api/settings/logging/deliveries"));
release();
await answered;
await page.waitForTimeout(500);
seen.staleDraw = { deliveries: await page.locator("#deliveries").count(), overview: await page.locator("#n-users").count() };
await page.unroute(deliveriesApi);

// Error logs: the failed run, and in the chart.
await go("#/logs", "#f-workflow");
await page.locator("td").filter({ hasText: "Upstream said no" }).first().waitFor();
seen.chartErrors = await page.evaluate(() => [...document.querySelectorAll("rect.errors")].reduce((n, r) => n + Number(r.dataset.count), 0));
await page.locator("#f-block").fill("http");
await page.getByRole("button", { name: "Filter" }).click();
await page.locator("p.muted").filter({ hasText: "0 errors" }).waitFor();
await shot("logs");

// Integrations: an invalid edit is refused naming its path.
await go(`#/integrations/${INTEGRATION}`, "#definition");
const def = JSON.parse(await page.locator("#definition").inputValue());
def.workflows[0].blocks[0].type = "teleport";
await page.locator("#definition").fill(JSON.stringify(def, null, 2));
expected = 422;
await page.getByRole("button", { name: "Save" }).click();
seen.defError = await page.locator("#definition-error").filter({ hasText: "teleport" }).textContent();
expected = null;
await shot("integration");

// API keys: make one (shown once), revoke it, and it stops working.
await go("#/keys", "#key-name");
await page.locator("#key-name").fill("from-the-console");
await page.getByRole("button", { name: "Create key" }).click();
const made = await page.locator("#new-key").textContent();
seen.newKeyWorks = (await api("GET", "/users", undefined, made)).status;
await page.locator("#keys tr").filter({ hasText: "from-the-console" }).getByRole("button", { name: "Revoke" }).click();
await page.locator("#keys tr").filter({ hasText: "from-the-console" }).filter({ hasText: "revoked" }).waitFor();
seen.revokedKey = (await api("GET", "/users", undefined, made)).status;
await shot("keys");

// A forged cross-site POST: the browser sends the cookie (same site, other port), no token.
const evil = http.createServer((_req, res) => {
  res.setHeader("content-type", "text/html");
  res.end(`<!doctype html><html><body><script>
    fetch("${INGOT_URL}/console/api/users", { method: "POST", mode: "no-cors", credentials: "include",
      headers: { "Content-Type": "text/plain" }, body: JSON.stringify({ username: "forged" }) })
      .finally(() => { document.title = "sent"; });
  </script></body></html>`);
});
await new Promise((r) => evil.listen(0, "127.0.0.1", r));
const other = await context.newPage();
await other.goto(`http://127.0.0.1:${evil.address().port}/`);
await other.waitForFunction(() => document.title === "sent");
seen.forged = (await api("GET", "/users/forged")).status;
evil.close();
await other.close();

// Sign out: the cookie no longer works.
await page.locator("#sign-out").click();
await page.locator("#api-key").waitFor();
seen.afterSignOut = await page.evaluate(async () => (await (await fetch("/console/session")).json()).signedIn);

await browser.close();
assert.deepEqual(problems, [], "no console errors, page errors or failed requests");
console.log(JSON.stringify(seen));
