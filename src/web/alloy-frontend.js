// ingot's drop-in for npm alloy-frontend 2.1.1: the same factory, methods, modal chrome and
// postMessage rules, with ingot as both the app (the pages in the iframe) and the API. It is
// served twice: as an ES module at /alloy-frontend.js (`import Alloy from ".../alloy-frontend.js"`)
// and, wrapped, as /embedded.js, which sets `window.Alloy`. The origin is the one this script
// was loaded from.
const INGOT = new URL(import.meta.url).origin;

export default function Alloy() {
  let token;
  const api = (method, path, body) => {
    if (!token) throw new Error("no token set");
    return fetch(`${INGOT}/2024-03${path}`, {
      method,
      headers: { "Content-Type": "application/json", "x-alloy-user-token": token },
      body: body === undefined ? undefined : JSON.stringify(body),
    }).then((response) => response.json());
  };
  return {
    install: (params) => open(token, "forge-install", installQuery(params), params, false),
    edit: (params) => open(token, "forge-install", installQuery({ alwaysShowAuthentication: true, operation: "edit", ...params }), params, false),
    update: (params) => open(token, "forge-install", installQuery({ alwaysShowAuthentication: true, operation: "update", ...params }), params, false),
    authenticate: (params) => open(token, "authenticate-app", authenticateQuery(params), params, true),
    setToken: (tk) => {
      token = tk;
    },
    // Regions choose Alloy's hosts; ingot is one host, so the region is accepted and ignored.
    setRegion: () => {},
    getWorkflows: () => api("GET", "/workflows"),
    getIntegrations: () => api("GET", "/integrations"),
    deactivate: (data) => api("PUT", "/workflows/deactivate", data),
    reactivate: (data) => api("PUT", "/workflows/activate", data),
  };
}

// The query string the official SDK builds, value for value (it does not encode them).
function installQuery(p) {
  let q = "";
  if (p.integrationId) q += `integrationId=${p.integrationId}&`;
  else if (Array.isArray(p.workflowIds)) p.workflowIds.forEach((id) => (q += `id=${id}&`));
  else q += `id=${p.workflowIds}&`;
  if (Array.isArray(p.versionIds) && p.versionIds.length) p.versionIds.forEach((id) => (q += `versionId=${id}&`));
  else if (p.versionIds) q += `versionId=${p.workflowIds}&`;
  if (Array.isArray(p.preFilledValues) && p.preFilledValues.length) q += `preFilledValues=${JSON.stringify(p.preFilledValues)}&`;
  if (Array.isArray(p.outputOverride) && p.outputOverride.length) q += `outputOverride=${JSON.stringify(p.outputOverride)}&`;
  return (token) => {
    let src = `${q}token=${token}&forgeMode=engaged`;
    if (p.hide) src += "&hide=true";
    if (p.alwaysShowAuthentication) src += "&alwaysShowAuthentication=true";
    if (p.operation) src += `&operation=${p.operation}`;
    if (p.title) src += `&title=${p.title}`;
    return src;
  };
}

function authenticateQuery(p) {
  return (token) => {
    let src = `token=${token}&forgeMode=engaged`;
    if (p.integrationId) src += `&integrationId=${p.integrationId}`;
    if (p.app) src += `&app=${p.app}`;
    if (p.category) src += `&category=${p.category}`;
    if (p.useUnifiedSettings) src += `&useUnified=${p.useUnifiedSettings}`;
    return src;
  };
}

// The modal: a mask, a 400x659 body with rounded corners, and the iframe; a click outside
// closes it. Messages count only from ingot's own origin.
function open(token, path, query, params, authenticating) {
  const { callback, hide } = params;
  let success = false;
  const body = document.querySelector("body");
  const modal = document.createElement("div");
  const closeModal = () => {
    if (modal.parentNode) body.removeChild(modal);
    window.removeEventListener("message", handleMessage);
    if (callback) callback({ success });
  };
  const layer = () => {
    const d = document.createElement("div");
    Object.assign(d.style, { position: "fixed", top: 0, right: 0, left: 0, bottom: 0, zIndex: 1000, height: "100%" });
    d.addEventListener("click", closeModal);
    return d;
  };
  const mask = layer();
  mask.style.backgroundColor = "rgba(0,0,0,0.45)";
  if (hide) modal.style.display = "none";
  modal.appendChild(mask);
  const container = layer();
  modal.appendChild(container);
  const modalBody = document.createElement("div");
  Object.assign(modalBody.style, {
    width: "400px", margin: "75px auto 75px auto", height: "659px", maxHeight: "659px",
    backgroundColor: "#fff", borderRadius: "16px",
  });
  container.appendChild(modalBody);
  if (!token) throw new Error("no token set");
  const iframe = document.createElement("iframe");
  if (authenticating) iframe.setAttribute("id", "embedded-modal");
  iframe.src = `${INGOT}/${path}?${query(token)}`;
  iframe.title = "Install integration";
  Object.assign(iframe.style, { minWidth: "100%", minHeight: "100%", border: "none", borderRadius: "16px" });
  modalBody.appendChild(iframe);
  body.appendChild(modal);

  const remove = (after) =>
    setTimeout(() => {
      if (modal.parentNode) body.removeChild(modal);
      window.removeEventListener("message", handleMessage);
    }, after);
  function handleMessage(event) {
    if (!event || event.origin !== INGOT || !event.data) return;
    const data = event.data;
    if (data.showModal) {
      modal.style.display = "block";
    } else if (data.closeModal) {
      const response = { success };
      if (authenticating) {
        if (data.connectionStatus) response.success = data.connectionStatus !== "failed";
        if (data.connectionId) response.connectionId = data.connectionId;
        if (data.credentialId) response.credentialId = data.credentialId;
      }
      if (callback) callback(response);
      if (modal.parentNode) body.removeChild(modal);
      window.removeEventListener("message", handleMessage);
    } else if (authenticating || data.workflowCreated) {
      success = true;
      const response = { success };
      let after = 200;
      if (authenticating && (data.connectionId || data.credentialId)) {
        if (data.connectionId) response.connectionId = data.connectionId;
        if (data.credentialId) response.credentialId = data.credentialId;
        after = 1000;
      }
      if (!authenticating && data.workflowIds) after = 1000;
      if (callback) callback(response);
      if (data.closeModal || data.closeModal === undefined) remove(after);
    }
  }
  window.addEventListener("message", handleMessage);
}
