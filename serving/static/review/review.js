// striketracker review page: map of dated buildings, flagged list, evidence of one building, verdict form.
// Plain browser JavaScript against the service's own /api; no network access beyond this origin.
"use strict";

const TOKEN_KEY = "striketracker-api-token";
const RAMP = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"]; // viridis stops, early -> late
const NOT_DAMAGED = "#b8bec6";
const FLAG_ORDER = { contested: 0, model_conflict: 1, low_reliability: 2 };
const FLAG_LABEL = { contested: "contested", model_conflict: "model conflict", low_reliability: "low reliability" };

const state = {
  features: new Map(), // building id -> GeoJSON feature
  markers: new Map(), // building id -> Leaflet circle marker
  range: null, // [first date, last date] of every timeline, as Date
  map: null,
  coordinates: "lonlat",
  selected: null,
  detail: null,
  queue: [],
};

// ---------------------------------------------------------------- helpers
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) if (child) node.append(child);
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  let body = null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) body = await response.json();
  return { status: response.status, body };
}

const day = (iso) => (iso ? new Date(iso + "T00:00:00Z") : null);
const fmt = (iso) => iso || "—";

function mix(a, b, f) {
  const pa = [1, 3, 5].map((i) => parseInt(a.slice(i, i + 2), 16));
  const pb = [1, 3, 5].map((i) => parseInt(b.slice(i, i + 2), 16));
  return "#" + pa.map((v, i) => Math.round(v + (pb[i] - v) * f).toString(16).padStart(2, "0")).join("");
}

function ramp(f) {
  const x = Math.min(Math.max(f, 0), 1) * (RAMP.length - 1);
  const i = Math.min(Math.floor(x), RAMP.length - 2);
  return mix(RAMP[i], RAMP[i + 1], x - i);
}

// Colour of a building: the middle of its most probable destruction interval on the campaign's date range.
function colour(p) {
  if (p.map_gap === p.n_gaps - 1) return NOT_DAMAGED;
  const lo = day(p.last_intact_date) || state.range[0];
  const hi = day(p.first_damaged_date) || state.range[1];
  const mid = (lo.getTime() + hi.getTime()) / 2;
  const span = state.range[1] - state.range[0] || 1;
  return ramp((mid - state.range[0]) / span);
}

function gapLabel(gap, dates) {
  const t = dates.length;
  if (gap === 0) return `already damaged on the first image (${dates[0]})`;
  if (gap === t) return `not damaged by the last image (${dates[t - 1]})`;
  return `destroyed between ${dates[gap - 1]} and ${dates[gap]}`;
}

function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

// ---------------------------------------------------------------- data
async function loadBuildings() {
  const { body } = await api("/api/buildings?geometry=point");
  state.coordinates = body.coordinates;
  document.getElementById("coord-note").textContent = body.note || "";
  state.features = new Map(body.features.map((f) => [f.id, f]));
  const dates = [];
  for (const f of body.features) {
    for (const key of ["last_intact_date", "first_damaged_date", "earliest_date", "latest_date"]) {
      if (f.properties[key]) dates.push(day(f.properties[key]).getTime());
    }
  }
  state.range = dates.length ? [new Date(Math.min(...dates)), new Date(Math.max(...dates))] : [new Date(0), new Date(1)];
}

async function loadCounts() {
  const { body } = await api("/api/campaign");
  const counts = document.getElementById("counts");
  counts.replaceChildren(
    el("span", {}, el("b", { text: String(body.buildings) }), " dated buildings · "),
    el("span", {}, el("b", { text: String(body.settled) }), " settled · "),
    el("span", {}, el("b", { text: String(body.contested) }), " contested · "),
    el("span", {}, el("b", { text: String(body.flagged) }), " flagged · "),
    el("span", {}, el("b", { text: String(body.expert_verdicts) }), " verdicts · "),
    el("span", {}, el("b", { text: String(body.annotations_spent) }), " volunteer reviews"),
  );
}

async function loadQueue() {
  const { body } = await api("/api/queue?kind=review&limit=2000");
  state.queue = body.items;
  renderQueue();
}

// ---------------------------------------------------------------- map
function drawMap() {
  const plain = state.coordinates !== "lonlat";
  if (!state.map) {
    state.map = L.map("map", {
      preferCanvas: true,
      attributionControl: false,
      zoomSnap: 0.25,
      crs: plain ? L.CRS.Simple : L.CRS.EPSG3857,
      minZoom: plain ? -10 : 1,
    });
    if (!plain) L.control.scale({ imperial: false }).addTo(state.map);
  }
  for (const marker of state.markers.values()) marker.remove();
  state.markers.clear();
  const points = [];
  for (const [id, f] of state.features) {
    if (!f.geometry) continue;
    const [x, y] = f.geometry.coordinates;
    const at = [y, x];
    points.push(at);
    const p = f.properties;
    const flagged = p.flags.length > 0 && p.status !== "expert";
    const marker = L.circleMarker(at, {
      radius: flagged ? 7 : 5,
      color: flagged ? "#d7263d" : p.status === "expert" ? "#116329" : "#ffffff",
      weight: flagged ? 2.5 : 1,
      fillColor: colour(p),
      fillOpacity: 0.95,
    });
    marker.bindTooltip(`${id} · ${p.status}${p.flags.length ? " · " + p.flags.join(", ") : ""}<br>${
      p.map_gap === p.n_gaps - 1 ? "not damaged" : `${fmt(p.last_intact_date)} → ${fmt(p.first_damaged_date)}`
    }`);
    marker.on("click", () => select(id));
    marker.addTo(state.map);
    state.markers.set(id, marker);
  }
  if (points.length && !state.fitted) {
    state.map.fitBounds(L.latLngBounds(points).pad(0.08));
    state.fitted = true;
  }
  highlight();
  drawLegend();
}

function drawLegend() {
  const stops = RAMP.map((c, i) => `${c} ${(100 * i) / (RAMP.length - 1)}%`).join(", ");
  const iso = (d) => d.toISOString().slice(0, 10);
  document.getElementById("legend").replaceChildren(
    el("span", { text: iso(state.range[0]) }),
    el("span", { class: "ramp", style: `background: linear-gradient(to right, ${stops})` }),
    el("span", { text: iso(state.range[1]) }),
    el("span", {}, el("span", { class: "dot", style: `background:${NOT_DAMAGED}` }), "not damaged"),
    el("span", {}, el("span", { class: "dot", style: "border:2.5px solid #d7263d" }), "flagged"),
    el("span", {}, el("span", { class: "dot", style: "border:2px solid #116329" }), "researcher verdict"),
  );
}

function highlight() {
  for (const [id, marker] of state.markers) {
    if (id === state.selected) {
      marker.setStyle({ color: "#000000", weight: 3 });
      marker.bringToFront();
    }
  }
}

// ---------------------------------------------------------------- destruction timeline
async function drawTimeline() {
  const { body } = await api("/api/timeline");
  const box = document.getElementById("timeline");
  const W = 640, H = 190, left = 34, right = 8, top = 10, bottom = 34;
  const weeks = body.weeks;
  const plot = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" });
  if (!weeks.length) {
    box.replaceChildren(el("p", { class: "hint", text: "no dated building yet" }));
    return;
  }
  const ymax = Math.max(1, ...weeks.map((w) => w.hi), ...weeks.map((w) => w.expected));
  const bw = (W - left - right) / weeks.length;
  const y = (v) => top + (H - top - bottom) * (1 - v / ymax);
  const band = weeks.map((w, i) => `${left + bw * (i + 0.5)},${y(w.hi)}`)
    .concat(weeks.slice().reverse().map((w, j) => `${left + bw * (weeks.length - j - 0.5)},${y(w.lo)}`));
  plot.append(svg("polygon", { points: band.join(" "), fill: "#1f6feb", "fill-opacity": "0.18" }));
  weeks.forEach((w, i) => {
    plot.append(svg("rect", {
      x: left + bw * i + 0.5, y: y(w.expected), width: Math.max(bw - 1, 0.5), height: H - bottom - y(w.expected),
      fill: "#1f6feb",
    }, svg("title", {}, document.createTextNode(`week of ${w.week_start}: ${w.expected.toFixed(1)} (90%: ${w.lo}–${w.hi})`))));
  });
  for (const v of [0, ymax / 2, ymax]) {
    plot.append(svg("text", { x: left - 4, y: y(v) + 4, "text-anchor": "end", "font-size": 10, fill: "#5d6873" },
      document.createTextNode(v.toFixed(v < 10 ? 1 : 0))));
  }
  let month = "";
  let last = -99;
  weeks.forEach((w, i) => {
    const m = w.week_start.slice(0, 7);
    if (m === month) return;
    month = m;
    if (i - last < 3) return; // too close to the previous label
    last = i;
    plot.append(svg("line", { x1: left + bw * i, x2: left + bw * i, y1: H - bottom, y2: H - bottom + 4, stroke: "#5d6873" }));
    plot.append(svg("text", { x: left + bw * i + 2, y: H - bottom + 14, "font-size": 10, fill: "#5d6873" },
      document.createTextNode(m)));
  });
  plot.append(svg("text", { x: left, y: H - 4, "font-size": 10, fill: "#5d6873" }, document.createTextNode(
    `${body.buildings} buildings · already damaged on the first image: ${body.before_first_image.toFixed(0)} · ` +
    `not damaged by the last: ${body.not_damaged.toFixed(0)}`)));
  box.replaceChildren(plot);
}

// ---------------------------------------------------------------- flagged list
function activeFlags() {
  return new Set([...document.querySelectorAll(".filters input:checked")].map((i) => i.value));
}

function renderQueue() {
  const flags = activeFlags();
  const list = document.getElementById("flagged");
  const items = state.queue.filter((q) => q.flags.some((f) => flags.has(f)));
  list.replaceChildren(...items.map((q) => {
    const li = el("li", { "data-building": q.building_id, onclick: () => select(q.building_id) },
      el("span", { class: "id", text: q.building_id }),
      el("span", {}, ...q.flags.sort((a, b) => FLAG_ORDER[a] - FLAG_ORDER[b])
        .map((f) => el("span", { class: "flag", text: FLAG_LABEL[f] || f }))),
      el("span", { class: "why", text: `${q.reviews} reviews · MAP mass ${q.confidence.toFixed(2)}` }));
    if (q.building_id === state.selected) li.classList.add("selected");
    return li;
  }));
  if (!items.length) list.append(el("li", { class: "why", text: "nothing flagged: every building is settled or judged" }));
}

// ---------------------------------------------------------------- one building
async function select(id) {
  state.selected = id;
  const { status, body } = await api(`/api/buildings/${encodeURIComponent(id)}`);
  if (status !== 200) return;
  state.detail = body;
  renderQueue();
  drawMap();
  const f = state.features.get(id);
  if (f && f.geometry && state.map) {
    const [x, y] = f.geometry.coordinates;
    state.map.panTo([y, x]);
  }
  renderDetail();
}

function renderDetail() {
  const d = state.detail;
  const box = document.getElementById("detail");
  box.hidden = false;
  const p = d.properties;
  const post = d.posterior;
  const head = document.getElementById("detail-head");
  const summary = post
    ? `${gapLabel(post.map_gap, d.dates)} · probability ${post.confidence.toFixed(2)} · ${post.n_reviews} independent reviews · ` +
      `model ${post.model_version || "none (crowd only)"} · posterior v${post.version}`
    : "no posterior yet";
  head.replaceChildren(
    el("span", { class: "bid", text: d.building_id }),
    el("span", { class: `badge ${post ? post.status : ""}`, id: "detail-status", text: post ? post.status : "no posterior" }),
    ...(p ? p.flags.filter((f) => f !== p.status).map((f) => el("span", { class: "flag", text: FLAG_LABEL[f] || f })) : []),
    el("div", { class: "summary", text: summary }),
  );
  renderChips(d);
  renderPosterior(d);
  renderAnswers(d);
  const decisions = document.getElementById("decisions");
  decisions.replaceChildren(...d.decisions.slice().reverse().slice(0, 6).map((x) =>
    el("li", { text: `${x.decided_at.slice(0, 16).replace("T", " ")} · ${x.status}: ${x.reason}` })));
  const select = document.getElementById("verdict-gap");
  select.replaceChildren(...Array.from({ length: d.dates.length + 1 }, (_, g) =>
    el("option", { value: String(g), text: gapLabel(g, d.dates) })));
  if (post) select.value = String(post.map_gap);
  document.getElementById("verdict-result").textContent = "";
}

function renderChips(d) {
  const box = document.getElementById("chips");
  const gap = d.posterior ? d.posterior.map_gap : -1;
  const parts = [];
  d.chips.forEach((c, t) => {
    if (t === gap) parts.push(el("div", { class: "boundary", title: "most probable destruction" }));
    parts.push(el("figure", {},
      el("img", { src: c.url, alt: `${d.building_id} on ${c.date}`,
        title: `${c.date} · image sha256 ${c.image_sha256 || "unknown"} · valid ${Math.round(100 * c.valid_fraction)}%` }),
      el("figcaption", { text: c.date })));
  });
  if (gap === d.chips.length) parts.push(el("div", { class: "boundary", title: "not damaged" }));
  if (!d.chips.length) parts.push(el("p", { class: "hint", text: "no chips for this building in the chip cache" }));
  box.replaceChildren(...parts);
}

function renderPosterior(d) {
  const box = document.getElementById("posterior");
  if (!d.posterior) {
    box.replaceChildren(el("p", { class: "hint", text: "no posterior" }));
    return;
  }
  const gaps = d.posterior.gaps;
  const W = 640, H = 150, top = 8, bottom = 40, left = 4;
  const bw = (W - 2 * left) / gaps.length;
  const plot = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" });
  gaps.forEach((g, i) => {
    const h = (H - top - bottom) * g.probability;
    const map = g.gap === d.posterior.map_gap;
    plot.append(svg("rect", {
      x: left + bw * i + 2, y: H - bottom - h, width: bw - 4, height: Math.max(h, 0.5),
      fill: map ? "#b3261e" : "#8c959f",
    }, svg("title", {}, document.createTextNode(`${gapLabel(g.gap, d.dates)}: ${g.probability.toFixed(3)}`))));
    const label = g.gap === 0 ? `< ${d.dates[0].slice(5)}` : g.gap === d.dates.length ? "never" : `≤ ${g.first_damaged_date.slice(5)}`;
    plot.append(svg("text", { x: left + bw * (i + 0.5), y: H - bottom + 13, "font-size": 9, "text-anchor": "middle", fill: "#5d6873" },
      document.createTextNode(label)));
    if (g.probability >= 0.02) {
      plot.append(svg("text", { x: left + bw * (i + 0.5), y: H - bottom - h - 2, "font-size": 9, "text-anchor": "middle", fill: "#1d232a" },
        document.createTextNode(g.probability.toFixed(2))));
    }
  });
  plot.append(svg("text", { x: left, y: H - 6, "font-size": 10, fill: "#5d6873" }, document.createTextNode(
    "each bar: probability the building was destroyed after the previous image and by the labelled date")));
  const note = document.getElementById("posterior-note");
  note.textContent = `from ${(d.posterior.aggregator || "").split("(")[0] || "the store"}, ${d.posterior.created_at.slice(0, 16).replace("T", " ")}`;
  note.title = d.posterior.aggregator || "";
  box.replaceChildren(plot);
}

function renderAnswers(d) {
  const box = document.getElementById("answers");
  if (!d.annotations.length) {
    box.replaceChildren(el("p", { class: "hint", text: "no human review yet (model-only estimate)" }));
    return;
  }
  const head = el("thead", {}, el("tr", {}, el("th", { text: "" }), ...d.dates.map((x) => el("th", { text: x, title: x })), el("th", { text: "" })));
  const rows = d.annotations.map((a) => {
    const cls = [a.retracted ? "retracted" : "", a.source === "expert" ? "expert" : ""].join(" ");
    const agree = a.agrees_with_map === null ? "" : a.agrees_with_map ? "agrees with MAP" : "disagrees";
    return el("tr", { class: cls, title: `${a.external_id}${a.retracted ? " (retracted: " + a.retracted_reason + ")" : ""}` },
      el("th", { text: `${a.volunteer_id} (${a.source})` }),
      ...a.states.map((s, t) => el("td", { class: `cell ${s}`, title: `${d.dates[t]}: ${s}` })),
      el("th", { text: agree }));
  });
  const key = el("div", { class: "key hint" },
    ...["intact", "damaged", "destroyed", "not_visible"].map((s) =>
      el("span", {}, el("span", { class: "sw", style: `background: var(--${s === "not_visible" ? "hidden" : s})` }), s.replace("_", " "))));
  box.replaceChildren(el("table", {}, head, el("tbody", {}, ...rows)), key);
}

// ---------------------------------------------------------------- verdict
async function submitVerdict(event) {
  event.preventDefault();
  const out = document.getElementById("verdict-result");
  const d = state.detail;
  if (!d) return;
  if (!token()) {
    out.className = "error";
    out.textContent = "Paste the API token at the top first (it is in <work dir>/secrets/api_token).";
    return;
  }
  const body = {
    gap: Number(document.getElementById("verdict-gap").value),
    grade: document.getElementById("verdict-grade").value,
    reviewer: document.getElementById("verdict-reviewer").value || "researcher",
    note: document.getElementById("verdict-note").value,
  };
  if (body.gap === d.dates.length) delete body.grade;
  out.className = "";
  out.textContent = "storing…";
  const { status, body: answer } = await api(`/api/buildings/${encodeURIComponent(d.building_id)}/verdict`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token()}` },
    body: JSON.stringify(body),
  });
  if (status === 201) {
    out.className = "ok";
    out.textContent = `Stored as ${answer.external_id}: status ${answer.status}, ${gapLabel(answer.map_gap, d.dates)}.`;
    await Promise.all([loadBuildings(), loadQueue(), loadCounts(), drawTimeline()]);
    const message = out.textContent;
    await select(d.building_id);
    out.className = "ok";
    out.textContent = message;
  } else if (status === 401) {
    out.className = "error";
    out.textContent = "The service refused the token; paste the one from <work dir>/secrets/api_token.";
  } else {
    out.className = "error";
    const detail = answer && answer.detail;
    out.textContent = Array.isArray(detail) ? detail.map((x) => `${x.loc.join(".")}: ${x.msg}`).join("; ") : `refused (${status}): ${detail}`;
  }
}

// ---------------------------------------------------------------- start
function initToken() {
  const input = document.getElementById("token");
  const shown = document.getElementById("token-state");
  shown.textContent = token() ? "kept" : "";
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    shown.textContent = token() ? "kept" : "";
  });
}

async function start() {
  initToken();
  document.getElementById("verdict-form").addEventListener("submit", submitVerdict);
  for (const box of document.querySelectorAll(".filters input")) box.addEventListener("change", renderQueue);
  await loadBuildings();
  drawMap();
  await Promise.all([loadQueue(), loadCounts(), drawTimeline()]);
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", start);
