// The official frontend SDK, unchanged: npm alloy-frontend 2.1.1 as published, in a host page,
// with chromium resolving app.runalloy.com and embedded.runalloy.com to a local TLS front for
// ingot (a self-signed certificate made here). Its hosts are constants in its source, so this is
// how a customer's unchanged frontend runs against ingot offline, and the proof that the
// install page speaks the SDK's protocol exactly.
//
// Run by tests/it/pages.rs with INGOT_URL, INTEGRATION, TOKEN_NEW, NODE_PEERS, SCREENSHOTS.
// Needs port 443 on 127.0.0.1 (the tests run as root). Prints one JSON line.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

const peers = createRequire(`${process.env.NODE_PEERS}/`);
const { chromium } = peers("playwright-core");
const sdkSource = fs.readFileSync(peers.resolve("alloy-frontend"), "utf8");
const { INGOT_URL, INTEGRATION, TOKEN_NEW, SCREENSHOTS } = process.env;
const ingot = new URL(INGOT_URL);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ingot-front-"));
execFileSync("openssl", [
  "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=app.runalloy.com",
  "-addext", "subjectAltName=DNS:app.runalloy.com,DNS:embedded.runalloy.com",
  "-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem"),
], { stdio: "ignore" });

// The TLS front: every request, to either name, goes to ingot as it came.
const front = https.createServer({ key: fs.readFileSync(path.join(dir, "key.pem")), cert: fs.readFileSync(path.join(dir, "cert.pem")) }, (req, res) => {
  const upstream = http.request(
    { host: ingot.hostname, port: ingot.port, method: req.method, path: req.url, headers: { ...req.headers, host: ingot.host } },
    (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    },
  );
  upstream.on("error", (e) => {
    res.statusCode = 502;
    res.end(String(e));
  });
  req.pipe(upstream);
});
await new Promise((r, j) => front.once("error", j).listen(443, "127.0.0.1", r));

// The customer's page: the SDK's CommonJS file, as published, behind a two-line shim.
const host = http.createServer((req, res) => {
  if (req.url === "/alloy-frontend.js") {
    res.setHeader("content-type", "text/javascript");
    return res.end(sdkSource);
  }
  res.setHeader("content-type", "text/html");
  res.end(`<!doctype html><html><head><title>Customer app</title>
<script>var module = { exports: {} };</script><script src="/alloy-frontend.js"></script>
<script>window.Alloy = module.exports();</script></head><body><h1>Customer app</h1></body></html>`);
});
await new Promise((r) => host.listen(0, "127.0.0.1", r));

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--ignore-certificate-errors", "--host-resolver-rules=MAP app.runalloy.com 127.0.0.1, MAP embedded.runalloy.com 127.0.0.1"],
});
const problems = [];
const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1000, height: 820 } });
const page = await context.newPage();
page.on("console", (m) => m.type() === "error" && problems.push(`console: ${m.text()}`));
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
await page.goto(`http://127.0.0.1:${host.address().port}/`);
await page.evaluate(
  ({ token, integrationId }) => {
    window.results = [];
    window.Alloy.setToken(token);
    window.Alloy.install({ integrationId, callback: (r) => window.results.push(r) });
  },
  { token: TOKEN_NEW, integrationId: INTEGRATION },
);
const src = await page.locator("iframe").getAttribute("src");
assert.ok(src.startsWith("https://app.runalloy.com/forge-install?integrationId="), src);
const frame = page.frameLocator("iframe");
await frame.locator("#f-apiKey").fill("typed-into-the-official-sdk");
await page.screenshot({ path: `${SCREENSHOTS}/official-sdk-install.png` });
await frame.locator("#submit").click();
await page.waitForFunction(() => window.results.length > 0);
const seen = { install: await page.evaluate(() => window.results) };
await page.waitForFunction(() => !document.querySelector("iframe"));
// Its REST calls, to embedded.runalloy.com, reach ingot too.
seen.workflows = (await page.evaluate(() => window.Alloy.getWorkflows())).data.map((w) => w.name).sort();
await browser.close();
front.close();
host.close();
fs.rmSync(dir, { recursive: true, force: true });
assert.deepEqual(problems, []);
console.log(JSON.stringify(seen));
