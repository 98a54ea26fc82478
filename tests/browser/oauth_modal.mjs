// The modal with an OAuth integration: "Connect" opens the provider (npm oidc-provider) in a
// window of its own; after its redirect to ingot's callback the page installs with the new
// credential. Run by tests/it/pages.rs (INGOT_URL, INTEGRATION, TOKEN, NODE_PEERS,
// SCREENSHOTS). Prints one JSON line.
import assert from "node:assert/strict";
import http from "node:http";
import { createRequire } from "node:module";

const peers = createRequire(`${process.env.NODE_PEERS}/`);
const { chromium } = peers("playwright-core");
const { INGOT_URL, INTEGRATION, TOKEN, SCREENSHOTS } = process.env;

const host = http.createServer((_req, res) => {
  res.setHeader("content-type", "text/html");
  res.end(`<!doctype html><html><head><title>Customer app</title><script src="${INGOT_URL}/embedded.js"></script></head><body></body></html>`);
});
await new Promise((r) => host.listen(0, "127.0.0.1", r));
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox"] });
const context = await browser.newContext({ viewport: { width: 1000, height: 820 } });
const problems = [];
const watch = (p, name) => {
  p.on("console", (m) => m.type() === "error" && problems.push(`${name}: console: ${m.text()}`));
  p.on("pageerror", (e) => problems.push(`${name}: page error: ${e.message}`));
};
const page = await context.newPage();
watch(page, "host");
await page.goto(`http://127.0.0.1:${host.address().port}/`);
await page.evaluate(({ token, integrationId }) => {
  window.results = [];
  window.Alloy.setToken(token);
  window.Alloy.install({ integrationId, callback: (r) => window.results.push(r) });
}, { token: TOKEN, integrationId: INTEGRATION });
const frame = page.frameLocator("iframe");
await frame.locator("#oauth-connect").waitFor();
// Installing before connecting says what to do.
await frame.locator("#submit").click();
await frame.locator("#form-error").filter({ hasText: "Connect your contacts account first" }).waitFor();
await page.screenshot({ path: `${SCREENSHOTS}/install-oauth.png` });
const [popup] = await Promise.all([context.waitForEvent("page"), frame.locator("#oauth-connect").click()]);
watch(popup, "popup");
await popup.waitForURL(`${INGOT_URL}/oauth/callback?**`);
const connectedPage = await popup.locator("h1").textContent();
await frame.locator("#oauth-status").filter({ hasText: "Connected." }).waitFor({ timeout: 20000 });
await frame.locator("#submit").click();
await page.waitForFunction(() => window.results.length > 0);
const seen = { connectedPage, install: await page.evaluate(() => window.results) };
await browser.close();
host.close();
assert.deepEqual(problems, []);
console.log(JSON.stringify(seen));
