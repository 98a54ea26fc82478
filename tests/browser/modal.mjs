// The embedded modal in a real browser: Debian's chromium, headless, driven by playwright-core.
// A host page on another origin loads ingot's /embedded.js and opens the modal as the
// customer's app would; the script plays the user.
//
// Run by tests/it/pages.rs with INGOT_URL, INTEGRATION, TOKEN_NEW (a user without a
// credential), TOKEN_CANCEL, TOKEN_HAS (a user with one), TOKEN_DEAD (a deleted user's),
// NODE_PEERS and SCREENSHOTS. Prints one JSON line with what each scenario saw.
import assert from "node:assert/strict";
import http from "node:http";
import { createRequire } from "node:module";

const peers = createRequire(`${process.env.NODE_PEERS}/`);
const { chromium } = peers("playwright-core");
const { INGOT_URL, INTEGRATION, TOKEN_NEW, TOKEN_CANCEL, TOKEN_HAS, TOKEN_DEAD, LINK_URL, TOKEN_UPDATE, SCREENSHOTS } = process.env;

// The customer's page, on an origin of its own.
const host = http.createServer((req, res) => {
  res.setHeader("content-type", "text/html");
  res.end(`<!doctype html><html><head><title>Customer app</title>
<script src="${INGOT_URL}/embedded.js"></script></head>
<body><h1>Customer app</h1><p>Integrations live here.</p></body></html>`);
});
await new Promise((r) => host.listen(0, "127.0.0.1", r));
const hostUrl = `http://127.0.0.1:${host.address().port}/`;

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox"] });
const seen = {};
const problems = [];

// A fresh page with every console error, page error and failed request recorded (from the
// host page and the modal's frame alike); `allowed` lists messages a scenario expects.
async function open(name, allowed = []) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 820 } });
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() === "error" && !allowed.some((a) => m.text().includes(a))) problems.push(`${name}: console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`${name}: page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`${name}: request failed: ${r.url()} ${r.failure()?.errorText}`));
  await page.goto(hostUrl);
  return { page, context };
}

// Opens the modal with `params` (the callback records what it was given).
async function install(page, token, params) {
  await page.evaluate(
    ({ token, params }) => {
      window.results = [];
      window.Alloy.setToken(token);
      window.Alloy.install({ ...params, callback: (r) => window.results.push(r) });
    },
    { token, params },
  );
  return page.frameLocator("iframe");
}

const results = (page) => page.evaluate(() => window.results);
const waitResult = (page) => page.waitForFunction(() => window.results.length > 0).then(() => results(page));
const shot = (page, name) => page.screenshot({ path: `${SCREENSHOTS}/${name}.png` });

// 1. A user without a credential: the form asks for it, validates, installs.
{
  const { page, context } = await open("install");
  const frame = await install(page, TOKEN_NEW, { integrationId: INTEGRATION });
  await frame.locator("h1").filter({ hasText: "Helpdesk" }).waitFor();
  const src = await page.locator("iframe").getAttribute("src");
  assert.ok(src.startsWith(`${INGOT_URL}/forge-install?integrationId=${INTEGRATION}&token=`), src);
  assert.ok(src.endsWith("&forgeMode=engaged"), src);
  const mask = await page.evaluate(() => {
    const body = document.querySelector("iframe").parentElement;
    return { width: body.style.width, height: body.style.height, mask: document.body.lastElementChild.firstElementChild.style.backgroundColor };
  });
  assert.deepEqual(mask, { width: "400px", height: "659px", mask: "rgba(0, 0, 0, 0.45)" });
  // The token is gone from the frame's address at once.
  const frameUrl = page.frames().find((f) => f.url().includes("/forge-install")).url();
  assert.ok(!frameUrl.includes("token="), frameUrl);
  await shot(page, "install-form");
  // Keyboard only: the first field has focus; submitting empty says what is missing.
  await frame.locator("#submit").press("Enter");
  await frame.locator("#form-error").filter({ hasText: "API key is required" }).waitFor();
  await frame.locator("#f-apiKey").fill("desk-key-from-the-browser");
  await frame.locator("#f-apiKey").press("Enter");
  seen.install = await waitResult(page);
  await page.waitForFunction(() => !document.querySelector("iframe"));
  await context.close();
}

// 2. Cancel: the callback says it did not succeed.
{
  const { page, context } = await open("cancel");
  const frame = await install(page, TOKEN_CANCEL, { integrationId: INTEGRATION });
  await frame.locator("#cancel").click();
  seen.cancel = await waitResult(page);
  assert.equal(await page.locator("iframe").count(), 0);
  await context.close();
}

// 3. A dead token: a clear message and a way out.
{
  const { page, context } = await open("dead", ["401"]);
  const frame = await install(page, TOKEN_DEAD, { integrationId: INTEGRATION });
  await frame.locator("#problem-text").filter({ hasText: "expired" }).waitFor();
  await shot(page, "install-expired");
  await frame.locator("#problem-close").click();
  seen.dead = await waitResult(page);
  await context.close();
}

// 4. Hidden, and nothing to ask (the user has a credential): never shown, installed.
{
  const { page, context } = await open("hidden");
  await install(page, TOKEN_HAS, { integrationId: INTEGRATION, hide: true });
  seen.hidden = await waitResult(page);
  seen.hiddenShown = await page.evaluate(() => [...document.body.children].some((c) => c.tagName === "DIV" && c.style.display !== "none"));
  await context.close();
}

// 5. Hidden, but the user must be asked: the page asks to be shown.
{
  const { page, context } = await open("hidden-asks");
  const frame = await install(page, TOKEN_CANCEL, { integrationId: INTEGRATION, hide: true });
  await frame.locator("#f-apiKey").waitFor();
  await page.waitForFunction(() => [...document.body.children].some((c) => c.tagName === "DIV" && c.style.display === "block"));
  seen.shownWhenNeeded = true;
  await frame.locator("#cancel").click();
  await waitResult(page);
  await context.close();
}

// 6. The hosted page of an install link: a page of its own; after the install the link is spent.
{
  const { page, context } = await open("hosted", ["410"]);
  await page.goto(LINK_URL);
  await page.locator("#f-apiKey").fill("key-from-the-link");
  await shot(page, "hosted-install");
  await page.locator("#submit").click();
  await page.locator("#done-text").filter({ hasText: "installed" }).waitFor();
  assert.ok(!page.url().includes("link="), "the link left the address bar");
  await page.goto(LINK_URL);
  seen.spent = await page.locator("#problem-text").textContent();
  await context.close();
}

// 7. update: the page upgrades the user's workflows to the newest version.
{
  const { page, context } = await open("update");
  const frame = await install(page, TOKEN_UPDATE, { integrationId: INTEGRATION });
  await frame.locator("li").filter({ hasText: "update available" }).first().waitFor();
  await context.close();
  const again = await open("update-run");
  const f2 = await (async () => {
    await again.page.evaluate(({ token, integrationId }) => {
      window.results = [];
      window.Alloy.setToken(token);
      window.Alloy.update({ integrationId, callback: (r) => window.results.push(r) });
    }, { token: TOKEN_UPDATE, integrationId: INTEGRATION });
    return again.page.frameLocator("iframe");
  })();
  await f2.locator("#submit").filter({ hasText: "Update" }).waitFor();
  const src = await again.page.locator("iframe").getAttribute("src");
  assert.ok(src.includes("&alwaysShowAuthentication=true&operation=update"), src);
  await f2.locator("#f-apiKey").fill("updated-key");
  await f2.locator("#submit").click();
  seen.update = await waitResult(again.page);
  await again.context.close();
}

await browser.close();
host.close();
assert.deepEqual(problems, [], "no console errors, page errors or failed requests");
console.log(JSON.stringify(seen));
