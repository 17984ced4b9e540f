// SPDX-License-Identifier: Apache-2.0
// The mooringd dashboard: polls the daemon's read-only JSON admin routes every two seconds
// and renders them. No framework, nothing from the network; text goes into the page only
// through textContent, never as markup.
"use strict";

const POLL_MS = 2000;
const HISTORY = 30; // points per sparkline (one minute)
const token = new URLSearchParams(location.search).get("token");
const history = new Map(); // app id -> [{t, requests}]

async function get(path) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const r = await fetch(path, { headers, cache: "no-store" });
  if (r.status === 404) return null; // a route this daemon does not have (yet)
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function fill(tableId, rows, empty) {
  const body = document.querySelector("#" + tableId + " tbody");
  const cols = document.querySelectorAll("#" + tableId + " thead th").length;
  body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: cols, class: "empty" }, empty))]));
  document.getElementById(tableId + "-count").textContent = "(" + rows.length + ")";
}

function spark(points) {
  const svgNs = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNs, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 " + (HISTORY - 1) + " 24");
  svg.setAttribute("preserveAspectRatio", "none");
  const max = Math.max(1, ...points);
  const line = document.createElementNS(svgNs, "polyline");
  const off = HISTORY - points.length;
  line.setAttribute("points", points.map((v, i) => (off + i) + "," + (23 - (v / max) * 22).toFixed(2)).join(" "));
  svg.append(line);
  return svg;
}

function rates(app, now) {
  let h = history.get(app.id);
  if (!h) history.set(app.id, (h = []));
  h.push({ t: now, requests: app.requests || 0 });
  if (h.length > HISTORY + 1) h.shift();
  const out = [];
  for (let i = 1; i < h.length; i++) {
    const dt = (h[i].t - h[i - 1].t) / 1000;
    out.push(dt > 0 ? Math.max(0, h[i].requests - h[i - 1].requests) / dt : 0);
  }
  return out;
}

function renderApps(apps) {
  const now = Date.now();
  const select = document.getElementById("logs-app");
  const known = new Set([...select.options].map((o) => o.value));
  fill("apps", apps.map((a) => {
    const r = rates(a, now);
    if (!known.has(a.id)) select.append(el("option", { value: a.id }, a.id));
    const where = [a.httpSocket ? el("code", {}, a.httpSocket) : null,
                   a.httpPort ? el("div", {}, "127.0.0.1:" + a.httpPort) : null];
    const conc = (a.activeCalls || 0) + " / " + (a.maxConcurrency ? a.maxConcurrency : "∞");
    return el("tr", { "data-app": a.id },
      el("td", {}, el("strong", {}, a.id)),
      el("td", {}, el("span", { class: "pill " + a.health }, a.health)),
      el("td", {}, ...where),
      el("td", {}, a.appAddress ? el("code", {}, a.appAddress) : el("span", { class: "empty" }, "none")),
      el("td", {}, el("code", {}, a.unit || "")),
      el("td", { class: "num" }, conc),
      el("td", { class: "num rate" }, r.length ? r[r.length - 1].toFixed(1) : "–"),
      el("td", {}, spark(r)));
  }), "No app is registered.");
}

function renderComponents(comps) {
  fill("components", comps.map((c) => el("tr", { "data-component": c.name },
    el("td", {}, el("strong", {}, c.name)),
    el("td", {}, el("code", {}, c.type + (c.version ? "/" + c.version : ""))),
    el("td", {}, el("span", { class: "pill " + c.status }, c.status), c.error ? el("span", { class: "err" }, c.error) : null),
    el("td", {}, c.scopes && c.scopes.length ? c.scopes.join(", ") : el("span", { class: "empty" }, "every app")),
    el("td", {}, c.file ? el("code", {}, c.file + (c.line ? ":" + c.line : "")) : el("span", { class: "empty" }, "built in")))),
    "No component is loaded.");
}

function renderSubscriptions(subs) {
  fill("subscriptions", subs.map((s) => el("tr", {},
    el("td", {}, s.app || el("span", { class: "empty" }, "D-Bus")), el("td", {}, s.pubsub),
    el("td", {}, el("code", {}, s.topic)), el("td", {}, el("code", {}, s.route || "")), el("td", {}, s.kind))),
    "No subscription is running.");
}

function renderActors(actors) {
  const box = document.getElementById("actors");
  if (actors === null) {
    box.replaceChildren(el("span", { class: "empty" }, "This mooringd has no actor runtime."));
    return;
  }
  box.replaceChildren(actors.length
    ? el("table", {}, el("tbody", {}, ...actors.map((a) => el("tr", {},
        el("td", {}, el("strong", {}, a.type)), el("td", {}, a.app || ""), el("td", { class: "num" }, a.count ?? "")))))
    : el("span", { class: "empty" }, "No actor type is registered."));
}

function renderLogs(lines) {
  const pre = document.getElementById("logs");
  const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  pre.textContent = lines.length
    ? lines.map((l) => l.time + " " + l.app + ": " + l.message).join("\n")
    : "No log lines yet.";
  if (atEnd) pre.scrollTop = pre.scrollHeight;
}

async function refresh() {
  const errBox = document.getElementById("error");
  try {
    const app = document.getElementById("logs-app").value;
    const [status, apps, comps, subs, logs] = await Promise.all([
      get("/mooring/v1/status"), get("/mooring/v1/apps"), get("/mooring/v1/components"),
      get("/mooring/v1/subscriptions"),
      get("/mooring/v1/logs" + (app ? "?app=" + encodeURIComponent(app) : ""))]);
    // The actors block announces itself in the status (actorRuntime) and serves the list.
    const actors = status.actorRuntime ? await get("/mooring/v1/actors") : null;
    const st = document.getElementById("daemon-state");
    st.textContent = status.state;
    st.className = "pill " + status.state;
    document.getElementById("daemon-info").textContent =
      "version " + status.version + " · up " + status.uptimeSec + " s · " + status.apps + " apps · " +
      status.components + " components";
    renderApps(apps || []);
    renderComponents(comps || []);
    renderSubscriptions(subs || []);
    renderActors(actors);
    renderLogs(logs || []);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    errBox.hidden = true;
    document.body.dataset.loaded = "1";
  } catch (e) {
    errBox.textContent = "Cannot reach mooringd: " + e.message;
    errBox.hidden = false;
  }
}

document.getElementById("logs-app").addEventListener("change", refresh);
refresh();
setInterval(refresh, POLL_MS);
