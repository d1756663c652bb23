// viscurate web app: a thin face over the /v1 REST API. No framework, no build step, no CDN.
"use strict";

const PAGE = 25;                       // the API's page size
const WEB_SEARCH = "https://www.google.com/search?q=";  // where a click on a box looks its class up
const COLORS = ["#4fb3ff", "#ffb347", "#5dd39e", "#ff6b6b", "#c792ea", "#f78c6c", "#89ddff", "#ffcb6b",
                "#a3d977", "#ff79c6", "#82aaff", "#f07178"];
const SKELETON = [[5, 7], [7, 9], [6, 8], [8, 10], [5, 6], [5, 11], [6, 12], [11, 12], [11, 13], [13, 15],
                  [12, 14], [14, 16], [0, 1], [0, 2], [1, 3], [2, 4]];

const $ = (id) => document.getElementById(id);
/** "1 sample", "2,345 samples" */
const samplesText = (n) => `${Number(n).toLocaleString()} sample${Number(n) === 1 ? "" : "s"}`;
const el = (tag, props = {}, ...kids) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const kid of kids) if (kid != null) node.append(kid);
  return node;
};
const svg = (tag, attrs = {}) => {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
};
const colorOf = (name) => {
  let h = 0;
  for (const c of String(name)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return COLORS[h % COLORS.length];
};

// ---- state -------------------------------------------------------------------------------------

const state = {
  dataset: null,
  userQuery: {},          // what the query bar holds
  filters: {},            // quick filters: {class, issue, split, tag, slice, width, lqe}
  lasso: null,            // ids selected on the map, or null
  sort: null,
  length: 0,
  pages: new Map(),       // page number -> results (the grid's cache, dropped on every new query)
  loading: new Set(),
  cursor: 0,              // the grid's keyboard cursor
  detailIndex: null,      // position of the open sample in the current results
  detailDoc: null,
  editing: false,
  selectedBox: null,
  labels: [],             // the open sample's box labels, placed once the picture has its size
  generation: 0,          // bumped on each new query, so late answers to old ones are dropped
  marks: new Map(),       // autotag examples: id -> "pos" | "neg"
};

// ---- the API -----------------------------------------------------------------------------------

async function api(path, options = {}) {
  // X-Viscurate: a header a page of another origin cannot send without a CORS preflight, which the
  // server never approves; with the browser's Origin, it tells the server this request is the app's own
  const headers = {"Content-Type": "application/json", "X-Viscurate": "1"};
  const user = localStorage.getItem("viscurate-user");
  if (user) headers["X-Viscurate-User"] = user;
  const response = await fetch(path, {...options, headers: {...headers, ...(options.headers || {})}});
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) {
    const message = body?.error ? body.error + (body.details ? ": " + body.details.join("; ") : "") : response.statusText;
    throw new Error(message);
  }
  return body;
}
const ds = (path = "") => `/v1/datasets/${encodeURIComponent(state.dataset)}${path}`;
const thumb = (id, size = 256) => ds(`/samples/${encodeURIComponent(id)}/thumbnail?size=${size}`);

function showWarnings(warnings) {
  // what the server noticed about a query that still ran (a field no sample has, with a suggestion)
  const line = $("warnings");
  line.textContent = warnings?.length ? "⚠ " + warnings.join(" · ") : "";
  line.hidden = !warnings?.length;
}

function showError(e) {
  const box = $("error");
  if (!e) { box.hidden = true; return; }
  box.textContent = String(e.message || e);
  box.hidden = false;
}

// ---- the query ---------------------------------------------------------------------------------

function composedQuery() {
  const parts = [];
  if (Object.keys(state.userQuery).length) parts.push(state.userQuery);
  const f = state.filters;
  if (f.class) parts.push({"object_analysis.name": f.class});
  if (f.issue) parts.push(f.issue === "(any)" ? {"issues.0": {"$exists": true}} : {"issues": f.issue});
  if (f.split) parts.push({"split": f.split});
  if (f.tag) parts.push({"tags": f.tag});
  if (f.slice) parts.push({"slices": f.slice});
  if (f.width > 0) parts.push({"width": {"$gte": f.width}});
  if (f.lqe < 1) parts.push({"label_quality_estimation": {"$lte": f.lqe}});
  if (state.lasso) parts.push({"_id": {"$in": state.lasso}});
  if (parts.length === 0) return {};
  return parts.length === 1 ? parts[0] : {"$and": parts};
}

function renderChips() {
  const chips = $("chips");
  chips.replaceChildren();
  const add = (label, clear) => chips.append(el("span", {class: "chip"}, label,
    el("button", {title: "remove", "aria-label": "remove " + label, onclick: clear}, "×")));
  if (state.lasso) add(`map selection: ${state.lasso.length}`, () => { state.lasso = null; refresh(); });
}

async function refresh() {
  state.generation += 1;
  state.pages = new Map();
  state.loading = new Set();
  state.cursor = 0;
  renderChips();
  saveHash();
  try {
    const page = await fetchPage(1);
    if (page === null) return;
    showError(null);
  } catch (e) {
    showError(e);
    showWarnings(null);
    state.length = 0;
  }
  $("grid").scrollTop = 0;
  renderGrid();
  if (!$("tab-review").hidden) loadReview();
}

async function fetchPage(n) {
  const generation = state.generation;
  state.loading.add(n);
  try {
    const body = {q: composedQuery(), page: n};
    if (state.sort) body.sort = state.sort;
    const out = await api(ds("/search"), {method: "POST", body: JSON.stringify(body)});
    if (generation !== state.generation) return null;
    state.length = out.length;
    state.pages.set(n, out.results);
    if (n === 1) showWarnings(out.warnings);
    $("count").textContent = samplesText(out.length);
    return out.results;
  } finally {
    if (generation === state.generation) state.loading.delete(n);
  }
}

function docAt(i) {
  const page = state.pages.get(Math.floor(i / PAGE) + 1);
  return page ? page[i % PAGE] : undefined;
}

// ---- the grid (virtualized: only the visible rows exist in the page) ----------------------------

function gridGeometry() {
  const grid = $("grid");
  const cell = parseInt(getComputedStyle(document.documentElement).getPropertyValue("--cell"), 10) || 176;
  const cols = Math.max(1, Math.floor((grid.clientWidth - 24) / cell));
  return {grid, cell, cols, rows: Math.ceil(state.length / cols)};
}

let renderQueued = false;
function renderGrid() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; drawGrid(); });
}

function drawGrid() {
  const {grid, cell, cols, rows} = gridGeometry();
  const space = $("grid-space");
  space.style.height = `${rows * cell}px`;
  const first = Math.max(0, Math.floor(grid.scrollTop / cell) - 2);
  const last = Math.min(rows, Math.ceil((grid.scrollTop + grid.clientHeight) / cell) + 2);
  const wanted = new Map();
  for (let r = first; r < last; r++) {
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      if (i >= state.length) break;
      wanted.set(i, [r, c]);
    }
  }
  const missing = new Set();
  for (const i of wanted.keys()) {
    const n = Math.floor(i / PAGE) + 1;
    if (!state.pages.has(n) && !state.loading.has(n)) missing.add(n);
  }
  for (const n of missing) fetchPage(n).then((r) => { if (r) renderGrid(); }).catch(showError);
  const existing = new Map([...space.children].map((node) => [Number(node.dataset.index), node]));
  for (const [i, node] of existing) if (!wanted.has(i)) node.remove();
  for (const [i, [r, c]] of wanted) {
    const doc = docAt(i);
    let node = existing.get(i);
    if (node && node.dataset.id !== (doc?._id ?? "")) { node.remove(); node = null; }
    if (!node) {
      node = cellFor(i, doc);
      space.append(node);
    }
    node.style.transform = `translate(${c * cell}px, ${r * cell}px)`;
    node.classList.toggle("cursor", i === state.cursor);
  }
}

function fileName(doc) {
  const path = doc.filepath || doc.url || doc.origin || "";
  return String(path).split(/[\\/]/).pop() || doc._id;
}

function nameLine(name) {
  // a long name is cut in its middle: its end (a number, the extension) is what tells files apart
  const cut = name.length > 14 ? name.length - 10 : 0;
  return el("div", {class: "name", title: name},
    el("span", {class: "head", text: name.slice(0, cut)}), el("span", {class: "tail", text: name.slice(cut)}));
}

function failureOf(doc) {
  // ingest flags an undecodable file "corrupt" followed by the reason (truncated, not_an_image, ...)
  const issues = doc.issues || [];
  const at = issues.indexOf("corrupt");
  if (at < 0) return null;
  return issues[at + 1] || String(doc.error || "").split(":")[0] || "unreadable";
}

function placeholder(text) {
  return el("div", {class: "placeholder", role: "img", "aria-label": text}, el("span", {text}));
}

function cellFor(i, doc) {
  if (!doc) return el("div", {class: "cell loading", "data-index": i, "data-id": ""});
  const names = [...new Set((doc.object_analysis || []).map((o) => o.name))];
  const issues = doc.issues || [];
  const failure = failureOf(doc);
  let picture;
  if (failure) {
    picture = placeholder(`corrupt: ${failure}`);
  } else {
    picture = el("img", {src: thumb(doc._id), loading: "lazy", alt: "", draggable: "false"});
    picture.addEventListener("error", () => picture.replaceWith(placeholder("no preview: file missing or unreadable")));
  }
  const node = el("div", {class: "cell" + markClass(doc._id), "data-index": i, "data-id": doc._id, role: "button",
                          "aria-label": `sample ${fileName(doc)}`, title: doc.filepath || doc._id},
    picture,
    nameLine(fileName(doc)),
    el("div", {class: "caption", text: names.length ? names.join(", ") : `${doc.width ?? "?"}×${doc.height ?? "?"}`}),
    issues.length ? el("span", {class: "badge", text: issues.join(" ")}) : null,
    markButtons(doc._id));
  node.addEventListener("click", () => { state.cursor = i; openDetail(i); });
  return node;
}

function moveCursor(delta) {
  const {grid, cell, cols} = gridGeometry();
  const step = {left: -1, right: 1, up: -cols, down: cols}[delta];
  state.cursor = Math.min(Math.max(0, state.cursor + step), Math.max(0, state.length - 1));
  const row = Math.floor(state.cursor / cols);
  if (row * cell < grid.scrollTop) grid.scrollTop = row * cell;
  else if ((row + 1) * cell > grid.scrollTop + grid.clientHeight) grid.scrollTop = (row + 1) * cell - grid.clientHeight;
  renderGrid();
}

// ---- the detail panel --------------------------------------------------------------------------

async function docAtLoaded(i) {
  let doc = docAt(i);
  if (!doc) {
    await fetchPage(Math.floor(i / PAGE) + 1);
    doc = docAt(i);
  }
  return doc;
}

async function openDetail(i) {
  if (i < 0 || i >= state.length) return;
  const doc = await docAtLoaded(i);
  if (!doc) return;
  state.detailIndex = i;
  await showSample(doc._id);
}

async function showSample(id) {
  let doc;
  try { doc = await api(ds(`/samples/${encodeURIComponent(id)}`)); } catch (e) { showError(e); return; }
  state.detailDoc = doc;
  state.selectedBox = null;
  $("detail").hidden = false;
  const image = $("d-image");
  image.onload = () => placeOverlay();
  image.src = ds(`/samples/${encodeURIComponent(doc._id)}/media`);
  drawOverlay();
  drawHistogram(doc.histogram);
  drawSummary(doc);
  drawFields(doc);
  $("d-reviewed").textContent = (doc.tags || []).includes("reviewed") ? "Unmark reviewed" : "Mark reviewed";
  loadSampleEdits(doc._id);
  loadSimilar(doc._id);
}

function placeOverlay() {
  // fit the picture to the stage, small ones scaled up too, and lay the boxes' SVG exactly over it
  const image = $("d-image");
  const overlay = $("overlay");
  const stage = $("stage");
  if (image.naturalWidth) {
    const scale = Math.min(stage.clientWidth / image.naturalWidth, stage.clientHeight / image.naturalHeight);
    image.style.width = `${Math.floor(image.naturalWidth * scale)}px`;
    image.style.height = `${Math.floor(image.naturalHeight * scale)}px`;
  }
  overlay.style.left = `${image.offsetLeft}px`;
  overlay.style.top = `${image.offsetTop}px`;
  overlay.style.width = `${image.clientWidth}px`;
  overlay.style.height = `${image.clientHeight}px`;
  layoutLabels();  // label sizes are in screen pixels: they depend on how large the picture is shown
}
window.addEventListener("resize", () => { if (!$("detail").hidden) placeOverlay(); renderGrid(); });

const TRUTH = "ground_truth.detections";
const MODEL_FIELDS = ["object_analysis", "predictions"];

function labelText(box, field) {
  let text = String(box.name ?? "?");
  if (box.confidence != null) text += ` ${(box.confidence * 100).toFixed(0)}%`;
  if (box.label_quality_estimation != null) text += ` · q ${box.label_quality_estimation.toFixed(2)}`;
  if (field === TRUTH) text += " · truth";
  if (box.review) text += ` · ${box.review}`;
  return text;
}

function drawOverlay() {
  const doc = state.detailDoc;
  const overlay = $("overlay");
  overlay.replaceChildren();
  overlay.setAttribute("viewBox", `0 0 ${doc.width || 1} ${doc.height || 1}`);
  overlay.setAttribute("preserveAspectRatio", "none");
  const layers = [];
  // while editing, the model's boxes are there to be reviewed, and the ground truth to be edited
  if ($("layer-objects").checked || state.editing) layers.push(["object_analysis", doc.object_analysis || [], " auto"]);
  if ($("layer-truth").checked || state.editing) layers.push([TRUTH, doc.ground_truth?.detections || [], " truth"]);
  state.labels = [];
  const rects = [];
  for (const [field, boxes, kind] of layers) {
    boxes.forEach((box, index) => {
      if (!Array.isArray(box.bbox)) return;
      const [x, y, w, h] = box.bbox;
      const color = colorOf(box.name);
      const selected = state.selectedBox && state.selectedBox.field === field && state.selectedBox.index === index;
      const review = box.review ? ` review-${box.review === "rejected" ? "rejected" : "accepted"}` : "";
      const rect = svg("rect", {x, y, width: w, height: h, class: `box${kind}${review}${selected ? " selected" : ""}`, stroke: color,
                                "data-name": box.name, "data-field": field, "data-index": index, tabindex: 0,
                                role: "link", "aria-label": `${box.name} box`});
      const title = svg("title");
      title.textContent = state.editing ? `${labelText(box, field)}: click to select` + (field === TRUTH ? "" : ", drag to move")
                                        : `${labelText(box, field)}: click to search the web for "${box.name}"`;
      rect.append(title);
      rect.addEventListener("click", (event) => { event.stopPropagation(); clickBox(field, index, box); });
      rects.push([w * h, rect]);
      state.labels.push({field, index, box, bbox: box.bbox, color, text: labelText(box, field),
                         rank: box.review === "rejected" ? -1 : box.confidence ?? 1});
    });
  }
  // small boxes over large ones, so that each can be clicked; the most confident labels get the best places
  rects.sort((a, b) => b[0] - a[0]);
  overlay.append(...rects.map(([, rect]) => rect));
  state.labels.sort((a, b) => b.rank - a.rank);
  if ($("layer-faces").checked && !state.editing) {
    for (const face of doc.face_analysis || []) {
      if (!Array.isArray(face.bbox)) continue;
      const [x, y, w, h] = face.bbox;
      overlay.append(svg("rect", {x, y, width: w, height: h, class: "face"}));
    }
  }
  if ($("layer-poses").checked && !state.editing) {
    for (const pose of doc.pose_estimation || []) {
      const kps = pose.keypoints || [];
      const point = (k) => (Array.isArray(kps[k]) ? kps[k] : kps[k] && [kps[k].x, kps[k].y, kps[k].score ?? kps[k].confidence]);
      for (const [a, b] of SKELETON) {
        const p = point(a), q = point(b);
        if (p && q && (p[2] ?? 1) > 0.2 && (q[2] ?? 1) > 0.2) overlay.append(svg("line", {x1: p[0], y1: p[1], x2: q[0], y2: q[1], class: "limb"}));
      }
      kps.forEach((_, k) => {
        const p = point(k);
        if (p && (p[2] ?? 1) > 0.2) overlay.append(svg("circle", {cx: p[0], cy: p[1], r: Math.max(2, (doc.width || 400) / 200), class: "kp"}));
      });
    }
  }
  layoutLabels();
}

// ---- box labels: each placed where it hides no other label --------------------------------------

const LABEL_FONT = 12;   // screen pixels, whatever the picture's size

function layoutLabels() {
  const overlay = $("overlay");
  const doc = state.detailDoc;
  overlay.querySelector("g.labels")?.remove();
  const shown = overlay.getBoundingClientRect().width;
  if (!doc || !shown || !state.labels.length) return;
  const W = doc.width || 1, H = doc.height || 1;
  const unit = W / shown;  // image pixels per screen pixel: the SVG is in image pixels
  const font = LABEL_FONT * unit, pad = 3 * unit, height = font + 5 * unit, gap = unit;
  const group = svg("g", {class: "labels"});
  overlay.append(group);
  const placed = [];
  let hidden = 0;
  for (const item of state.labels) {
    const node = svg("g", {class: "label", "data-field": item.field, "data-index": item.index});
    // a label never hides another, so it is the sure way to pick one of two boxes drawn on top of each other
    node.addEventListener("click", (event) => { event.stopPropagation(); clickBox(item.field, item.index, item.box); });
    const back = svg("rect", {class: "label-back", stroke: item.color, "stroke-width": unit});
    const text = svg("text", {"font-size": font, "dominant-baseline": "central"});
    text.textContent = item.text;
    node.append(back, text);
    group.append(node);
    const width = text.getComputedTextLength() + 2 * pad;
    const spot = findLabelSpot(item.bbox, width, height, W, H, placed, gap);
    if (!spot) { node.remove(); hidden += 1; continue; }  // only when the picture has no room left at all
    placed.push(spot);
    for (const [k, v] of Object.entries({x: spot.x, y: spot.y, width: spot.w, height: spot.h})) back.setAttribute(k, v);
    text.setAttribute("x", spot.x + pad);
    text.setAttribute("y", spot.y + height / 2);
    const [bx, by, bw, bh] = item.bbox;
    const cx = spot.x + spot.w / 2, cy = spot.y + spot.h / 2;
    const nx = Math.min(Math.max(cx, bx), bx + bw), ny = Math.min(Math.max(cy, by), by + bh);
    if (Math.hypot(cx - nx, cy - ny) > spot.h + spot.w / 2) {  // pushed away from its box: a leader line
      node.prepend(svg("line", {x1: cx, y1: cy, x2: nx, y2: ny, class: "leader", stroke: item.color}));
    }
  }
  overlay.dataset.hiddenLabels = String(hidden);
}

function findLabelSpot([bx, by, bw, bh], w, h, W, H, placed, gap) {
  const free = (x, y) => x >= 0 && y >= 0 && x + w <= W + 0.01 && y + h <= H + 0.01 && placed.every((p) =>
    x + w + gap <= p.x || p.x + p.w + gap <= x || y + h + gap <= p.y || p.y + p.h + gap <= y);
  const clampX = (x) => Math.min(Math.max(0, x), Math.max(0, W - w));
  const step = h + gap;
  const candidates = [];
  // above the box, inside its top edge, below it, inside its bottom edge, flush left then right; then
  // further out, and then shifted sideways
  for (let k = 0; k < 6; k++) {
    for (const x of [bx, bx + bw - w]) {
      const inside = by + k * step + h <= by + bh;
      candidates.push([x, by - h - k * step]);
      if (inside) candidates.push([x, by + k * step]);
      candidates.push([x, by + bh + k * step]);
      if (inside) candidates.push([x, by + bh - h - k * step]);
    }
  }
  for (let j = 1; j <= 6; j++) {
    for (const dx of [j * w / 2, -j * w / 2]) {
      for (let k = 0; k < 3; k++) candidates.push([bx + dx, by - h - k * step], [bx + dx, by + bh + k * step], [bx + dx, by + k * step]);
    }
  }
  for (const [x0, y] of candidates) {
    const x = clampX(x0);
    if (free(x, y)) return {x, y, w, h};
  }
  // a crowd: the free place nearest to the box anywhere in the picture
  const spots = [];
  for (let y = 0; y + h <= H; y += step / 2) for (let x = 0; x + w <= W; x += w / 6) spots.push([x, y]);
  const distance = ([x, y]) => Math.hypot(x + w / 2 - (bx + bw / 2), y + h / 2 - by);
  spots.sort((a, b) => distance(a) - distance(b));
  for (const [x, y] of spots) if (free(x, y)) return {x, y, w, h};
  return null;
}

function clickBox(field, index, box) {
  if (state.editing) {
    state.selectedBox = {field, index, box};
    $("edit-class").value = box.name || "";
    drawOverlay();
    updateEditbar();
    return;
  }
  window.open(WEB_SEARCH + encodeURIComponent(box.name), "_blank", "noopener");
}

function drawHistogram(histogram) {
  const chart = $("histogram");
  chart.replaceChildren();
  if (!histogram) return;
  const channels = [["r", "#ff6b6b"], ["g", "#5dd39e"], ["b", "#4fb3ff"]];
  const top = Math.max(1e-9, ...channels.flatMap(([c]) => histogram[c] || []));
  for (const [c, color] of channels) {
    const values = histogram[c] || [];
    if (!values.length) continue;
    const step = 256 / Math.max(1, values.length - 1);
    const points = values.map((v, i) => `${(i * step).toFixed(1)},${(80 - (v / top) * 76).toFixed(1)}`).join(" ");
    chart.append(svg("polyline", {points, fill: "none", stroke: color, "stroke-width": 1.5, "vector-effect": "non-scaling-stroke"}));
  }
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function drawSummary(doc) {
  // what a person reads first: the file, its size, its labels, its problems, its tags
  $("d-title").textContent = fileName(doc);
  $("d-title").title = doc.filepath || doc._id;
  const meta = [];
  if (doc.width != null) meta.push(`${doc.width}×${doc.height} px`);
  if (doc.format) meta.push(doc.format);
  if (doc.size_bytes != null) meta.push(formatBytes(doc.size_bytes));
  if (doc.label_quality_estimation != null) meta.push(`label quality ${doc.label_quality_estimation.toFixed(2)}`);
  if (doc.ground_truth?.label) meta.push(`labelled ${doc.ground_truth.label}`);
  $("d-meta").textContent = meta.join(" · ");
  const rows = [];
  const cell = (text) => el("td", {text: text ?? ""});
  for (const [field, from] of [["object_analysis", "model"], ["predictions", "predictions"], [TRUTH, "truth"]]) {
    const boxes = field === TRUTH ? doc.ground_truth?.detections : doc[field];
    for (const box of boxes || []) {
      rows.push(el("tr", {class: box.review === "rejected" ? "rejected" : ""}, cell(box.name),
        cell(box.confidence != null ? `${(box.confidence * 100).toFixed(0)}%` : ""),
        cell(box.label_quality_estimation != null ? box.label_quality_estimation.toFixed(2) : ""),
        cell(from), cell(box.review)));
    }
  }
  $("d-labels").querySelector("tbody").replaceChildren(...rows);
  $("d-labels").hidden = !rows.length;
  const chips = (id, label, values, kind) => {
    $(id).replaceChildren(...(values.length ? [el("span", {class: "dim", text: label + " "}),
      ...values.map((v) => el("span", {class: `pill ${kind}`, text: v}))] : []));
  };
  chips("d-issues", "issues", doc.issues || [], "issue");
  chips("d-tags", "tags", doc.tags || [], "tag");
}

const RAW_KEYS = /(^|\.)(hash|phash|dhash|phash_flip|histogram|embeddings)(\.|$)/;

function drawFields(doc) {
  // scalars in the open table; hashes and arrays (boxes, keypoints, histogram values) in the folded one
  const plain = $("d-fields"), raw = $("d-raw-fields");
  plain.replaceChildren();
  raw.replaceChildren();
  const walk = (value, path) => {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) walk(v, path ? `${path}.${k}` : k);
      return;
    }
    let text = typeof value === "string" ? value : JSON.stringify(value);
    if (text && text.length > 600) text = text.slice(0, 600) + "…";
    const row = el("tr", {}, el("td", {text: path}), el("td", {text: text ?? "null"}));
    (Array.isArray(value) || RAW_KEYS.test(path) ? raw : plain).append(row);
  };
  walk(doc, "");
}

async function loadSimilar(id) {
  const box = $("d-similar");
  box.replaceChildren();
  try {
    const out = await api(ds(`/samples/${encodeURIComponent(id)}/similar?k=8`));
    for (const hit of out.results) {
      box.append(el("img", {src: thumb(hit._id, 128), title: `similarity ${hit.similarity.toFixed(3)}`, alt: "similar sample",
                            onclick: () => showSample(hit._id)}));
    }
  } catch (e) { /* no embeddings yet: nothing to show */ }
}

async function loadSampleEdits(id) {
  const list = $("d-edits");
  list.replaceChildren();
  try {
    const out = await api(ds(`/edits?sample_id=${encodeURIComponent(id)}`));
    for (const e of out.results) list.append(el("li", {text: `${e.at} ${e.by || "?"}: ${describeEdit(e)}`}));
  } catch (e) { showError(e); }
}

function describeEdit(e) {
  const name = (v) => (v && typeof v === "object" && !Array.isArray(v) ? v.name : JSON.stringify(v));
  if (e.action === "relabel") return `relabelled box ${e.idx} ${name(e.before)} → ${name(e.after)}`;
  if (e.action === "delete_box") return `deleted box ${e.idx} (${name(e.before)})`;
  if (e.action === "add_box" && e.after?.source) return `added a ${name(e.after)} box to ground truth from ${e.after.source}`;
  if (e.action === "add_box") return `drew a ${name(e.after)} box`;
  if (e.action === "accept_label") return `${e.after?.review ?? "accepted"} ${e.field} box ${e.idx} (${name(e.before)})`;
  if (e.action === "reject_label") return `rejected ${e.field} box ${e.idx} (${name(e.before)})`;
  if (e.action === "mark_reviewed") return "marked reviewed";
  if (e.action === "unmark_reviewed") return "unmarked reviewed";
  const verdicts = {"review:accept": "accepted", "review:ignore": "ignored", "review:reopen": "reopened"};
  if (verdicts[e.action]) return `${verdicts[e.action]} in the ${String(e.field).replace(/_/g, " ")} review`;
  return `${e.action}${e.field ? " " + e.field : ""}`;
}

function closeDetail() {
  $("detail").hidden = true;
  state.detailDoc = null;
  setEditing(false);
  $("grid").focus();
}

function setEditing(on) {
  state.editing = on;
  state.selectedBox = null;
  $("editbar").hidden = !on;
  $("d-edit").textContent = on ? "Done editing" : "Edit labels";
  updateEditbar();
  if (state.detailDoc) { placeOverlay(); drawOverlay(); }  // the edit bar takes room from the picture
}

function updateEditbar() {
  const b = state.selectedBox;
  const model = b && b.field !== TRUTH;
  $("edit-accept").disabled = !model || (b.box.review != null && b.box.review !== "rejected");
  $("edit-reject").disabled = !model || b.box.review != null;
  $("edit-relabel").disabled = !b || (model && b.box.review != null && b.box.review !== "rejected");
  $("edit-delete").disabled = !b || model;
}

function expectOf(box) { return {name: box.name, bbox: box.bbox}; }

function reviewLabel(verdict, extra = {}) {
  // a model's box: accepted into ground truth (as it is, relabeled or moved) or rejected; it stays, marked
  const b = state.selectedBox;
  if (!b || b.field === TRUTH) { showError(new Error("select a model's box (solid) first")); return; }
  const id = encodeURIComponent(state.detailDoc._id);
  send(ds(`/samples/${id}/labels/${b.field}/${b.index}/${verdict}`), {...extra, expect: expectOf(b.box)});
}

function edit(body) {
  send(ds(`/samples/${encodeURIComponent(state.detailDoc._id)}/edits`), body);
}

async function send(path, body) {
  const doc = state.detailDoc;
  try {
    state.detailDoc = await api(path, {method: "POST", body: JSON.stringify(body)});
    state.selectedBox = null;
    updateEditbar();
    drawOverlay();
    drawSummary(state.detailDoc);
    drawFields(state.detailDoc);
    loadSampleEdits(doc._id);
    $("d-reviewed").textContent = (state.detailDoc.tags || []).includes("reviewed") ? "Unmark reviewed" : "Mark reviewed";
    patchCachedDoc(state.detailDoc);
    showError(null);
  } catch (e) { showError(e); }
}

function patchCachedDoc(doc) {
  for (const results of state.pages.values()) {
    const i = results.findIndex((d) => d._id === doc._id);
    if (i >= 0) results[i] = doc;
  }
}

// drawing a missing box: drag on the image while editing
function svgPoint(event) {
  const overlay = $("overlay");
  const p = new DOMPoint(event.clientX, event.clientY).matrixTransform(overlay.getScreenCTM().inverse());
  const doc = state.detailDoc;
  return [Math.min(Math.max(0, p.x), doc.width), Math.min(Math.max(0, p.y), doc.height)];
}
let drawing = null;
let moving = null;   // a model's box dragged to where it should be
function startDraw(event) {
  if (!state.editing || event.target.closest("g.label")) return;
  const target = event.target;
  const isBox = target.tagName === "rect" && target.classList.contains("box");
  const field = target.dataset?.field, index = Number(target.dataset?.index);
  const picked = state.selectedBox;
  if (isBox && field !== TRUTH && picked && picked.field === field && picked.index === index) {
    // the selected model box follows the mouse; any other model box lets a new box be drawn over it
    moving = {field, index, box: picked.box, start: svgPoint(event), rect: target, bbox: picked.box.bbox, moved: false};
    event.preventDefault();
    return;
  }
  if (isBox && field === TRUTH) return;  // a click: it selects the box
  const [x, y] = svgPoint(event);
  drawing = {x, y, rect: svg("rect", {x, y, width: 0, height: 0, class: "drawing"})};
  $("overlay").append(drawing.rect);
  event.preventDefault();
}
function moveDraw(event) {
  if (moving) {
    const [x, y] = svgPoint(event);
    const [bx, by, bw, bh] = moving.box.bbox;
    const doc = state.detailDoc;
    const nx = Math.min(Math.max(0, bx + x - moving.start[0]), doc.width - bw);
    const ny = Math.min(Math.max(0, by + y - moving.start[1]), doc.height - bh);
    moving.bbox = [Math.round(nx * 100) / 100, Math.round(ny * 100) / 100, bw, bh];
    moving.moved = moving.moved || Math.hypot(nx - bx, ny - by) > 2;
    moving.rect.setAttribute("x", nx);
    moving.rect.setAttribute("y", ny);
    return;
  }
  if (!drawing) return;
  const [x, y] = svgPoint(event);
  drawing.rect.setAttribute("x", Math.min(x, drawing.x));
  drawing.rect.setAttribute("y", Math.min(y, drawing.y));
  drawing.rect.setAttribute("width", Math.abs(x - drawing.x));
  drawing.rect.setAttribute("height", Math.abs(y - drawing.y));
}
function endDraw() {
  if (moving) {
    const done = moving;
    moving = null;
    if (!done.moved) return;  // a click: it selects the box
    state.selectedBox = {field: done.field, index: done.index, box: done.box};
    reviewLabel("move", {bbox: done.bbox});
    return;
  }
  if (!drawing) return;
  const r = drawing.rect;
  const box = ["x", "y", "width", "height"].map((k) => Number(r.getAttribute(k)));
  drawing = null;
  r.remove();
  const name = $("edit-class").value.trim();
  if (box[2] < 2 || box[3] < 2) return;
  if (!name) { showError(new Error("type the class of the new box first, then draw it")); return; }
  edit({action: "add_box", field: "ground_truth.detections", bbox: box, name});
}

// ---- the map (canvas scatter, lasso selection) -------------------------------------------------

const MAP_PICTURES = 400;  // up to this many samples the map shows thumbnails instead of dots
const map = {points: null, lasso: [], selecting: false, images: new Map()};
let mapQueued = false;
function drawMapSoon() {
  if (mapQueued) return;
  mapQueued = true;
  requestAnimationFrame(() => { mapQueued = false; drawMap(); });
}

async function loadMap() {
  const info = $("map-info");
  const color = $("map-color").value;
  try {
    map.points = await api(ds(`/map${color ? "?color_by=" + encodeURIComponent(color) : ""}`));
    info.textContent = map.points.ids.length ? `${map.points.ids.length.toLocaleString()} samples placed (${map.points.map?.method ?? ""})`
                                             : "no map yet: run “Compute map” in Jobs (needs embeddings)";
  } catch (e) { showError(e); map.points = null; }
  drawMap();
}

function mapXY(i) {
  const canvas = $("map");
  const pad = map.points.ids.length <= MAP_PICTURES ? 24 : 16;
  return [pad + map.points.x[i] * (canvas.width - 2 * pad), pad + (1 - map.points.y[i]) * (canvas.height - 2 * pad)];
}

function drawMap() {
  const canvas = $("map");
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (!map.points) return;
  const selected = state.lasso ? new Set(state.lasso) : null;
  const n = map.points.ids.length;
  const r = n > 20000 ? 1.2 : n > 2000 ? 2 : 6;
  const pictures = n <= MAP_PICTURES;
  for (let i = 0; i < n; i++) {
    const [x, y] = mapXY(i);
    if (pictures) {  // few samples: show the pictures themselves, a framed thumbnail per point
      const id = map.points.ids[i];
      let image = map.images.get(id);
      if (!image) {
        image = new Image();
        image.onload = () => drawMapSoon();
        image.src = thumb(id, 64);
        map.images.set(id, image);
      }
      const value = map.points.color ? map.points.color[i] : null;
      g.globalAlpha = selected && !selected.has(id) ? 0.25 : 1;
      g.fillStyle = value == null ? "#4fb3ff" : colorOf(value);
      g.fillRect(x - 18, y - 18, 36, 36);
      if (image.complete && image.naturalWidth) g.drawImage(image, x - 16, y - 16, 32, 32);
      g.globalAlpha = 1;
      continue;
    }
    const value = map.points.color ? map.points.color[i] : null;
    g.fillStyle = selected && !selected.has(map.points.ids[i]) ? "#33404b" : value == null ? "#4fb3ff" : colorOf(value);
    g.fillRect(x - r / 2, y - r / 2, r, r);
  }
  if (map.lasso.length > 1) {
    g.strokeStyle = "#fff";
    g.lineWidth = 1.5;
    g.beginPath();
    g.moveTo(...map.lasso[0]);
    for (const p of map.lasso.slice(1)) g.lineTo(...p);
    if (!map.selecting) g.closePath();
    g.stroke();
  }
}

function canvasPoint(event) {
  const canvas = $("map");
  const box = canvas.getBoundingClientRect();
  return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
}

function inside(point, polygon) {
  let hit = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [xi, yi] = polygon[i], [xj, yj] = polygon[j];
    if ((yi > point[1]) !== (yj > point[1]) && point[0] < (xj - xi) * (point[1] - yi) / (yj - yi) + xi) hit = !hit;
  }
  return hit;
}

function finishLasso() {
  map.selecting = false;
  if (!map.points || map.lasso.length < 3) { map.lasso = []; drawMap(); return; }
  const ids = [];
  for (let i = 0; i < map.points.ids.length; i++) if (inside(mapXY(i), map.lasso)) ids.push(map.points.ids[i]);
  $("map-info").textContent = `${ids.length.toLocaleString()} samples selected`;
  state.lasso = ids.length ? ids : null;
  drawMap();
  if (ids.length) { refresh(); switchTab("grid"); }
}

// ---- curate: select what to label, autotag a concept from marked examples ---------------------------

const STRATEGIES = {
  cluster_coverage: "every cluster represented, sparse ones first, then in proportion to their size",
  k_center: "spread over the embedding space: each pick the farthest from those already picked",
  typicality: "the most representative samples of each cluster (dense regions first)",
  edge_cases: "the unusual ones first: outliers, unique samples, tiny clusters",
  balance: "an equal share of each class (or of any field), spread across clusters",
  uncertainty: "where the model is least sure (run fit-head or label first), kept diverse",
  similarity: "the samples most like the examples marked +, least like those marked −",
  weighted: "a weighted mix of other strategies' scores",
  random: "a uniform random sample: the baseline the others are measured against",
};

function markClass(id) {
  const mark = state.marks.get(id);
  return mark ? ` ${mark}` : "";
}

function markButtons(id) {
  // + / −: an example of the autotag concept (or of similarity), or a counter-example
  const button = (kind, text, label) => el("button", {class: `${kind === "pos" ? "plus" : "minus"}${state.marks.get(id) === kind ? " on" : ""}`,
    title: label, "aria-label": label, "data-mark": kind,
    onclick: (event) => { event.stopPropagation(); toggleMark(id, kind); }}, text);
  return el("div", {class: "marks"}, button("pos", "+", "mark as an example (+)"), button("neg", "−", "mark as a counter-example (−)"));
}

function toggleMark(id, kind) {
  if (state.marks.get(id) === kind) state.marks.delete(id); else state.marks.set(id, kind);
  showMarks(`.cell[data-id="${CSS.escape(id)}"], .thumb[data-id="${CSS.escape(id)}"]`);
  drawMarks();
}

function showMarks(selector = ".cell[data-id], .thumb[data-id]") {
  // every thumbnail of a marked sample (grid, picks, scores) shows its mark
  for (const node of document.querySelectorAll(selector)) {
    const mark = state.marks.get(node.dataset.id);
    node.classList.toggle("pos", mark === "pos");
    node.classList.toggle("neg", mark === "neg");
    for (const b of node.querySelectorAll(":scope > .marks button")) b.classList.toggle("on", mark === b.dataset.mark);
  }
}

function marked(kind) { return [...state.marks].filter(([, k]) => k === kind).map(([id]) => id); }

function drawMarks() {
  const pos = marked("pos"), neg = marked("neg");
  $("at-counts").textContent = `${pos.length} marked +, ${neg.length} marked −`;
  $("at-marked").replaceChildren(...[...state.marks.keys()].map((id) => thumbCard(id, state.marks.get(id) === "pos" ? "+" : "−")));
}

function thumbCard(id, caption, title = "", why = "") {
  // a picked or scored sample: its thumbnail, a caption (and the reason it was picked, cut to a line:
  // the whole of it on hover); a click opens it
  return el("figure", {class: "thumb" + markClass(id), "data-id": id, title: title || id},
    el("img", {src: thumb(id, 128), alt: title || "sample", loading: "lazy",
               onclick: () => { state.detailIndex = null; showSample(id); }}),
    el("figcaption", {text: caption}),
    why ? el("figcaption", {class: "why", text: why}) : null,
    markButtons(id));
}

async function waitForJob(job, status) {
  // a job the server queued (a saved selection, a large preview or autotag): its result once done
  while (job.state === "queued" || job.state === "running") {
    const p = job.progress || {};
    status.textContent = `${job.kind} ${job.state}${p.total ? ` ${p.done}/${p.total}` : ""}…`;
    await new Promise((resolve) => setTimeout(resolve, 400));
    job = await api(`/v1/jobs/${encodeURIComponent(job.id)}`);
  }
  if (job.state === "failed") throw new Error(job.error || "the job failed");
  status.textContent = "";
  return job.result;
}

const isJob = (out) => out && typeof out.state === "string" && typeof out.kind === "string" && "progress" in out;

function selectionBody(preview) {
  const budget = $("sel-budget").value.trim();
  const strategy = $("sel-strategy").value;
  const body = {n: /%$/.test(budget) ? budget : Number(budget), strategy, seed: Number($("sel-seed").value) || 0, preview};
  if (!/%$/.test(budget) && !(Number.isInteger(body.n) && body.n > 0)) throw new Error("the budget is a number of samples (200) or a share (2%)");
  const q = composedQuery();
  if ($("sel-filtered").checked && Object.keys(q).length) body.q = q;
  const options = {};
  const field = $("sel-field").value.trim();
  if (field && (strategy === "balance" || strategy === "uncertainty")) options.field = field;
  if (strategy === "uncertainty") options.measure = $("sel-measure").value;
  if (strategy === "similarity") {
    options.examples = marked("pos");
    if (marked("neg").length) options.negatives = marked("neg");
  }
  if (strategy === "weighted") {
    options.weights = {};
    for (const part of $("sel-weights").value.split(",")) {
      const [k, v] = part.split("=").map((x) => x.trim());
      if (k) options.weights[k] = Number(v);
    }
  }
  if (Object.keys(options).length) body.options = options;
  return body;
}

function drawPicks(selection, stored) {
  const dropped = Object.entries(selection.dropped || {}).filter(([, v]) => v).map(([k, v]) => `${v} ${k.replace(/_/g, " ")}`);
  $("sel-summary").textContent = `${selection.ids.length} of ${Number(selection.pool).toLocaleString()} candidates · ` +
    `dropped: ${dropped.length ? dropped.join(", ") : "none"} · ${selection.strategy}, seed ${selection.seed}` +
    (stored ? ` · saved as slice ${selection.slice}` : " · preview, nothing stored") +
    (selection.notes && selection.notes.length ? ` · ${selection.notes.join(" · ")}` : "");
  $("sel-picks").replaceChildren(...selection.picks.map((p) => thumbCard(p._id,
    `#${p.rank}${p.cluster != null ? ` · cluster ${p.cluster}` : ""}`, `#${p.rank}: ${p.reason || ""}`, p.reason || "")));
}

async function previewSelection() {
  const status = $("sel-status");
  try {
    const body = JSON.stringify(selectionBody(true));
    status.textContent = "picking…";
    let out = await api(ds("/selections"), {method: "POST", body});
    if (isJob(out)) out = await waitForJob(out, status);
    drawPicks(out, false);
    if (!$("sel-slice").value) $("sel-slice").value = out.slice;
    status.textContent = "";
    showError(null);
  } catch (e) { showError(e); status.textContent = ""; }
}

async function saveSelection() {
  const status = $("sel-status");
  const name = $("sel-slice").value.trim();
  try {
    const body = selectionBody(false);
    if (name) body.slice = name;
    status.textContent = "saving…";
    let out = await api(ds("/selections"), {method: "POST", body: JSON.stringify(body)});
    if (isJob(out)) out = await waitForJob(out, status);
    drawPicks(out, true);
    $("sel-slice").value = out.slice;
    const report = $("sel-report");
    report.href = ds(`/selections/${encodeURIComponent(out.slice)}/report`);
    if (out.pool > 20000) {  // the server makes a large pool's report as a job: wait for it before linking
      status.textContent = "making the curation report…";
      const made = await api(`${report.href}?format=json`);
      if (isJob(made)) await waitForJob(made, status);
    }
    report.hidden = false;
    $("sel-show").hidden = false;
    $("sel-show").dataset.slice = out.slice;
    status.textContent = `saved ${samplesText(out.ids.length)} as slice ${out.slice}`;
    await loadFacets();
    showError(null);
  } catch (e) { showError(e); status.textContent = ""; }
}

async function fitHead() {
  // the light classifier whose probabilities the uncertainty strategy ranks, fitted on the labeled samples
  const status = $("sel-status");
  try {
    status.textContent = "fitting the head…";
    const report = await waitForJob(await api(ds("/fit-head"), {method: "POST", body: JSON.stringify({})}), status);
    const cv = report.cv_accuracy != null ? `, cross-validated accuracy ${report.cv_accuracy}` : "";
    status.textContent = `head fitted on ${report.labeled} labeled samples (${report.classes.length} classes${cv})`;
    showError(null);
  } catch (e) { showError(e); status.textContent = ""; }
}

function showSlice(name) {
  state.userQuery = {};
  state.filters = {width: 0, lqe: 1, slice: name};
  state.lasso = null;
  syncControls();
  switchTab("grid");
  refresh();
}

function scoredList(entries) {
  // an autotag list: [{_id, score}], [[id, score]] or bare ids
  return (entries || []).map((e) => (Array.isArray(e) ? {id: e[0], score: e[1]}
    : typeof e === "object" && e ? {id: e._id ?? e.id, score: e.score} : {id: String(e), score: null}));
}

async function scoreConcept(save) {
  const status = $("at-status");
  const name = $("at-name").value.trim();
  try {
    if (!name) throw new Error("name the concept first");
    const positive = marked("pos");
    if (positive.length < 2) throw new Error("mark at least 2 samples with + (examples of the concept)");
    const body = {name, positive, threshold: Number($("at-threshold").value) || 0.5};
    if (marked("neg").length) body.negative = marked("neg");
    if (save) body.tag = true;
    status.textContent = save ? "saving…" : "scoring…";
    let out = await api(ds("/autotag"), {method: "POST", body: JSON.stringify(body)});
    if (isJob(out)) out = await waitForJob(out, status);
    const top = scoredList(out.top), border = scoredList(out.borderline);
    const above = out.above ?? out.above_threshold ?? out.count_above;
    $("at-summary").textContent = `autotag.${name}: scored from ${positive.length} + and ${marked("neg").length} −` +
      (above != null ? ` · ${Number(above).toLocaleString()} at or above ${body.threshold}` : "");
    const card = (hit) => thumbCard(hit.id, hit.score != null ? Number(hit.score).toFixed(3) : "", `score ${hit.score}`);
    $("at-top").replaceChildren(...top.slice(0, 48).map(card));
    $("at-border").replaceChildren(...border.slice(0, 24).map(card));
    $("at-top-title").hidden = !top.length;
    $("at-border-title").hidden = !border.length;
    status.textContent = "";
    if (save) {
      status.textContent = `tagged the samples at or above ${body.threshold} with “${name}”`;
      await loadFacets();
    }
    showError(null);
  } catch (e) { showError(e); status.textContent = ""; }
}

function addLassoAsExamples() {
  for (const id of state.lasso || []) state.marks.set(id, "pos");
  showMarks();
  drawMarks();
}

function explainStrategy() {
  const strategy = $("sel-strategy").value;
  $("sel-explain").textContent = STRATEGIES[strategy] || "";
  for (const label of $("sel-extra").querySelectorAll("[data-for]")) label.hidden = !label.dataset.for.split(" ").includes(strategy);
}

function openCurate() {
  $("sel-pool").textContent = `(${samplesText(state.length)})`;
  $("at-add-lasso").disabled = !state.lasso;
  $("at-add-lasso").title = state.lasso ? `add the ${state.lasso.length} samples of the map selection` : "draw a lasso on the map first";
  drawMarks();
}

function wireCurate() {
  $("sel-strategy").replaceChildren(...Object.entries(STRATEGIES).map(([k, why]) => el("option", {value: k, text: k.replace(/_/g, " "), title: why})));
  $("sel-strategy").addEventListener("change", explainStrategy);
  explainStrategy();
  $("sel-preview").addEventListener("click", previewSelection);
  $("sel-save").addEventListener("click", saveSelection);
  $("sel-fit-head").addEventListener("click", fitHead);
  $("sel-show").addEventListener("click", () => showSlice($("sel-show").dataset.slice));
  $("at-score").addEventListener("click", () => scoreConcept(false));
  $("at-save").addEventListener("click", () => scoreConcept(true));
  $("at-clear").addEventListener("click", () => { state.marks.clear(); showMarks(); drawMarks(); });
  $("at-add-lasso").addEventListener("click", addLassoAsExamples);
}

// ---- review queues -----------------------------------------------------------------------------

const review = {page: 1, summary: null};

async function loadReview() {
  const kindSelect = $("review-kind");
  try {
    review.summary = (await api(ds("/review"))).queues;
  } catch (e) { showError(e); return; }
  const current = kindSelect.value || Object.entries(review.summary).find(([, c]) => c.open)?.[0] || "duplicates";
  kindSelect.replaceChildren(...Object.entries(review.summary).map(([k, c]) =>
    el("option", {value: k, text: `${k.replace(/_/g, " ")} (${c.open} open, ${c.decided} decided)`})));
  kindSelect.value = current;
  const kind = kindSelect.value;
  const stateName = $("review-state").value;
  const list = $("review-list");
  let out;
  try {
    out = await api(ds(`/review/${kind}?state=${stateName}&page=${review.page}`));
  } catch (e) { showError(e); return; }
  $("review-page").textContent = `page ${review.page} of ${Math.max(1, Math.ceil(out.length / PAGE))} (${out.length})`;
  list.replaceChildren();
  if (!out.results.length) list.append(el("p", {text: "Nothing here. Run “Analyze” in Jobs to find problems."}));
  for (const doc of out.results) list.append(reviewCard(kind, doc));
}

function evidence(kind, doc) {
  if (kind === "duplicates") return `${doc.duplicates?.reason ?? "near"} duplicate of the original below (group of ${doc.duplicates?.size ?? "?"})`;
  if (kind === "leaks") return `${doc.leak?.value} also in ${doc.leak?.with_value} (${doc.leak?.reason}) with ${doc.leak?.with}`;
  if (kind === "outliers") return `outlier: more unusual than ${((doc.scores?.outlier ?? 0) * 100).toFixed(1)}% of the dataset`;
  if (kind === "label_errors") return `labelled ${doc.ground_truth?.label}, looks like ${doc.mislabel?.suggested} (score ${doc.mislabel?.score})`;
  if (kind === "box_label_errors") {
    const bad = (doc.ground_truth?.detections || []).filter((b) => b.mislabel_suggested);
    return bad.map((b) => `${b.name} box looks like ${b.mislabel_suggested}`).join("; ");
  }
  return (doc.issues || []).join(", ");
}

function reviewCard(kind, doc) {
  const tags = doc.tags || [];
  const decided = tags.find((t) => t.startsWith(`review:${kind}:`));
  const decide = (decision) => async () => {
    try {
      await api(ds(`/review/${kind}`), {method: "POST", body: JSON.stringify({ids: [doc._id], decision})});
      loadReview();
    } catch (e) { showError(e); }
  };
  const partner = kind === "leaks" ? doc.leak?.with : kind === "duplicates" ? doc.duplicates?.group : null;
  // which card is which: in a duplicate group the flagged sample is the copy, the group's representative is kept
  const [mine, theirs] = kind === "duplicates" ? ["copy", "original (kept)"] : kind === "leaks" ? ["this sample", "leaks into"]
                                               : ["flagged sample", "the other sample"];
  const shot = (id, size, role, cls) => el("figure", {class: `shot ${cls}`},
    el("img", {src: thumb(id, size), alt: role, title: id, onclick: () => { state.detailIndex = null; showSample(id); }}),
    el("figcaption", {class: `role ${cls}`, text: role}));
  return el("div", {class: "card" + (decided ? " decided" : ""), "data-id": doc._id},
    shot(doc._id, 256, `${mine} · ${fileName(doc)}`, "mine"),
    partner ? el("div", {class: "members"}, shot(partner, 128, theirs, "theirs")) : null,
    el("div", {class: "why", text: evidence(kind, doc)}),
    el("div", {class: "actions"},
      el("button", {class: "accept", onclick: decide("accept"), title: "the problem is real"}, "Accept"),
      el("button", {class: "ignore", onclick: decide("ignore"), title: "a false alarm"}, "Ignore"),
      decided ? el("button", {onclick: decide("reopen")}, "Reopen") : null,
      decided ? el("span", {class: "hint", text: decided.split(":")[2]}) : null));
}

// ---- jobs and the audit trail ------------------------------------------------------------------

let jobTimer = null;
async function loadJobs() {
  try {
    const out = await api(`/v1/jobs?dataset_name=${encodeURIComponent(state.dataset)}`);
    const body = $("jobs").querySelector("tbody");
    body.replaceChildren(...out.jobs.map((j) => {
      const p = j.progress;
      const bar = el("progress", {max: p.total || 1, value: p.total ? p.done : j.state === "done" ? 1 : 0});
      const result = j.error ? el("span", {class: "hint", text: j.error})
        : j.result?.download ? el("a", {href: j.result.download, text: "download"})
        : el("span", {class: "hint", text: j.result ? JSON.stringify(j.result).slice(0, 160) : ""});
      return el("tr", {}, el("td", {text: `${j.kind} ${j.id.slice(0, 6)}`}), el("td", {text: j.state}),
                el("td", {}, bar, ` ${p.done}/${p.total ?? "?"}`), el("td", {text: p.rate ? `${p.rate.toFixed(1)}/s` : ""}),
                el("td", {}, result));
    }));
    const running = out.jobs.some((j) => j.state === "queued" || j.state === "running");
    clearTimeout(jobTimer);
    if (running && !$("tab-jobs").hidden) jobTimer = setTimeout(loadJobs, 1000);
    const edits = await api(ds("/edits"));
    $("edits").querySelector("tbody").replaceChildren(...edits.results.map((e) => el("tr", {},
      el("td", {text: e.at}), el("td", {text: e.by || ""}), el("td", {text: e.sample_id.slice(0, 10)}),
      el("td", {text: e.action}), el("td", {text: describeEdit(e)}))));
  } catch (e) { showError(e); }
}

async function startJob(button) {
  const body = {kind: button.dataset.job};
  const q = composedQuery();
  if (Object.keys(q).length) body.q = q;
  if (button.dataset.format) body.format = button.dataset.format;
  try {
    await api(ds("/jobs"), {method: "POST", body: JSON.stringify(body)});
    loadJobs();
  } catch (e) { showError(e); }
}

// ---- facets, views, datasets -------------------------------------------------------------------

async function loadFacets() {
  const f = await api(ds("/facets"));
  const fill = (id, counts, extra = []) => {
    const select = $(id);
    const keep = select.value;
    select.replaceChildren(el("option", {value: "", text: "any"}), ...extra,
      ...Object.entries(counts || {}).map(([k, n]) => el("option", {value: k, text: `${k} (${n})`})));
    select.value = [...select.options].some((o) => o.value === keep) ? keep : "";
  };
  fill("f-class", f.classes);
  fill("f-issue", f.issues, [el("option", {value: "(any)", text: "any issue"})]);
  fill("f-split", f.splits);
  fill("f-tag", f.tags);
  fill("f-slice", f.slices);
  if (f.width?.max) $("f-width").max = Math.ceil(f.width.max / 50) * 50;
}

async function loadViews() {
  const out = await api(ds("/views"));
  const select = $("views");
  select.replaceChildren(el("option", {value: "", text: "saved views…"}),
    ...Object.keys(out.views).map((name) => el("option", {value: name, text: name})));
  select.viewData = out.views;
}

function applyView(name) {
  const view = $("views").viewData?.[name];
  if (!view) return;
  state.userQuery = view.query || {};
  state.sort = view.sort || null;
  state.filters = {width: 0, lqe: 1};
  state.lasso = null;
  syncControls();
  refresh();
}

function syncControls() {
  $("query").value = Object.keys(state.userQuery).length ? JSON.stringify(state.userQuery) : "";
  $("query").classList.remove("invalid");
  for (const key of ["class", "issue", "split", "tag", "slice"]) $(`f-${key}`).value = state.filters[key] || "";
  $("f-width").value = state.filters.width || 0;
  $("f-width-out").textContent = state.filters.width || 0;
  $("f-lqe").value = state.filters.lqe ?? 1;
  $("f-lqe-out").textContent = state.filters.lqe ?? 1;
  $("sort").value = state.sort ? JSON.stringify(state.sort) : "";
}

async function saveAs(kind) {
  const name = prompt(`Name of the ${kind}`);
  if (!name) return;
  try {
    if (kind === "view") {
      await api(ds(`/views/${encodeURIComponent(name)}`), {method: "PUT", body: JSON.stringify({q: composedQuery(), sort: state.sort})});
      await loadViews();
      $("views").value = name;
    } else {
      const out = await api(ds(`/slices/${encodeURIComponent(name)}`), {method: "PUT", body: JSON.stringify({q: composedQuery()})});
      $("count").textContent = `slice ${name}: ${samplesText(out.samples)}`;
      await loadFacets();
    }
    showError(null);
  } catch (e) { showError(e); }
}

function saveHash() {
  const s = {d: state.dataset, q: state.userQuery, f: state.filters, s: state.sort};
  history.replaceState(null, "", "#" + encodeURIComponent(JSON.stringify(s)));
}

function readHash() {
  try { return JSON.parse(decodeURIComponent(location.hash.slice(1))); } catch { return null; }
}

async function chooseDataset(name) {
  state.dataset = name;
  state.lasso = null;
  state.marks = new Map();
  map.points = null;
  map.images = new Map();
  closeDetailIfOpen();
  try {
    await Promise.all([loadFacets(), loadViews()]);
  } catch (e) { showError(e); }
  refresh();
  if (!$("tab-map").hidden) loadMap();
}

function closeDetailIfOpen() { if (!$("detail").hidden) closeDetail(); }

function switchTab(name) {
  for (const button of document.querySelectorAll("#tabs button")) button.setAttribute("aria-selected", String(button.dataset.tab === name));
  for (const tab of document.querySelectorAll(".tab")) tab.hidden = tab.id !== `tab-${name}`;
  if (name === "map") loadMap();
  if (name === "review") { review.page = 1; loadReview(); }
  if (name === "curate") openCurate();
  if (name === "jobs") loadJobs();
  if (name === "grid") { renderGrid(); $("grid").focus(); }
}

// ---- wiring ------------------------------------------------------------------------------------

function runQuery() {
  const text = $("query").value.trim();
  try {
    const q = text ? JSON.parse(text) : {};
    if (typeof q !== "object" || Array.isArray(q) || q === null) throw new Error("the query is a JSON object");
    state.userQuery = q;
    $("query").classList.remove("invalid");
    refresh();
  } catch (e) {
    $("query").classList.add("invalid");
    showError(new Error(`not a valid query: ${e.message}`));
  }
}

function wire() {
  $("dataset").addEventListener("change", (e) => chooseDataset(e.target.value));
  $("run-query").addEventListener("click", runQuery);
  $("query").addEventListener("keydown", (e) => { if (e.key === "Enter") runQuery(); });
  $("sort").addEventListener("change", (e) => { state.sort = e.target.value ? JSON.parse(e.target.value) : null; refresh(); });
  $("views").addEventListener("change", (e) => applyView(e.target.value));
  $("save-view").addEventListener("click", () => saveAs("view"));
  $("save-slice").addEventListener("click", () => saveAs("slice"));
  for (const key of ["class", "issue", "split", "tag", "slice"]) {
    $(`f-${key}`).addEventListener("change", (e) => { state.filters[key] = e.target.value; refresh(); });
  }
  for (const [key, parse] of [["width", (v) => parseInt(v, 10)], ["lqe", parseFloat]]) {
    const input = $(`f-${key}`);
    input.addEventListener("input", () => { $(`f-${key}-out`).textContent = input.value; });
    input.addEventListener("change", () => { state.filters[key] = parse(input.value); refresh(); });
  }
  for (const button of document.querySelectorAll("#tabs button")) button.addEventListener("click", () => switchTab(button.dataset.tab));
  const user = $("user");
  user.value = localStorage.getItem("viscurate-user") || "";
  user.addEventListener("change", () => localStorage.setItem("viscurate-user", user.value.trim()));

  const grid = $("grid");
  grid.addEventListener("scroll", renderGrid, {passive: true});
  grid.addEventListener("keydown", (e) => {
    if (!$("detail").hidden) return;  // the open sample has the keys
    const moves = {ArrowLeft: "left", ArrowRight: "right", ArrowUp: "up", ArrowDown: "down"};
    if (moves[e.key]) { moveCursor(moves[e.key]); e.preventDefault(); }
    else if (e.key === "Enter") { openDetail(state.cursor); e.preventDefault(); }
  });

  $("d-close").addEventListener("click", closeDetail);
  $("d-prev").addEventListener("click", () => step(-1));
  $("d-next").addEventListener("click", () => step(1));
  for (const id of ["layer-objects", "layer-truth", "layer-faces", "layer-poses"]) $(id).addEventListener("change", drawOverlay);
  $("d-edit").addEventListener("click", () => setEditing(!state.editing));
  $("d-reviewed").addEventListener("click", toggleReviewed);
  $("edit-relabel").addEventListener("click", () => {
    const b = state.selectedBox;
    const name = $("edit-class").value.trim();
    if (!b) { showError(new Error("select a box first")); return; }
    if (b.field === TRUTH) edit({action: "relabel", field: b.field, index: b.index, name, expect: expectOf(b.box)});
    else reviewLabel("relabel", {name});
  });
  $("edit-accept").addEventListener("click", () => reviewLabel("accept"));
  $("edit-reject").addEventListener("click", () => reviewLabel("reject"));
  // the picture fits the room it has: it changes with the window and when the edit bar opens
  new ResizeObserver(() => { if (!$("detail").hidden) placeOverlay(); }).observe($("stage"));
  $("edit-delete").addEventListener("click", deleteSelected);
  const overlay = $("overlay");
  overlay.addEventListener("mousedown", startDraw);
  window.addEventListener("mousemove", moveDraw);
  window.addEventListener("mouseup", endDraw);
  document.addEventListener("keydown", (e) => {
    if ($("detail").hidden || e.target.tagName === "INPUT") return;
    if (e.key === "Escape") closeDetail();
    else if (e.key === "ArrowLeft") step(-1);
    else if (e.key === "ArrowRight") step(1);
    else if (e.key === "e") setEditing(!state.editing);
    else if (e.key === "r") toggleReviewed();
    else if ((e.key === "Delete" || e.key === "Backspace") && state.editing) deleteSelected();
    else if (e.key === "a" && state.editing) reviewLabel("accept");
    else if (e.key === "x" && state.editing) reviewLabel("reject");
    else return;
    e.preventDefault();
  });

  const canvas = $("map");
  canvas.addEventListener("mousedown", (e) => { map.selecting = true; map.lasso = [canvasPoint(e)]; });
  canvas.addEventListener("mousemove", (e) => { if (map.selecting) { map.lasso.push(canvasPoint(e)); drawMap(); } });
  canvas.addEventListener("mouseup", finishLasso);
  $("map-color").addEventListener("change", loadMap);
  $("map-clear").addEventListener("click", () => { map.lasso = []; state.lasso = null; drawMap(); refresh(); });

  $("review-kind").addEventListener("change", () => { review.page = 1; loadReview(); });
  $("review-state").addEventListener("change", () => { review.page = 1; loadReview(); });
  $("review-prev").addEventListener("click", () => { review.page = Math.max(1, review.page - 1); loadReview(); });
  $("review-next").addEventListener("click", () => { review.page += 1; loadReview(); });
  for (const button of document.querySelectorAll("[data-job]")) button.addEventListener("click", () => startJob(button));
  wireCurate();
}

function step(delta) {
  if (state.detailIndex == null) return;
  openDetail(state.detailIndex + delta);
  state.cursor = Math.min(Math.max(0, state.detailIndex + delta), state.length - 1);
}

function toggleReviewed() {
  const doc = state.detailDoc;
  if (!doc) return;
  edit({action: (doc.tags || []).includes("reviewed") ? "unmark_reviewed" : "mark_reviewed"});
}

function deleteSelected() {
  const b = state.selectedBox;
  if (!b) { showError(new Error("select a box first")); return; }
  if (b.field !== TRUTH) { showError(new Error("a model's box is rejected, not deleted")); return; }
  edit({action: "delete_box", field: b.field, index: b.index, expect: expectOf(b.box)});
}

async function start() {
  wire();
  let names = [], recent = null;
  try { ({datasets: names, recent} = await api("/v1/datasets")); } catch (e) { showError(e); }
  $("dataset").replaceChildren(...names.map((n) => el("option", {value: n, text: n})));
  if (!names.length) { showError(new Error("no datasets yet: create one with `viscurate ingest NAME FOLDER`")); return; }
  const saved = readHash();
  // a link's dataset, else the one used last (written last: ingested, labeled, edited)
  const name = saved?.d && names.includes(saved.d) ? saved.d : names.includes(recent) ? recent : names[0];
  if (saved?.d === name) {
    state.userQuery = saved.q || {};
    state.filters = saved.f || {};
    state.sort = saved.s || null;
  }
  state.filters = {width: 0, lqe: 1, ...state.filters};
  $("dataset").value = name;
  await chooseDataset(name);
  syncControls();
  $("grid").focus();
  document.body.dataset.ready = "true";
}

start();
