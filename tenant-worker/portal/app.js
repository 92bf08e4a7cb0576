// The operator portal: plain JavaScript against the tenant API, no build
// step. Every value from the API reaches the page through textContent or
// form values, never as HTML, so a caller's words cannot become markup.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const views = ["sign-in", "calls", "call", "agent", "routing", "escalation", "tokens"];
const etags = {};
let cursors = [null];

function token() { return sessionStorage.getItem("bulkhead-token"); }

function notice(text, isError) {
  const n = $("#notice");
  n.textContent = text;
  n.className = isError ? "error" : "ok";
  n.hidden = !text;
}

// Calls the API; throws an Error whose message names the field at fault.
async function api(method, path, body, headers = {}) {
  const init = { method, headers: { Authorization: "Bearer " + token(), ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (resp.status === 401) { signOut("Your token is no longer valid; sign in again."); throw new Error("unauthorized"); }
  const text = await resp.text();
  const data = text ? JSON.parse(text) : null;
  if (!resp.ok) {
    const e = (data && data.error) || { message: resp.statusText };
    throw new Error((e.field ? e.field + ": " : "") + e.message);
  }
  return { data, etag: resp.headers.get("ETag") };
}

function show(view) {
  for (const v of views) $("#view-" + v).hidden = v !== view;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === view);
}

function signOut(message) {
  sessionStorage.removeItem("bulkhead-token");
  $("#nav").hidden = true;
  show("sign-in");
  notice(message || "", Boolean(message));
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  row.appendChild(td);
  return td;
}

function seconds(ms) { return (ms / 1000).toFixed(1) + " s"; }

// ---- calls ------------------------------------------------------------

function callQuery(cursor) {
  const form = $("#call-search");
  const q = new URLSearchParams({ limit: "25" });
  for (const name of ["number", "outcome"]) {
    const v = form.elements[name].value.trim();
    if (v) q.set(name, v);
  }
  for (const name of ["since", "until"]) {
    const v = form.elements[name].value;
    if (v) q.set(name, v.length === 16 ? v + ":00Z" : v + "Z");
  }
  if (cursor) q.set("cursor", cursor);
  return "/v1/calls?" + q.toString();
}

async function loadCalls() {
  const page = cursors.length - 1;
  const { data } = await api("GET", callQuery(cursors[page]));
  const body = $("#calls tbody");
  body.replaceChildren();
  for (const c of data.calls) {
    const row = document.createElement("tr");
    row.dataset.id = c.id;
    row.tabIndex = 0;
    cell(row, c.started_at.replace("T", " ").replace(/\.\d+Z$/, ""));
    cell(row, c.from);
    cell(row, c.to);
    cell(row, c.outcome).className = "outcome " + c.outcome;
    cell(row, seconds(c.duration_ms));
    cell(row, c.escalated_to);
    row.addEventListener("click", () => { location.hash = "call/" + encodeURIComponent(c.id); });
    body.appendChild(row);
  }
  if (!data.calls.length) {
    const row = document.createElement("tr");
    cell(row, "No calls match.").colSpan = 6;
    body.appendChild(row);
  }
  $("#older").disabled = !data.next_cursor;
  $("#older").dataset.cursor = data.next_cursor || "";
  $("#newer").disabled = page === 0;
  const { data: nums } = await api("GET", "/v1/numbers");
  $("#numbers").textContent = nums.numbers.join(", ");
}

async function loadCall(id) {
  const [{ data: c }, { data: t }] = await Promise.all([
    api("GET", "/v1/calls/" + encodeURIComponent(id)),
    api("GET", "/v1/calls/" + encodeURIComponent(id) + "/transcript"),
  ]);
  $("#call-id").textContent = c.id;
  const dl = $("#call-fields");
  dl.replaceChildren();
  const fields = [["Outcome", c.outcome], ["From", c.from], ["To", c.to], ["Started", c.started_at],
    ["Answered", c.answered_at], ["Ended", c.ended_at], ["Duration", seconds(c.duration_ms)],
    ["Escalated to", c.escalated_to], ["SIP Call-ID", c.call_id],
    ["Providers", c.providers ? JSON.stringify(c.providers) : null]];
  for (const [k, v] of fields) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v == null ? "—" : v;
    dl.append(dt, dd);
  }
  const ol = $("#transcript");
  ol.replaceChildren();
  for (const turn of t.turns) {
    const li = document.createElement("li");
    li.className = "turn " + turn.speaker;
    const who = document.createElement("span");
    who.className = "speaker";
    who.textContent = turn.speaker + " · " + seconds(turn.at_ms);
    const said = document.createElement("span");
    said.className = "text";
    said.textContent = turn.text;
    li.append(who, said);
    ol.appendChild(li);
  }
  if (!t.turns.length) ol.textContent = "No transcript (the call was not answered).";
}

// ---- agent ------------------------------------------------------------

function providerFields(fieldset, provider) {
  const layer = fieldset.dataset.layer;
  for (const el of fieldset.querySelectorAll("label")) el.remove();
  if (provider.provider !== "openai") return;
  for (const [key, type, hint] of [["base_url", "url", "https://api.openai.com/v1"],
    ["model", "text", ""], ["api_key", "password", provider.api_key_set ? "set; enter it again to save" : ""]]) {
    const label = document.createElement("label");
    label.textContent = key + " ";
    const input = document.createElement("input");
    input.name = layer + "." + key;
    input.type = type;
    input.placeholder = hint;
    if (key !== "api_key") input.value = provider[key] || "";
    label.appendChild(input);
    fieldset.appendChild(label);
  }
}

let agentDoc = null;

async function loadAgent() {
  const { data, etag } = await api("GET", "/v1/agent");
  agentDoc = data;
  etags.agent = etag;
  const f = $("#agent-form").elements;
  f["greeting"].value = data.greeting;
  f["prompt"].value = data.prompt;
  f["language"].value = data.language;
  f["persona.name"].value = data.persona.name || "";
  f["persona.voice"].value = data.persona.voice || "";
  for (const layer of ["stt", "llm", "tts"]) {
    f[layer + ".provider"].value = data[layer].provider;
    providerFields($(`fieldset[data-layer=${layer}]`), data[layer]);
  }
  f["intents"].value = JSON.stringify(data.intents, null, 2);
}

function agentFromForm() {
  const f = $("#agent-form").elements;
  const doc = {
    greeting: f["greeting"].value,
    prompt: f["prompt"].value,
    language: f["language"].value,
    persona: { name: f["persona.name"].value },
    intents: JSON.parse(f["intents"].value || "[]"),
  };
  if (f["persona.voice"].value) doc.persona.voice = f["persona.voice"].value;
  for (const layer of ["stt", "llm", "tts"]) {
    const p = { provider: f[layer + ".provider"].value };
    if (p.provider === "openai") {
      for (const key of ["base_url", "model", "api_key"]) {
        const input = f[layer + "." + key];
        if (input && input.value) p[key] = input.value;
      }
      // An unchanged secret is kept: the API never shows it, so resend is impossible.
      if (!p.api_key && agentDoc[layer].api_key_set && agentDoc[layer].provider === "openai") {
        throw new Error(layer + ".api_key: enter the key again to save this provider");
      }
    }
    doc[layer] = p;
  }
  return doc;
}

// ---- routing and escalation ---------------------------------------------

async function loadDocument(name) {
  const { data, etag } = await api("GET", "/v1/" + name);
  etags[name] = etag;
  return data;
}

async function loadRouting() {
  $("#routing-form").elements["document"].value = JSON.stringify(await loadDocument("routing"), null, 2);
}

function targetRow(t, isDefault) {
  const row = document.createElement("tr");
  for (const [key, value] of [["name", t.name], ["uri", t.uri]]) {
    const input = document.createElement("input");
    input.name = key;
    input.value = value || "";
    input.placeholder = key === "uri" ? "sip:frontdesk@pbx.example.com" : "front-desk";
    cell(row, "").appendChild(input);
  }
  const select = document.createElement("select");
  select.name = "transfer";
  for (const m of ["bridge", "refer"]) select.add(new Option(m, m, false, t.transfer === m));
  cell(row, "").appendChild(select);
  const radio = document.createElement("input");
  radio.type = "radio"; radio.name = "default"; radio.checked = isDefault;
  cell(row, "").appendChild(radio);
  const remove = document.createElement("button");
  remove.type = "button"; remove.textContent = "Remove";
  remove.addEventListener("click", () => row.remove());
  cell(row, "").appendChild(remove);
  return row;
}

async function loadEscalation() {
  const doc = await loadDocument("escalation");
  const body = $("#targets tbody");
  body.replaceChildren();
  for (const t of doc.targets) body.appendChild(targetRow(t, t.name === doc.default_target));
}

function escalationFromForm() {
  const doc = { targets: [] };
  for (const row of document.querySelectorAll("#targets tbody tr")) {
    const get = (n) => $(`[name=${n}]`, row).value.trim();
    doc.targets.push({ name: get("name"), uri: get("uri"), transfer: get("transfer") });
    if ($("[name=default]", row).checked) doc.default_target = get("name");
  }
  return doc;
}

async function save(name, doc, reload) {
  try {
    const headers = etags[name] ? { "If-Match": etags[name] } : {};
    const { etag } = await api("PUT", "/v1/" + name, doc, headers);
    etags[name] = etag;
    await reload();
    notice("Saved. It applies from the next call.");
  } catch (e) {
    notice("Not saved — " + e.message, true);
  }
}

// ---- tokens -----------------------------------------------------------

async function loadTokens() {
  const { data } = await api("GET", "/v1/tokens");
  const body = $("#tokens tbody");
  body.replaceChildren();
  for (const t of data.tokens) {
    const row = document.createElement("tr");
    cell(row, t.name); cell(row, t.id); cell(row, t.created_at); cell(row, t.expires_at || "never");
    const revoke = document.createElement("button");
    revoke.type = "button"; revoke.textContent = "Revoke";
    revoke.addEventListener("click", async () => {
      if (!confirm("Revoke " + t.name + "? Programs using it stop working at once.")) return;
      try { await api("DELETE", "/v1/tokens/" + t.id); notice("Revoked " + t.name + "."); await loadTokens(); }
      catch (e) { notice(e.message, true); }
    });
    cell(row, "").appendChild(revoke);
    body.appendChild(row);
  }
}

// ---- wiring -----------------------------------------------------------

async function route() {
  if (!token()) return signOut();
  $("#nav").hidden = false;
  const [view, arg] = (location.hash.slice(1) || "calls").split("/");
  try {
    if (view === "call" && arg) { await loadCall(decodeURIComponent(arg)); show("call"); return; }
    const loaders = { calls: loadCalls, agent: loadAgent, routing: loadRouting, escalation: loadEscalation, tokens: loadTokens };
    const load = loaders[view] || loadCalls;
    await load();
    show(loaders[view] ? view : "calls");
  } catch (e) {
    if (e.message !== "unauthorized") notice(e.message, true);
  }
}

function wire() {
  $("#sign-in-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("bulkhead-token", $("#token").value.trim());
    $("#token").value = "";
    try { await api("GET", "/v1/numbers"); notice(""); location.hash = "calls"; await route(); }
    catch (e) { if (e.message !== "unauthorized") notice(e.message, true); }
  });
  $("#sign-out").addEventListener("click", () => signOut());
  $("#call-search").addEventListener("submit", (ev) => {
    ev.preventDefault(); cursors = [null];
    loadCalls().catch((e) => notice(e.message, true));
  });
  $("#older").addEventListener("click", () => { cursors.push($("#older").dataset.cursor); loadCalls().catch((e) => notice(e.message, true)); });
  $("#newer").addEventListener("click", () => { cursors.pop(); loadCalls().catch((e) => notice(e.message, true)); });
  for (const layer of ["stt", "llm", "tts"]) {
    $(`select[name="${layer}.provider"]`).addEventListener("change", (ev) => {
      const current = agentDoc && agentDoc[layer].provider === ev.target.value ? agentDoc[layer] : { provider: ev.target.value };
      providerFields($(`fieldset[data-layer=${layer}]`), current);
    });
  }
  $("#agent-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    let doc;
    try { doc = agentFromForm(); } catch (e) { notice("Not saved — " + e.message, true); return; }
    save("agent", doc, loadAgent);
  });
  $("#routing-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    let doc;
    try { doc = JSON.parse(ev.target.elements["document"].value); }
    catch (e) { notice("Not saved — the routing document is not valid JSON: " + e.message, true); return; }
    save("routing", doc, loadRouting);
  });
  $("#add-target").addEventListener("click", () => $("#targets tbody").appendChild(targetRow({ transfer: "bridge" }, false)));
  $("#escalation-form").addEventListener("submit", (ev) => { ev.preventDefault(); save("escalation", escalationFromForm(), loadEscalation); });
  $("#token-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target.elements;
    const body = { name: f["name"].value };
    if (f["days"].value) body.expires_in_s = Number(f["days"].value) * 86400;
    try {
      const { data } = await api("POST", "/v1/tokens", body);
      $("#new-token code").textContent = data.token;
      $("#new-token").hidden = false;
      f["name"].value = ""; f["days"].value = "";
      await loadTokens();
    } catch (e) { notice(e.message, true); }
  });
  window.addEventListener("hashchange", () => { notice(""); route(); });
  route();
}

wire();
