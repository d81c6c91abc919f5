// micro web: the page talks only to the dashboard's own /api, with the token from the URL's fragment.
"use strict";

const token = new URLSearchParams(location.hash.slice(1)).get("token") || sessionStorage.getItem("micro-web-token") || "";
if (token) { sessionStorage.setItem("micro-web-token", token); history.replaceState(null, "", location.pathname); }

const $ = (id) => document.getElementById(id);
let current = null;
let logsTimer = null;

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { "X-Micro-Web-Token": token, "Content-Type": "application/json" } });
  const body = await response.json().catch(() => ({ error: { detail: response.statusText, code: response.status } }));
  if (!response.ok) { const e = new Error(body.error ? body.error.detail : response.statusText); e.body = body; e.status = response.status; throw e; }
  return body;
}

function cell(row, text) { const td = document.createElement("td"); td.textContent = text; row.appendChild(td); return td; }

function shape(value, depth = 0) {
  if (!value) return "-";
  const fields = value.values || [];
  if (!fields.length || depth > 3) return value.type || "any";
  return `${value.type} {${fields.map((f) => `${f.name}: ${shape(f, depth + 1)}`).join(", ")}}`;
}

function skeleton(value, depth = 0) {
  if (!value || depth > 3) return null;
  const fields = value.values || [];
  if (fields.length) { const out = {}; for (const f of fields) out[f.name] = skeleton(f, depth + 1); return out; }
  const type = (value.type || "").toLowerCase();
  if (type.startsWith("int") || type === "float") return 0;
  if (type === "bool") return false;
  if (type.startsWith("list")) return [];
  if (type.startsWith("dict")) return {};
  if (type === "str") return "";
  return null;
}

async function loadServices() {
  try {
    const { services } = await api("/api/services");
    const list = $("services");
    list.replaceChildren();
    for (const s of services) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button"; b.textContent = s.name; b.dataset.service = s.name;
      if (s.name === current) b.classList.add("active");
      b.addEventListener("click", () => show(s.name));
      li.appendChild(b); list.appendChild(li);
    }
    $("status").textContent = `${services.length} service(s)`;
  } catch (e) { $("status").textContent = `registry: ${e.message}`; }
}

async function show(name) {
  current = name;
  for (const b of document.querySelectorAll("#services button")) b.classList.toggle("active", b.dataset.service === name);
  const { versions } = await api(`/api/services/${encodeURIComponent(name)}`);
  $("hint").hidden = true; $("service").hidden = false; $("service-name").textContent = name;
  const nodes = $("nodes").tBodies[0]; nodes.replaceChildren();
  const endpoints = $("endpoints").tBodies[0]; endpoints.replaceChildren();
  const select = $("call-endpoint"); select.replaceChildren();
  const seen = new Map();
  for (const v of versions) {
    for (const n of v.nodes) {
      const row = nodes.insertRow(); cell(row, n.id); cell(row, n.address); cell(row, v.version);
      cell(row, Object.entries(n.metadata || {}).map(([k, x]) => `${k}=${x}`).join(", "));
    }
    for (const e of v.endpoints) seen.set(e.name, e);
  }
  // The service's own endpoints first, the Debug ones every service mounts after them.
  const order = (e) => `${e.name.startsWith("Debug.") ? 1 : 0}${e.name}`;
  for (const e of [...seen.values()].sort((a, b) => order(a).localeCompare(order(b)))) {
    const row = endpoints.insertRow(); cell(row, e.name); cell(row, shape(e.request)); cell(row, shape(e.response));
    if (e.metadata && e.metadata.subscriber) continue;
    const option = document.createElement("option"); option.value = e.name; option.textContent = e.name; select.appendChild(option);
  }
  const fill = () => { const e = seen.get(select.value); $("call-request").value = JSON.stringify(skeleton(e && e.request) ?? {}, null, 2); };
  select.onchange = fill; fill();
  $("call-result").textContent = ""; $("call-result").classList.remove("error");
  refreshTab();
}

async function call(event) {
  event.preventDefault();
  const out = $("call-result");
  let request;
  try { request = JSON.parse($("call-request").value || "null"); } catch (e) { out.textContent = `not JSON: ${e.message}`; out.classList.add("error"); return; }
  out.textContent = "…"; out.classList.remove("error");
  try {
    const { response } = await api("/api/call", { method: "POST", body: JSON.stringify({ service: current, endpoint: $("call-endpoint").value, request }) });
    out.textContent = JSON.stringify(response, null, 2);
  } catch (e) {
    out.textContent = JSON.stringify(e.body ? e.body.error : { detail: e.message }, null, 2); out.classList.add("error");
  }
  refreshTab();
}

async function refreshLogs() {
  if (!current) return;
  try {
    const { records } = await api(`/api/debug/${encodeURIComponent(current)}/logs?count=200`);
    $("logs").textContent = records.map((r) => `${new Date(r.timestamp * 1000).toISOString()} ${r.level.toUpperCase().padEnd(8)} ${r.message}`).join("\n") || "(no records)";
    $("logs").classList.remove("error");
  } catch (e) { $("logs").textContent = `logs: ${e.message}`; $("logs").classList.add("error"); }
}

async function refreshStats() {
  const body = $("stats").tBodies[0];
  try {
    const { stats } = await api(`/api/debug/${encodeURIComponent(current)}/stats`);
    const now = stats[stats.length - 1] || {};
    body.replaceChildren();
    for (const key of ["uptime", "memory", "threads", "requests", "errors", "gc"]) {
      const row = body.insertRow(); cell(row, key); cell(row, Array.isArray(now[key]) ? now[key].join(", ") : String(now[key] ?? "-"));
    }
  } catch (e) { body.replaceChildren(); const row = body.insertRow(); cell(row, `stats: ${e.message}`); }
}

async function refreshTraces() {
  const root = $("traces");
  try {
    const { spans } = await api(`/api/debug/${encodeURIComponent(current)}/trace`);
    const traces = new Map();
    for (const s of spans) { if (!traces.has(s.trace_id)) traces.set(s.trace_id, []); traces.get(s.trace_id).push(s); }
    root.replaceChildren();
    if (!traces.size) root.textContent = "(no traces)";
    for (const [id, group] of [...traces.entries()].slice(-10).reverse()) {
      const start = Math.min(...group.map((s) => s.started));
      const end = Math.max(...group.map((s) => s.started + s.duration));
      const total = Math.max(end - start, 1e-6);
      const div = document.createElement("div"); div.className = "trace";
      const title = document.createElement("div"); title.textContent = `trace ${id} · ${(total * 1000).toFixed(2)} ms`; div.appendChild(title);
      for (const s of group.sort((a, b) => a.started - b.started)) {
        const row = document.createElement("div"); row.className = `span ${s.type || ""}`;
        if (s.metadata && s.metadata.error) row.classList.add("error");
        const bar = document.createElement("div"); bar.className = "bar";
        bar.style.left = `${((s.started - start) / total) * 100}%`; bar.style.width = `${(s.duration / total) * 100}%`;
        const label = document.createElement("span"); label.className = "label"; label.textContent = `${s.name} ${(s.duration * 1000).toFixed(2)} ms`;
        row.append(bar, label); div.appendChild(row);
      }
      root.appendChild(div);
    }
  } catch (e) { root.textContent = `traces: ${e.message}`; }
}

function activeTab() { return document.querySelector(".tabs button.active").dataset.tab; }

function refreshTab() {
  if (!current) return;
  const tab = activeTab();
  if (tab === "logs") refreshLogs(); else if (tab === "stats") refreshStats(); else refreshTraces();
}

for (const b of document.querySelectorAll(".tabs button")) {
  b.addEventListener("click", () => {
    for (const other of document.querySelectorAll(".tabs button")) other.classList.toggle("active", other === b);
    for (const tab of ["logs", "stats", "traces"]) $(`tab-${tab}`).hidden = tab !== b.dataset.tab;
    refreshTab();
  });
}
$("call").addEventListener("submit", call);
logsTimer = setInterval(() => { if (current && activeTab() === "logs" && $("logs-live").checked) refreshLogs(); }, 2000);
setInterval(loadServices, 5000);
loadServices();
