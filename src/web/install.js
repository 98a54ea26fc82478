// The install page: inside the modal's iframe (/forge-install, /authenticate-app) or as a
// page of its own for an install link (/embedded-install). It speaks only to ingot's JSON API,
// with the user token, and to the parent window with the frontend SDK's messages.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const MODE = document.documentElement.dataset.mode || location.pathname.replace(/^\//, "");
  const framed = window.parent !== window;

  // The SDK puts values in the URL unencoded (preFilledValues is raw JSON), so each pair is
  // split at its first "=" and decoded when it decodes.
  const params = new Map();
  for (const pair of location.search.replace(/^\?/, "").split("&")) {
    if (!pair) continue;
    const at = pair.indexOf("=");
    const key = at < 0 ? pair : pair.slice(0, at);
    let value = at < 0 ? "" : pair.slice(at + 1);
    try {
      value = decodeURIComponent(value.replace(/\+/g, " "));
    } catch {
      /* kept as written */
    }
    if (!params.has(key)) params.set(key, []);
    params.get(key).push(value);
  }
  const one = (k) => (params.get(k) || [])[0];
  // The token leaves the address bar (and the history) at once.
  history.replaceState(null, "", location.pathname);

  let token = one("token");
  const link = one("link");
  const hidden = one("hide") === "true";
  const always = one("alwaysShowAuthentication") === "true";
  const operation = one("operation");
  let preFilled = [];
  try {
    preFilled = JSON.parse(one("preFilledValues") || "[]");
  } catch {
    preFilled = [];
  }

  const post = (message) => {
    if (framed) window.parent.postMessage(message, "*");
  };
  const show = () => post({ showModal: true });
  const close = () => {
    post({ closeModal: true });
    if (!framed) $("content").hidden = true;
  };

  async function api(method, path, body) {
    const response = await fetch(`/2024-03${path}`, {
      method,
      headers: { "Content-Type": "application/json", "x-alloy-user-token": token },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(data.message || `The server answered ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function problem(text) {
    $("title").textContent = "Something went wrong";
    $("problem-text").textContent = text;
    $("problem").hidden = false;
    $("content").hidden = true;
    $("problem-close").hidden = !framed;
    show();
    $("problem-close").focus();
  }
  $("problem-close").addEventListener("click", close);
  $("cancel").addEventListener("click", close);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") close();
  });

  // Everything the form needs: the integration (or the template workflows), the credential
  // type its blocks take, and the user's credentials of that type.
  async function load() {
    if (!token && link) {
      const redeemed = await fetch("/install-links/redeem", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ link }),
      });
      const answer = await redeemed.json().catch(() => ({}));
      if (!redeemed.ok) throw Object.assign(new Error(answer.message || "This link does not work."), { status: redeemed.status, link: true });
      token = answer.token;
      params.set("integrationId", [answer.integrationId]);
    }
    if (!token) throw Object.assign(new Error("no token"), { status: 401 });
    const session = await api("GET", "/session");
    let integration;
    let selected;
    if (one("integrationId")) {
      integration = (await api("GET", `/integrations/${encodeURIComponent(one("integrationId"))}`)).data;
      selected = integration.workflows.map((w) => w.workflowId);
    } else {
      const ids = (params.get("id") || []).filter(Boolean);
      if (!ids.length && MODE !== "authenticate-app") throw new Error("No integration or workflow was named.");
      const templates = [];
      for (const id of ids) templates.push((await api("GET", `/workflows/${encodeURIComponent(id)}`)).data);
      if (templates.length) {
        integration = (await api("GET", `/integrations/${encodeURIComponent(templates[0].integrationId)}`)).data;
        selected = templates.map((t) => t.workflowId);
      }
    }
    if (!integration && one("app")) {
      const all = (await api("GET", "/integrations")).data;
      integration = all.find((i) => i.app === one("app") || i.name === one("app"));
      if (!integration) throw new Error(`No integration for ${one("app")}.`);
      selected = [];
    }
    const typeName = integration.credentialType;
    let type = null;
    if (typeName) type = (await api("GET", `/metadata/credentials/${encodeURIComponent(typeName)}`)).data;
    const mine = typeName ? (await api("GET", "/credentials")).data.filter((c) => c.type === typeName) : [];
    return { session, integration, selected, type, mine };
  }

  function render({ integration, selected, type, mine }) {
    const title = one("title");
    $("title").textContent = title || integration.name;
    $("app-name").textContent = integration.app;
    if (integration.icon) {
      $("icon").src = integration.icon;
      $("icon").hidden = false;
    }
    const list = $("workflows");
    for (const w of integration.workflows.filter((w) => selected.includes(w.workflowId))) {
      const li = document.createElement("li");
      li.textContent = w.name;
      const state = document.createElement("span");
      state.className = "state";
      state.textContent = w.installed ? (w.installedVersion < w.version ? "update available" : "installed") : "";
      li.appendChild(state);
      list.appendChild(li);
    }
    $("workflows").previousElementSibling.hidden = !selected.length;
    const existing = mine[mine.length - 1];
    if (existing && !always) {
      $("existing").hidden = false;
      $("existing-label").textContent = `Use ${existing.name || type.displayName} (connected ${existing.createdAt.slice(0, 10)})`;
    }
    if (type && type.isOauth) {
      // An OAuth account is connected at the provider, in a window of its own.
      $("fields-legend").textContent = `Connect your ${integration.app} account`;
      const connect = document.createElement("button");
      connect.type = "button";
      connect.id = "oauth-connect";
      connect.textContent = `Connect ${integration.app}`;
      const status = document.createElement("p");
      status.id = "oauth-status";
      status.className = "muted";
      $("field-list").append(connect, status);
      connect.addEventListener("click", () => oauthConnect(integration, status));
    } else if (type) {
      $("fields-legend").textContent = `Connect ${integration.app}: ${type.displayName}`;
      const holder = $("field-list");
      for (const p of type.properties) {
        const wrap = document.createElement("div");
        wrap.className = "field";
        const id = `f-${p.name}`;
        const label = document.createElement("label");
        label.htmlFor = id;
        label.textContent = p.displayName + (p.required ? "" : " (optional)");
        const input = document.createElement("input");
        input.id = id;
        input.name = p.name;
        input.type = p.secret ? "password" : "text";
        input.autocomplete = "off";
        input.required = p.required;
        const given = preFilled.find((v) => v && (v.name === p.name || v.key === p.name));
        if (given && typeof given.value === "string") input.value = given.value;
        wrap.append(label, input);
        if (p.description) {
          const help = document.createElement("small");
          help.textContent = p.description;
          wrap.appendChild(help);
        }
        holder.appendChild(wrap);
      }
    }
    if (type) {
      const useNew = () => ($("fields").hidden = !(always || !existing || document.querySelector("input[name=use]:checked").value === "new"));
      document.querySelectorAll("input[name=use]").forEach((r) => r.addEventListener("change", useNew));
      useNew();
    }
    $("submit").textContent = MODE === "authenticate-app" ? "Connect" : operation === "update" ? "Update" : "Install";
    $("content").hidden = false;
    const first = document.querySelector("#content input:not([hidden]), #submit");
    if (first) first.focus();
  }

  // Opens the provider's authorization page and waits (polling, bounded) for the callback to
  // have stored the user's new credential.
  let connected = null;
  async function oauthConnect(integration, status) {
    const before = (await api("GET", "/credentials")).data.filter((c) => c.type === "oauth2").map((c) => c.credentialId);
    const { oauthUrl } = await api("GET", `/headless/oauthUrl?integrationId=${encodeURIComponent(integration.integrationId)}`);
    const popup = window.open(oauthUrl, "ingot-oauth", "width=520,height=720");
    status.textContent = popup ? "Waiting for the app…" : "Allow pop-ups for this page, then try again.";
    const deadline = Date.now() + 10 * 60 * 1000;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 1000));
      const now = (await api("GET", "/credentials")).data.filter((c) => c.type === "oauth2" && !before.includes(c.credentialId));
      if (now.length) {
        connected = now[now.length - 1].credentialId;
        status.textContent = "Connected.";
        $("submit").focus();
        return;
      }
    }
    status.textContent = "Not connected: try again.";
  }

  // The values of the credential form, or why they cannot be sent.
  function readForm(type) {
    const data = {};
    let wrong = null;
    for (const p of type.properties) {
      const input = $(`f-${p.name}`);
      const value = input.value.trim();
      input.setAttribute("aria-invalid", "false");
      if (!value) {
        if (p.required && !wrong) {
          wrong = `${p.displayName} is required.`;
          input.setAttribute("aria-invalid", "true");
          input.focus();
        }
        continue;
      }
      data[p.name] = value;
    }
    return { data, wrong };
  }

  async function submit(ctx) {
    const { session, integration, selected, type, mine } = ctx;
    $("form-error").hidden = true;
    let credentialId = null;
    const wantsNew = type && !$("fields").hidden;
    if (wantsNew && type.isOauth) {
      if (!connected) throw Object.assign(new Error(`Connect your ${integration.app} account first.`), { form: true });
      credentialId = connected;
    } else if (wantsNew) {
      const { data, wrong } = readForm(type);
      if (wrong) throw Object.assign(new Error(wrong), { form: true });
      const made = await api("POST", "/headless/credentials", {
        userId: session.userId,
        credential: { type: type.name, name: `${integration.name}`, data },
      });
      credentialId = made.credentialId;
    } else if (mine.length) {
      credentialId = mine[mine.length - 1].credentialId;
    }
    if (MODE === "authenticate-app") {
      post({ closeModal: true, connectionStatus: "success", credentialId });
      return { text: `${integration.app} is connected.` };
    }
    if (operation === "update") {
      for (const w of integration.workflows.filter((w) => selected.includes(w.workflowId) && w.userWorkflowId)) {
        await api("PUT", `/workflows/${w.userWorkflowId}/upgrade`);
      }
    }
    // The selected workflows, in two steps that check the credential against its type. With an
    // install link's token the completion spends the link.
    const started = await api("POST", "/headless/startInstallation", {
      userId: session.userId,
      integrationId: integration.integrationId,
      workflowIds: selected,
      credentialIds: credentialId ? [credentialId] : [],
    });
    if (started.data.length) throw Object.assign(new Error("A credential is still needed."), { form: true });
    const done = await api("POST", "/headless/completeInstallation", { installationId: started.installationId, data: [] });
    post({ workflowCreated: true, workflowIds: done.workflowIds });
    return { text: `${integration.name} is installed.` };
  }

  async function main() {
    let ctx;
    try {
      ctx = await load();
    } catch (e) {
      if (e.status === 401) problem("This session has expired. Close this window and open it again.");
      else if (e.link) problem(e.message);
      else problem(e.message || "The integration could not be loaded.");
      return;
    }
    render(ctx);
    // Nothing to ask (the user's credential is there, nothing is forced): install at once,
    // staying hidden when the page was opened hidden.
    const nothingToAsk = !ctx.type || (ctx.mine.length && !always);
    if (!(hidden && nothingToAsk)) show();
    const run = async () => {
      $("submit").disabled = true;
      try {
        const { text } = await submit(ctx);
        $("content").hidden = true;
        $("done-text").textContent = text;
        $("done").hidden = false;
      } catch (e) {
        if (e.status === 401) return problem("This session has expired. Close this window and open it again.");
        $("form-error").textContent = e.message;
        $("form-error").hidden = false;
        show();
      } finally {
        $("submit").disabled = false;
      }
    };
    $("form").addEventListener("submit", (e) => {
      e.preventDefault();
      run();
    });
    if (hidden && nothingToAsk) run();
  }
  main();
})();
