// The operator's console: static pages over the JSON API, signed in with a cookie. The API key
// is sent once, to sign in, and never kept; the CSRF token lives in memory only.
"use strict";

(() => {
  const main = document.getElementById("main");
  let csrf = null;

  // h("tag.class", {attr: v, onclick: f}, ...children): a small element builder.
  function h(spec, attrs, ...kids) {
    const [tag, ...classes] = spec.split(".");
    const el = document.createElement(tag);
    if (classes.length) el.className = classes.join(" ");
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "text") el.textContent = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids.flat()) if (kid !== null && kid !== undefined) el.append(kid.nodeType ? kid : String(kid));
    return el;
  }
  const show = (...nodes) => main.replaceChildren(...nodes);
  // Pages draw after awaiting the API, so an older draw can finish after a newer one has
  // begun (a button's re-render still loading when the operator moves on). Each page takes a
  // turn when it starts; only the latest turn may draw, and signing in or out ends every turn.
  let turns = 0;
  const turn = () => {
    const mine = ++turns;
    return (...nodes) => mine === turns && show(...nodes);
  };
  const fmt = (t) => (t ? t.replace("T", " ").slice(0, 19) : "—");

  async function api(method, path, body) {
    const response = await fetch(`/console/api${path}`, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf || "" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (response.status === 401) {
      signIn("Your session has ended. Sign in again.");
      throw new Error("signed out");
    }
    if (!response.ok) throw new Error(data.message || `The server answered ${response.status}`);
    return data;
  }

  // A button that runs `action`, shows its error beside it, and re-renders with `then`.
  function act(label, action, cls = "") {
    const err = h("span.error");
    const b = h(`button${cls ? "." + cls : ""}`, {
      type: "button",
      onclick: async () => {
        err.textContent = "";
        b.disabled = true;
        try {
          await action();
        } catch (e) {
          if (e.message !== "signed out") err.textContent = e.message;
        } finally {
          b.disabled = false;
        }
      },
    }, label);
    return h("span", {}, b, " ", err);
  }

  // ---- Sign-in
  function signIn(message) {
    document.getElementById("nav").hidden = true;
    csrf = null;
    turns++;
    const key = h("input", { type: "password", id: "api-key", autocomplete: "off", placeholder: "ingot_dev_… or ingot_prod_…" });
    const err = h("p.error", { role: "alert", text: message || "" });
    const form = h("form.card.signin", {
      onsubmit: async (e) => {
        e.preventDefault();
        err.textContent = "";
        const response = await fetch("/console/session", {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ apiKey: key.value }),
        });
        key.value = "";
        if (!response.ok) {
          err.textContent = "That API key was not accepted.";
          return;
        }
        started(await response.json());
      },
    }, h("h1", { text: "Sign in" }), h("label", { for: "api-key", text: "API key" }), key, err, h("div.row", {}, h("button", { type: "submit", id: "sign-in" }, "Sign in")));
    show(form);
    key.focus();
  }

  function started(session) {
    csrf = session.csrf;
    const env = document.getElementById("env");
    env.textContent = session.env;
    env.className = `env ${session.env}`;
    document.getElementById("nav").hidden = false;
    if (!location.hash || location.hash === "#/") location.hash = "#/overview";
    else route();
  }

  document.getElementById("sign-out").addEventListener("click", async () => {
    await fetch("/console/session", { method: "DELETE", credentials: "same-origin", headers: { "X-CSRF-Token": csrf || "" } });
    signIn("Signed out.");
  });

  // ---- Charts: bars drawn as SVG, runs and errors per slot.
  function chart(series, label) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    const W = 1000, H = 170, pad = 18;
    svg.setAttribute("viewBox", `0 0 ${W} ${H + 14}`);
    svg.setAttribute("class", "chart");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label);
    const max = Math.max(1, ...series.map((s) => Math.max(s.runs, s.errors)));
    const slot = (W - pad) / series.length;
    series.forEach((s, i) => {
      for (const [k, off] of [["runs", 0], ["errors", 0.45]]) {
        const r = document.createElementNS(ns, "rect");
        const bh = (s[k] / max) * (H - pad);
        r.setAttribute("x", pad + i * slot + off * slot);
        r.setAttribute("y", H - bh);
        r.setAttribute("width", slot * 0.4);
        r.setAttribute("height", bh);
        r.setAttribute("class", k);
        r.setAttribute("data-count", s[k]);
        const t = document.createElementNS(ns, "title");
        t.textContent = `${fmt(s.at)}: ${s[k]} ${k}`;
        r.append(t);
        svg.append(r);
      }
    });
    const top = document.createElementNS(ns, "text");
    top.setAttribute("x", 0);
    top.setAttribute("y", 10);
    top.textContent = String(max);
    svg.append(top);
    return h("div", {}, svg, h("div.legend", {}, h("span.r", { text: "runs" }), h("span.e", { text: "errors" })));
  }

  async function statsCharts() {
    const s = await api("GET", "/stats");
    const holder = h("div");
    const draw = (which) => holder.replaceChildren(which === "daily" ? chart(s.daily, "Runs and errors per day, last 30 days") : chart(s.hourly, "Runs and errors per hour, last 24 hours"));
    draw("hourly");
    const pick = h("select", { "aria-label": "Chart period", onchange: (e) => draw(e.target.value) }, h("option", { value: "hourly" }, "Last 24 hours, per hour"), h("option", { value: "daily" }, "Last 30 days, per day"));
    return { s, node: h("div.card", {}, h("div.row", {}, pick), holder) };
  }

  // ---- Pages
  async function overview() {
    const draw = turn();
    const { s, node } = await statsCharts();
    const card = (label, n, id) => h("div.card", {}, h("b", { id, text: n }), label);
    draw(h("h1", { text: "Overview" }), h("div.cards", {}, card("users", s.users, "n-users"), card("active workflows", s.activeWorkflows, "n-active"), card("runs today", s.runsToday, "n-runs"), card("errors today", s.errorsToday, "n-errors")), node);
  }

  async function users(cursor) {
    const draw = turn();
    const q = h("input", { type: "search", id: "user-search", placeholder: "Username starts with…", "aria-label": "Search users" });
    const table = h("tbody");
    const more = h("div.row");
    const create = h("input", { type: "text", id: "new-username", placeholder: "new username", "aria-label": "New username" });
    const load = async (after) => {
      const r = await api("GET", `/users?limit=20${q.value ? `&q=${encodeURIComponent(q.value)}` : ""}${after ? `&cursor=${after}` : ""}`);
      if (!after) table.replaceChildren();
      for (const u of r.data) table.append(h("tr.click", { onclick: () => (location.hash = `#/users/${u.userId}`) }, h("td", { text: u.username }), h("td", { text: u.fullName || "" }), h("td", { text: u.disabled ? "disabled" : "" }), h("td", { text: fmt(u.createdAt) })));
      more.replaceChildren(r.nextCursor ? act("More", () => load(r.nextCursor), "secondary") : "");
    };
    q.addEventListener("input", () => load());
    draw(h("h1", { text: "Users" }), h("div.row", {}, q, create, act("Create user", async () => {
      const u = await api("POST", "/users", { username: create.value });
      location.hash = `#/users/${u.userId}`;
    })), h("table", {}, h("thead", {}, h("tr", {}, h("th", { text: "Username" }), h("th", { text: "Name" }), h("th", { text: "" }), h("th", { text: "Created" }))), table), more);
    await load(cursor);
  }

  async function user(id) {
    const draw = turn();
    const [u, creds, wfs] = await Promise.all([api("GET", `/users/${id}`), api("GET", `/users/${id}/credentials`), api("GET", `/workflows?userId=${id}`)]);
    const again = () => user(id);
    const wfRows = [];
    for (const w of wfs.data) {
      const runs = (await api("GET", `/workflows/${w.workflowId}/logs?limit=5`)).data;
      wfRows.push(h("div.card", {},
        h("div.row", {}, h("strong", { text: w.name }), h("span.muted", { text: `${w.active ? "active" : "inactive"} · v${w.installedVersion} of v${w.version}` }),
          act(w.active ? "Deactivate" : "Activate", async () => { await api("PUT", `/workflows/${w.active ? "deactivate" : "activate"}`, { userId: id, workflowId: w.workflowId }); again(); }, "secondary"),
          w.installedVersion < w.version ? act("Upgrade", async () => { await api("PUT", `/workflows/${w.workflowId}/upgrade?userId=${id}`); again(); }, "secondary") : ""),
        runs.length ? h("table", {}, h("tbody", {}, runs.map((e) => h("tr", {}, h("td", { text: fmt(e.createdAt) }), h("td", { text: e.status }), h("td", {}, e.results.map((b) => h("div", { text: `${b.name}: ${b.status}${b.error ? " — " + b.error : ""}` }))))))) : h("p.muted", { text: "No runs yet." })));
    }
    const errors = (await api("GET", `/logs?associatedUserId=${id}&limit=10`)).notifications;
    const frame = h("div");
    const integrations = (await api("GET", "/integrations")).data;
    const pick = h("select", { "aria-label": "Integration to open" }, integrations.map((i) => h("option", { value: i.integrationId }, i.name)));
    draw(
      h("h1", { text: u.username }),
      h("p.muted", { text: `${u.fullName || ""} · created ${fmt(u.createdAt)}${u.disabled ? " · disabled" : ""}` }),
      h("div.row", {},
        act(u.disabled ? "Enable" : "Disable", async () => { await api("PATCH", `/users/${id}`, { disabled: !u.disabled }); again(); }, "secondary"),
        act("Delete user", async () => {
          const what = `Delete ${u.username} with ${creds.data.length} credentials and ${wfs.data.length} workflows (and their runs)? Their error logs stay until erased.`;
          if (!window.confirm(what)) return;
          await api("DELETE", `/users/${id}`);
          location.hash = "#/users";
        }, "danger")),
      h("h2", { text: "Open the modal as this user" }),
      h("div.row", {}, pick, act("Open", async () => {
        const t = await api("GET", `/users/${id}/token?ttl=600`);
        frame.replaceChildren(h("iframe.modal-frame", { title: "Install as this user", src: `/forge-install?integrationId=${pick.value}&token=${t.token}&forgeMode=engaged` }));
      }, "secondary")),
      frame,
      h("h2", { text: "Credentials" }),
      creds.data.length ? h("table", {}, h("tbody", {}, creds.data.map((c) => h("tr", {}, h("td", { text: c.type }), h("td", { text: c.name || "" }), h("td", { text: `created ${fmt(c.createdAt)}` }), h("td", { text: `updated ${fmt(c.updatedAt)}` }))))) : h("p.muted", { text: "None." }),
      h("h2", { text: "Workflows and recent runs" }),
      wfRows.length ? wfRows : h("p.muted", { text: "None installed." }),
      h("h2", { text: "Errors" }),
      errors.length ? errorTable(errors) : h("p.muted", { text: "None." }),
    );
  }

  function errorTable(rows) {
    const detail = h("pre", { hidden: true, id: "error-detail" });
    return h("div", {}, h("table", {}, h("thead", {}, h("tr", {}, ["Time", "Workflow", "User", "Block", "Error"].map((t) => h("th", { text: t })))),
      h("tbody", {}, rows.map((e) => h("tr.click", { onclick: () => { detail.hidden = false; detail.textContent = JSON.stringify(e, null, 2); } },
        h("td", { text: fmt(e.createdAt) }), h("td", { text: e.workflowId }), h("td", { text: e.userId }), h("td", { text: `${e.blockName} (${e.blockType})` }), h("td", { text: e.error }))))), detail);
  }

  async function integrationList() {
    const draw = turn();
    const r = await api("GET", "/integrations");
    const def = h("textarea", { id: "definition", "aria-label": "New integration definition", spellcheck: "false" });
    def.value = JSON.stringify({ name: "", app: "", credentialType: "apiKey", workflows: [{ name: "", blocks: [{ type: "http", name: "", url: "https://" }] }] }, null, 2);
    draw(h("h1", { text: "Integrations" }),
      h("table", {}, h("thead", {}, h("tr", {}, ["Name", "App", "Version", "Workflows", "Updated"].map((t) => h("th", { text: t })))),
        h("tbody", {}, r.data.map((i) => h("tr.click", { onclick: () => (location.hash = `#/integrations/${i.integrationId}`) }, h("td", { text: i.name }), h("td", { text: i.app }), h("td", { text: i.version }), h("td", { text: i.workflows.length }), h("td", { text: fmt(i.updatedAt) }))))),
      h("h2", { text: "New integration" }), def, saveDefinition(def));
  }

  function saveDefinition(def) {
    const result = h("p.error", { id: "definition-error", role: "alert" });
    const ok = h("p.ok");
    return h("div", {}, h("div.row", {}, act("Save", async () => {
      result.textContent = "";
      ok.textContent = "";
      let body;
      try {
        body = JSON.parse(def.value);
      } catch (e) {
        result.textContent = `Not JSON: ${e.message}`;
        return;
      }
      try {
        const saved = await api("POST", "/integrations", body);
        ok.textContent = `Saved as version ${saved.version}.`;
        location.hash = `#/integrations/${saved.integrationId}`;
      } catch (e) {
        // The server names the field at fault by its path (workflows[0].blocks[1].url, …).
        result.textContent = e.message;
      }
    })), result, ok);
  }

  async function integration(id) {
    const draw = turn();
    const i = (await api("GET", `/integrations/${id}`)).data;
    const versions = (await api("GET", `/integrations/${id}/versions`)).data;
    const def = h("textarea", { id: "definition", "aria-label": "Integration definition", spellcheck: "false" });
    const editable = { name: i.name, app: i.app, icon: i.icon || undefined, credentialType: i.credentialType || undefined, workflows: i.workflows.map((w) => ({ workflowId: w.workflowId, name: w.name, trigger: w.trigger, blocks: w.blocks.map(({ icon, ...b }) => b) })) };
    if (i.credentialTypes && i.credentialTypes.length) editable.credentialTypes = i.credentialTypes;
    if (i.oauth) editable.oauth = i.oauth;
    def.value = JSON.stringify(editable, null, 2);
    draw(h("h1", { text: i.name }), h("p.muted", { text: `${i.app} · version ${i.version}` }),
      h("h2", { text: "Definition" }), def, saveDefinition(def),
      h("h2", { text: "Versions" }),
      h("table", {}, h("tbody", {}, versions.map((v) => h("tr", {}, h("td", { text: `v${v.version}` }), h("td", { text: fmt(v.createdAt) }), h("td", { text: v.workflows.join(", ") }))))));
  }

  async function logs() {
    const draw = turn();
    const f = { workflowId: h("input", { type: "text", id: "f-workflow", placeholder: "workflow id", "aria-label": "Workflow" }), userId: h("input", { type: "text", id: "f-user", placeholder: "user id or username", "aria-label": "User" }), blockType: h("input", { type: "text", id: "f-block", placeholder: "block type", "aria-label": "Block type" }) };
    const from = h("input", { type: "text", id: "f-from", placeholder: "from (YYYY-MM-DD)", "aria-label": "From" });
    const to = h("input", { type: "text", id: "f-to", placeholder: "to (YYYY-MM-DD)", "aria-label": "To" });
    const out = h("div");
    const { node } = await statsCharts();
    const load = async () => {
      const filters = {};
      for (const [k, el] of Object.entries(f)) if (el.value.trim()) filters[k] = el.value.trim();
      if (from.value) filters.from = Date.parse(from.value);
      if (to.value) filters.to = Date.parse(to.value) + 86400000;
      const r = await api("GET", `/logs?limit=50&filters=${encodeURIComponent(JSON.stringify(filters))}`);
      out.replaceChildren(h("p.muted", { text: `${r.pagination.totalItems} errors` }), errorTable(r.notifications));
    };
    draw(h("h1", { text: "Error logs" }), node, h("div.row", {}, Object.values(f), from, to, act("Filter", load)), out);
    await load();
  }

  async function settings() {
    const draw = turn();
    const wh = await api("GET", "/settings/logging/webhook");
    const eb = await api("GET", "/settings/logging/eventbridge");
    const again = () => settings();
    const secretOut = h("div");
    const showSecret = (r) => r.secret && secretOut.replaceChildren(h("p", {}, "The signing secret, shown this once: ", h("span.secret", { id: "webhook-secret", text: r.secret })));
    const url = h("input", { type: "url", id: "webhook-url", value: wh.url || "", size: 60, "aria-label": "Webhook URL" });
    const whOn = h("input", { type: "checkbox", id: "webhook-enabled", checked: wh.enabled });
    const f = (id, label, value, type = "text") => [h("label", { for: id, text: label }), h("input", { type, id, value: value || "", size: 40, autocomplete: "off" })];
    const ebOn = h("input", { type: "checkbox", id: "eb-enabled", checked: eb.enabled });
    const deliveries = (await api("GET", "/settings/logging/deliveries?limit=30")).data;
    draw(
      h("h1", { text: "Settings › Logging" }),
      h("div.card", {}, h("h2", { text: "Webhook" }), h("label", { for: "webhook-url", text: "URL" }), url,
        h("div.row", {}, whOn, h("label", { for: "webhook-enabled", text: "On" })),
        h("p.muted", { text: wh.secretHint ? `Signing secret ${wh.secretHint}` : "No secret yet: saving makes one." }),
        wh.failing ? h("p.error", { text: `Failing: ${wh.failing}` }) : "",
        h("div.row", {},
          act("Save webhook", async () => { const r = await api("PUT", "/settings/logging/webhook", { url: url.value, enabled: whOn.checked }); showSecret(r); if (!r.secret) again(); }),
          wh.secretHint ? act("Rotate secret", async () => showSecret(await api("POST", "/settings/logging/webhook/rotate-secret")), "secondary") : "",
          wh.enabled ? act("Send a test event", async () => { await api("POST", "/settings/logging/webhook/test"); again(); }, "secondary") : ""),
        secretOut),
      h("div.card", {}, h("h2", { text: "AWS EventBridge" }),
        f("eb-key", "Access key id", eb.accessKeyId),
        h("label", { for: "eb-secret", text: "Secret access key" }), h("input", { type: "password", id: "eb-secret", placeholder: eb.secretAccessKey || "", size: 40, autocomplete: "off" }),
        f("eb-region", "Region", eb.region), f("eb-bus", "Event bus name", eb.eventBusName), f("eb-endpoint", "Endpoint (optional)", eb.endpoint),
        h("div.row", {}, ebOn, h("label", { for: "eb-enabled", text: "On" })),
        h("p", { id: "eb-state", class: eb.failing ? "error" : "ok", text: eb.accessKeyId ? (eb.failing ? `Failing: ${eb.failing}` : "OK") : "Not set up." }),
        h("div.row", {},
          act("Save EventBridge", async () => {
            const v = (id) => document.getElementById(id).value.trim();
            const body = { accessKeyId: v("eb-key"), region: v("eb-region"), eventBusName: v("eb-bus") || undefined, endpoint: v("eb-endpoint") || null, enabled: ebOn.checked };
            if (v("eb-secret")) body.secretAccessKey = v("eb-secret");
            await api("PUT", "/settings/logging/eventbridge", body);
            again();
          }),
          eb.accessKeyId ? act(eb.enabled ? "Switch off" : "Switch on", async () => { await api("PUT", "/settings/logging/eventbridge", { accessKeyId: eb.accessKeyId, region: eb.region, eventBusName: eb.eventBusName, endpoint: eb.endpoint, enabled: !eb.enabled }); again(); }, "secondary") : "",
          eb.enabled ? act("Send a test event", async () => { await api("POST", "/settings/logging/eventbridge/test"); again(); }, "secondary") : "")),
      h("div.card", {}, h("h2", { text: "Deliveries" }), act("Refresh", again, "secondary"),
        h("table", { id: "deliveries" }, h("thead", {}, h("tr", {}, ["Created", "Target", "Status", "Attempts", "Last error", ""].map((t) => h("th", { text: t })))),
          h("tbody", {}, deliveries.map((d) => h("tr", { "data-status": d.status }, h("td", { text: fmt(d.createdAt) }), h("td", { text: d.target }), h("td", { text: d.status }),
            h("td", {}, d.attemptLog.map((a) => h("div", { text: `${fmt(a.attemptedAt)} ${a.statusCode ?? ""} ${a.error ?? ""}` }))), h("td", { text: d.lastError || "" }),
            h("td", {}, d.status === "failed" ? act("Retry", async () => { await api("POST", `/settings/logging/deliveries/${d.deliveryId}/retry`); again(); }, "secondary") : "")))))),
    );
  }

  async function keys() {
    const draw = turn();
    const r = await api("GET", "/keys");
    const name = h("input", { type: "text", id: "key-name", placeholder: "name", "aria-label": "Key name" });
    const made = h("div");
    draw(h("h1", { text: "API keys" }),
      h("div.row", {}, name, act("Create key", async () => {
        const k = await api("POST", "/keys", { name: name.value || "console" });
        await keys();
        main.append(h("p", {}, "The new key, shown this once: ", h("span.secret", { id: "new-key", text: k.key })));
      })), made,
      h("table", { id: "keys" }, h("thead", {}, h("tr", {}, ["Name", "Id", "Created", "Last used", ""].map((t) => h("th", { text: t })))),
        h("tbody", {}, r.data.map((k) => h("tr", { "data-key": k.id }, h("td", { text: k.name }), h("td", { text: k.id }), h("td", { text: fmt(k.createdAt) }), h("td", { text: fmt(k.lastUsedAt) }),
          h("td", {}, k.revokedAt ? `revoked ${fmt(k.revokedAt)}` : act("Revoke", async () => { await api("DELETE", `/keys/${k.id}`); keys(); }, "danger")))))));
  }

  async function route() {
    const at = location.hash;
    const [, page, id] = at.split("/");
    for (const a of document.querySelectorAll("nav a")) a.classList.toggle("on", a.getAttribute("href") === `#/${page}`);
    try {
      if (page === "users" && id) await user(id);
      else if (page === "users") await users();
      else if (page === "integrations" && id) await integration(id);
      else if (page === "integrations") await integrationList();
      else if (page === "logs") await logs();
      else if (page === "settings") await settings();
      else if (page === "keys") await keys();
      else await overview();
    } catch (e) {
      if (e.message !== "signed out" && location.hash === at) show(h("p.error", { role: "alert", text: e.message }));
    }
  }
  window.addEventListener("hashchange", () => csrf && route());

  fetch("/console/session", { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : {}))
    .then((s) => (s.signedIn ? started(s) : signIn()));
})();
