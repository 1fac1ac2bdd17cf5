// Wayfinder live demo: plain browser JavaScript, no build step, nothing loaded from elsewhere.
// Every button posts a real event to POST /v1/events; the recommendations, the map and the intent
// panel are then re-read from the API, so what you see is what any client would get.
"use strict";

const PAGE_SIZE = 18;
const RECS_K = 10;
const MAP_POINTS = 3000;
const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46a0a0", "#f032e6",
  "#9a6324", "#808000", "#000075", "#e6a800", "#008080"];
const OTHER = "#b8bec8";

const state = {
  user: "", offset: 0, total: 0, query: "", category: "",
  map: null, view: null, zoom: false, colours: new Map(), path: [], mine: new Map(), lastRecs: [], refreshes: 0,
};

const $ = (id) => document.getElementById(id);
const api = (path) => new URL(path, document.baseURI).toString();

// The API key: `wayfinder serve` prints the demo URL as .../demo#key=KEY. A fragment never reaches
// a server or its logs; the page keeps the key for this tab only and takes it out of the address bar.
const API_KEY = (() => {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("key");
  try {
    if (fromHash) sessionStorage.setItem("wayfinder-key", fromHash);
    return fromHash || sessionStorage.getItem("wayfinder-key") || "";
  } catch { return fromHash || ""; }
})();
if (location.hash) history.replaceState(null, "", location.pathname + location.search);

function headers(extra = {}) {
  return API_KEY ? { ...extra, authorization: `Bearer ${API_KEY}` } : extra;
}

async function failure(what, response) {
  const text = await response.text();
  if (response.status === 401) {
    return new Error(`${what}: 401: this app needs an API key; open the demo URL that wayfinder serve printed (/demo#key=...)`);
  }
  return new Error(`${what}: ${response.status} ${text}`);
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

async function getJSON(path) {
  const response = await fetch(api(path), { headers: headers() });
  if (!response.ok) throw await failure(path, response);
  return response.json();
}

function setStatus(text, isError = false) {
  const node = $("status");
  node.textContent = text;
  node.classList.toggle("error", isError);
}

function randomUser() {
  const bytes = new Uint8Array(4);
  crypto.getRandomValues(bytes);
  return "demo-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ------------------------------------------------------------------ user
function loadPath(user) {
  try { return JSON.parse(localStorage.getItem("wayfinder-path:" + user)) || []; } catch { return []; }
}

function savePath() {
  try { localStorage.setItem("wayfinder-path:" + state.user, JSON.stringify(state.path.slice(-200))); } catch { /* private mode */ }
}

async function switchUser(user) {
  state.user = user;
  state.path = loadPath(user);
  state.mine = new Map();
  state.lastRecs = [];
  $("user-id").value = user;
  const url = new URL(location.href);
  url.searchParams.set("user", user);
  history.replaceState(null, "", url);
  renderCatalogueMarks();
  await refreshUser();
}

// ------------------------------------------------------------------ events
async function sendEvent(itemId, title, eventType) {
  const buttons = document.querySelectorAll(".actions button");
  buttons.forEach((b) => { b.disabled = true; });
  document.body.dataset.busy = "1";
  try {
    const body = {
      user_id: state.user, item_id: itemId, event_type: eventType,
      event_id: `${state.user}-${Date.now()}-${Math.random().toString(16).slice(2, 8)}`,
      context: { source: "demo-page" },
    };
    const response = await fetch(api("v1/events"), {
      method: "POST", headers: headers({ "content-type": "application/json" }), body: JSON.stringify(body),
    });
    if (!response.ok) throw await failure("event", response);
    const ack = (await response.json()).acks[0];
    state.mine.set(itemId, eventType);
    renderCatalogueMarks();
    setStatus(`${eventType} · ${title} → ${ack.status} (state v${ack.state_version})`);
    await refreshUser();
  } catch (error) {
    setStatus(String(error.message || error), true);
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
    delete document.body.dataset.busy;
  }
}

function actionButtons(itemId, title) {
  const make = (label, type, cls) => el("button", {
    type: "button", class: cls, "data-event": type, title: `send a '${type}' event`,
    onclick: () => sendEvent(itemId, title, type),
  }, label);
  return el("div", { class: "actions" },
    make("Like", "like", "like"), make("Dislike", "dislike", "dislike"), make("Click", "click", "click"));
}

function chips(categories) {
  return el("div", { class: "chips" }, ...categories.slice(0, 4).map((name) => el("span", { class: "chip" },
    el("span", { class: "dot", style: `background:${colourOf(name)}` }), name)));
}

// ------------------------------------------------------------------ catalogue
async function loadCatalogue() {
  const params = new URLSearchParams({ offset: state.offset, limit: PAGE_SIZE });
  if (state.query) params.set("query", state.query);
  if (state.category) params.set("category", state.category);
  const page = await getJSON("v1/items?" + params);
  state.total = page.total;
  const grid = $("catalogue-grid");
  grid.replaceChildren(...page.items.map((item) => el("div", {
    class: "card", dataset: { itemId: item.item_id },
  }, el("div", { class: "title", title: item.title }, item.title), chips(item.categories),
  actionButtons(item.item_id, item.title))));
  if (!page.items.length) grid.append(el("p", { class: "muted" }, "Nothing matches."));
  const last = Math.min(state.offset + PAGE_SIZE, page.total);
  $("page-info").textContent = page.total ? `${state.offset + 1}–${last} of ${page.total.toLocaleString()}` : "";
  $("catalogue-count").textContent = `${page.total.toLocaleString()} items`;
  $("prev").disabled = state.offset === 0;
  $("next").disabled = last >= page.total;
  const select = $("category");
  if (select.options.length === 1 && !state.query && !state.category) {
    for (const facet of page.facets) select.append(el("option", { value: facet.name }, `${facet.name} (${facet.count})`));
  }
  renderCatalogueMarks();
}

function renderCatalogueMarks() {
  for (const card of document.querySelectorAll("#catalogue-grid .card")) {
    const mark = state.mine.get(card.dataset.itemId);
    card.classList.toggle("liked", mark === "like");
    card.classList.toggle("disliked", mark === "dislike");
    card.classList.toggle("clicked", mark === "click");
  }
}

// ------------------------------------------------------------------ recommendations
async function loadRecs() {
  const page = await getJSON(`v1/users/${encodeURIComponent(state.user)}/recommendations?k=${RECS_K}`);
  const before = new Set(state.lastRecs);
  const list = $("recs");
  list.replaceChildren(...page.items.map((item, rank) => el("li", {
    class: "card" + (state.lastRecs.length && !before.has(item.item_id) ? " fresh" : ""),
    title: item.explanation, dataset: { itemId: item.item_id, provenance: item.provenance },
  }, el("span", { class: "rank" }, `#${rank + 1}`),
  el("span", { class: `badge ${item.provenance}` }, item.provenance),
  el("div", { class: "title" }, item.title || item.item_id), chips(item.categories || []),
  el("div", { class: "why" }, item.explanation), actionButtons(item.item_id, item.title || item.item_id))));
  state.lastRecs = page.items.map((item) => item.item_id);
  list.dataset.version = page.state_version;
  $("recs-version").textContent = `state v${page.state_version}`;
}

// ------------------------------------------------------------------ map
function colourOf(category) {
  return state.colours.get(category) || OTHER;
}

async function loadMap() {
  const map = await getJSON(`v1/items/map?max_points=${MAP_POINTS}`);
  const counts = new Map();
  for (const c of map.category) if (c) counts.set(c, (counts.get(c) || 0) + 1);
  const top = [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, PALETTE.length);
  state.colours = new Map(top.map(([name], i) => [name, PALETTE[i]]));
  const pad = (lo, hi) => { const m = (hi - lo) * 0.06 || 1; return [lo - m, hi + m]; };
  [map.x0, map.x1] = pad(Math.min(...map.x), Math.max(...map.x));
  [map.y0, map.y1] = pad(Math.min(...map.y), Math.max(...map.y));
  state.map = map;
  $("map-info").textContent =
    `${map.x.length.toLocaleString()} of ${map.n_items.toLocaleString()} items · PCA, ` +
    `${Math.round(100 * (map.explained_variance[0] + map.explained_variance[1]))}% of variance`;
  $("legend").replaceChildren(...top.map(([name]) => el("span", {},
    el("span", { class: "dot", style: `background:${colourOf(name)}` }), name)),
  el("span", {}, el("span", { class: "dot", style: `background:${OTHER}` }), "other"),
  el("span", {}, el("span", { class: "dot", style: "background:#111;border:2px solid #ffd400" }), "you"));
}

function journeyBounds(user) {
  const full = state.map;
  const points = [...state.path, ...((user && user.signals) || []), ...((user && user.interests) || [])];
  if (user && user.position) points.push(user.position);
  if (!state.zoom || !points.length) return full;
  const span = (lo, hi, fullLo, fullHi) => {
    const min = 0.3 * (fullHi - fullLo); const mid = (lo + hi) / 2;
    const half = Math.max((hi - lo) * 1.3, min) / 2;
    return [mid - half, mid + half];
  };
  const xs = points.map((p) => p.x); const ys = points.map((p) => p.y);
  const [x0, x1] = span(Math.min(...xs), Math.max(...xs), full.x0, full.x1);
  const [y0, y1] = span(Math.min(...ys), Math.max(...ys), full.y0, full.y1);
  return { x0, x1, y0, y1 };
}

function toCanvas(x, y, width, height, clamp = true) {
  const m = state.view || state.map;
  let cx = (x - m.x0) / (m.x1 - m.x0);
  let cy = (y - m.y0) / (m.y1 - m.y0);
  if (clamp) { cx = Math.min(Math.max(cx, 0), 1); cy = Math.min(Math.max(cy, 0), 1); }
  return [cx * width, (1 - cy) * height];
}

function drawMap(user) {
  const canvas = $("map");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = Math.round(width * 0.68);
  canvas.width = width * ratio; canvas.height = height * ratio;
  canvas.style.height = height + "px";
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const m = state.map;
  if (!m) return;
  state.view = journeyBounds(user);
  ctx.globalAlpha = 0.55;
  for (let i = m.x.length - 1; i >= 0; i--) {   // most popular drawn last, on top
    const [px, py] = toCanvas(m.x[i], m.y[i], width, height, false);
    if (px < 0 || py < 0 || px > width || py > height) continue;
    ctx.fillStyle = colourOf(m.category[i]);
    ctx.beginPath(); ctx.arc(px, py, state.zoom ? 3.5 : 2.2, 0, 2 * Math.PI); ctx.fill();
  }
  ctx.globalAlpha = 1;
  for (const s of (user && user.signals) || []) {
    const [px, py] = toCanvas(s.x, s.y, width, height);
    ctx.strokeStyle = s.weight >= 0 ? "#1f9d55" : "#d64545";
    ctx.lineWidth = 2;
    ctx.beginPath(); ctx.arc(px, py, 6, 0, 2 * Math.PI); ctx.stroke();
  }
  for (const interest of (user && user.interests) || []) {
    const [px, py] = toCanvas(interest.x, interest.y, width, height);
    ctx.strokeStyle = "#111"; ctx.setLineDash([3, 3]); ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.arc(px, py, 5 + 14 * interest.share, 0, 2 * Math.PI); ctx.stroke();
    ctx.setLineDash([]);
  }
  if (state.path.length > 1) {
    ctx.strokeStyle = "#111"; ctx.lineWidth = 2;
    ctx.beginPath();
    state.path.forEach((p, i) => {
      const [px, py] = toCanvas(p.x, p.y, width, height);
      if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
    });
    ctx.stroke();
    state.path.forEach((p, i) => {
      const [px, py] = toCanvas(p.x, p.y, width, height);
      ctx.fillStyle = "#fff"; ctx.strokeStyle = "#111"; ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.arc(px, py, 4, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
      if (i < state.path.length - 1) { ctx.fillStyle = "#111"; ctx.font = "10px sans-serif"; ctx.fillText(String(i + 1), px + 5, py - 5); }
    });
  }
  canvas.dataset.pathLength = state.path.length;
  const marker = $("user-marker");
  if (user && user.position) {
    const [px, py] = toCanvas(user.position.x, user.position.y, width, height);
    marker.hidden = false;
    marker.style.left = px + "px";
    marker.style.top = py + "px";
    marker.dataset.x = user.position.x;
    marker.dataset.y = user.position.y;
  } else {
    marker.hidden = true;
    delete marker.dataset.x; delete marker.dataset.y;
  }
}

async function loadUserMap() {
  const user = await getJSON(`v1/users/${encodeURIComponent(state.user)}/map`);
  const last = state.path[state.path.length - 1];
  if (user.position && (!last || last.x !== user.position.x || last.y !== user.position.y)) {
    state.path.push({ x: user.position.x, y: user.position.y, v: user.state_version });
    savePath();
  }
  state.userMap = user;
  drawMap(user);
}

function mapHover(event) {
  const m = state.map; const tip = $("map-tip");
  if (!m) return;
  const canvas = $("map"); const rect = canvas.getBoundingClientRect();
  const mx = event.clientX - rect.left; const my = event.clientY - rect.top;
  let best = -1; let bestD = 49;
  for (let i = 0; i < m.x.length; i++) {
    const [px, py] = toCanvas(m.x[i], m.y[i], rect.width, rect.height, false);
    const d = (px - mx) ** 2 + (py - my) ** 2;
    if (d < bestD) { bestD = d; best = i; }
  }
  if (best < 0) { tip.hidden = true; return; }
  tip.hidden = false;
  tip.textContent = `${m.title[best]}${m.category[best] ? " · " + m.category[best] : ""}`;
  tip.style.left = mx + "px"; tip.style.top = my + "px";
}

// ------------------------------------------------------------------ intent
function pct(value) { return `${Math.round(100 * value)}%`; }

async function loadIntent() {
  const intent = await getJSON(`v1/users/${encodeURIComponent(state.user)}/intent`);
  const box = $("intent");
  const facts = el("dl", {},
    el("dt", {}, "Confidence"), el("dd", {}, el("span", { class: "bar", style: `width:${Math.max(2, 120 * intent.confidence)}px` }), pct(intent.confidence)),
    el("dt", {}, "Journey stage"), el("dd", {}, intent.journey_stage),
    el("dt", {}, "Signals"), el("dd", {}, `${intent.n_signals} (${intent.positives} positive)`),
    el("dt", {}, "Drift"), el("dd", {}, `${intent.drift} ${intent.drift > 0.5 ? "(tastes shifting)" : "(steady)"}`));
  const interests = (intent.interests || []).map((interest, i) => el("div", { class: "interest" },
    el("div", { class: "head" }, el("span", { class: "bar", style: `width:${Math.max(2, 80 * interest.share)}px` }),
      `Interest ${i + 1} · ${pct(interest.share)}`),
    chips(interest.categories.map((c) => c.name)),
    interest.items.length ? el("div", { class: "muted" }, "because of: " + interest.items.map((it) => it.title || it.id).join(", ")) : null));
  const signals = (intent.recent_signals || []).slice(0, 6).map((s) => el("li", { class: s.weight >= 0 ? "pos" : "neg" },
    `${s.event_type}: ${s.title || s.id} (${s.weight > 0 ? "+" : ""}${s.weight})`));
  box.replaceChildren(facts,
    interests.length ? el("div", {}, ...interests) : el("p", { class: "muted" }, "No signal yet: you get popular items spread over the catalogue. Like something!"),
    signals.length ? el("div", {}, el("strong", {}, "Recent signals"), el("ol", { class: "signals" }, ...signals)) : null);
  box.dataset.nSignals = intent.n_signals;
}

// ------------------------------------------------------------------ wiring
async function refreshUser() {
  try {
    await Promise.all([loadRecs(), loadIntent(), loadUserMap()]);
    state.refreshes += 1;
    document.body.dataset.refreshes = state.refreshes;
  } catch (error) {
    setStatus(String(error.message || error), true);
  }
}

function wire() {
  $("user-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const user = $("user-id").value.trim();
    if (user) switchUser(user);
  });
  $("new-user").addEventListener("click", () => switchUser(randomUser()));
  let timer = 0;
  const search = () => { state.query = $("query").value.trim(); state.offset = 0; loadCatalogue().catch((e) => setStatus(e.message, true)); };
  $("query").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(search, 250); });
  $("search-form").addEventListener("submit", (event) => { event.preventDefault(); search(); });
  $("category").addEventListener("change", () => { state.category = $("category").value; state.offset = 0; loadCatalogue(); });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); loadCatalogue(); });
  $("next").addEventListener("click", () => { state.offset += PAGE_SIZE; loadCatalogue(); });
  $("zoom").addEventListener("change", () => { state.zoom = $("zoom").checked; drawMap(state.userMap); });
  $("map").addEventListener("mousemove", mapHover);
  $("map").addEventListener("mouseleave", () => { $("map-tip").hidden = true; });
  window.addEventListener("resize", () => drawMap(state.userMap));
}

async function main() {
  wire();
  const requested = new URLSearchParams(location.search).get("user");
  try {
    await loadMap();  // first: the catalogue's category chips use the map's colours
    await loadCatalogue();
    await switchUser(requested || randomUser());
    setStatus("Ready: like, dislike or click anything and watch the recommendations and the map move.");
    document.body.dataset.ready = "1";
  } catch (error) {
    setStatus(String(error.message || error), true);
  }
}

main();
