// integrand viewer: plain DOM, no build step. All data reaches the page through textContent,
// attribute setters or element.style — never innerHTML — so tokens and file names cannot inject markup.
"use strict";

const state = { selected: null, generation: 0, route: 0 };

function el(tag, props, children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "text") node.textContent = value;
    else if (key === "className") node.className = value;
    else if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children || []) if (child) node.appendChild(child);
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

function fmt(x) {
  if (x === null || x === undefined) return "n/a";
  const a = Math.abs(x);
  return a !== 0 && (a < 1e-3 || a >= 1e4) ? x.toExponential(2) : x.toPrecision(4).replace(/\.?0+$/, "");
}

async function api(path, params) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v !== "" && v !== null && v !== undefined) url.searchParams.set(k, v);
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw new Error(typeof body.detail === "string" ? body.detail : response.statusText);
  return body;
}

// Same blue-white-red scale as integrand.viz.color.diverging_rgb, limits symmetric around zero.
function diverging(value, limit) {
  if (value === null || value === undefined) return "transparent";
  const t = Math.max(-1, Math.min(1, value / (limit || 1)));
  const pos = Math.max(t, 0), neg = Math.max(-t, 0);
  const c = (x) => Math.round(255 * x);
  return `rgb(${c(1 - neg * 0.8)},${c(1 - (pos + neg) * 0.8)},${c(1 - pos * 0.8)})`;
}

// Whitespace tokens get visible labels (same marks as integrand.viz.labels.visible_token).
function label(tok) {
  const out = String(tok).replace(/\r\n|\n|\r/g, "\u23ce").replace(/\t/g, "\u21e5");
  if (out === "") return "\u2205";
  return /^\s+$/.test(out) ? "\u2423".repeat(out.length) : out;
}

// Natural order: runs of digits compare by value ("2" before "10").
const natural = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

function naturalSort(items, key) {
  return [...items].sort((a, b) => natural.compare(key(a), key(b)));
}

// A table of rows (objects) whose columns with no value in any row are left out, so no column is all "n/a".
function dataTable(id, columns, rows, rowProps) {
  const shown = columns.filter((c) => rows.some((r) => { const v = c.value(r); return v !== null && v !== undefined && v !== ""; }));
  const table = el("table", id ? { id } : {}, [el("tr", {}, shown.map((c) => el("th", { text: c.title })))]);
  for (const r of rows) {
    const row = el("tr", rowProps ? rowProps(r) : {}, shown.map((c) => {
      const v = c.value(r);
      return el("td", c.num ? { className: "num", text: typeof v === "number" ? fmt(v) : String(v ?? "") } : { text: String(v ?? "") });
    }));
    table.appendChild(row);
  }
  return { table, shown: shown.map((c) => c.title) };
}

// A two-column table of names and values (a corpus manifest, a result's parameters); text only.
function keyValueTable(id, title, entries) {
  const table = el("table", { id, className: "manifest" }, [el("tr", {}, [el("th", { text: title }), el("th", { text: "value" })])]);
  for (const [k, v] of entries) {
    table.appendChild(el("tr", {}, [el("td", { className: "key", text: k }), el("td", { className: "value", text: String(v) })]));
  }
  return table;
}

function manifestTable(manifest) {
  return keyValueTable("manifest", "manifest", naturalSort(Object.entries(manifest), (e) => e[0]));
}

function paramsTable(params) {
  // In the result's own order: what was explained (method, target, baseline) comes first.
  return keyValueTable("params", "parameter", Object.entries(params));
}

function pngSrc(b64) {
  // Only base64 from the API becomes an image source; anything else is dropped.
  return /^[A-Za-z0-9+/=]+$/.test(b64 || "") ? "data:image/png;base64," + b64 : "";
}

function legend(limit) {
  return el("div", { className: "legend" }, [
    el("span", { text: "-" + fmt(limit) }), el("span", { className: "scale" }), el("span", { text: "+" + fmt(limit) }),
  ]);
}

function filterParams() {
  const form = document.getElementById("filters");
  const out = {};
  for (const [k, v] of new FormData(form).entries()) if (v !== "") out[k] = v;
  return out;
}

function fillSelect(select, values) {
  const current = select.value;
  clear(select).appendChild(el("option", { value: "", text: "any" }));
  for (const v of values) select.appendChild(el("option", { value: v, text: v }));
  select.value = values.includes(current) ? current : "";
}

// ---------- panels ----------

function imagePanel(p) {
  const figure = (src, alt, caption) => el("figure", { className: "img" }, [
    el("img", { className: "heat", alt, src: pngSrc(src) }), el("figcaption", { text: caption }),
  ]);
  const imgs = [figure(p.heatmap_png, p.name + " heatmap", "attribution")];
  if (p.overlay_png) imgs.push(figure(p.overlay_png, p.name + " overlay", "overlay on the input"));
  return el("div", { "data-panel": "image" }, [...imgs, legend(p.limit)]);
}

function tokenPanel(p) {
  const box = el("div", { className: "tokens", "data-panel": "tokens" });
  p.tokens.forEach((tok, i) => {
    const span = el("span", { className: "tok", text: label(tok), title: fmt(p.scores[i]) });
    span.style.backgroundColor = diverging(p.scores[i], p.limit);
    box.appendChild(span);
  });
  return el("div", {}, [box, legend(p.limit)]);
}

function matrixPanel(p) {
  const table = el("table", { "data-panel": "matrix" });
  const head = el("tr", {}, [el("th")]);
  for (const s of p.sources) head.appendChild(el("th", { className: "src", text: label(s) }));
  table.appendChild(head);
  p.targets.forEach((t, i) => {
    const row = el("tr", {}, [el("th", { text: label(t) })]);
    p.values[i].forEach((v) => {
      const cell = el("td", { className: "cell", title: fmt(v) });
      cell.style.backgroundColor = diverging(v, p.limit);
      row.appendChild(cell);
    });
    table.appendChild(row);
  });
  return el("div", {}, [table, legend(p.limit)]);
}

function featurePanel(p) {
  const order = p.features.map((_, i) => i).sort((a, b) => Math.abs(p.scores[b] || 0) - Math.abs(p.scores[a] || 0));
  const table = el("table", { "data-panel": "features" }, [
    el("tr", {}, [el("th", { text: "feature" }), el("th", { text: p.name }), el("th")]),
  ]);
  for (const i of order.slice(0, 25)) {
    const v = p.scores[i];
    const bar = el("span", { className: "bar" });
    bar.style.width = `${Math.round((100 * Math.abs(v || 0)) / (p.limit || 1))}px`;
    bar.style.backgroundColor = v > 0 ? "#c33" : "#36c";
    table.appendChild(el("tr", {}, [el("td", { text: label(p.features[i]) }), el("td", { className: "num", text: fmt(v) }), el("td", {}, [bar])]));
  }
  return table;
}

function seriesPanel(p) {
  const ns = "http://www.w3.org/2000/svg";
  const box = el("div", { "data-panel": "series" });
  const width = 480, height = 60;
  p.channels.forEach((name, c) => {
    const values = p.values[c];
    const dx = width / values.length;
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    values.forEach((v, i) => {
      const rect = document.createElementNS(ns, "rect");
      rect.setAttribute("x", i * dx);
      rect.setAttribute("width", dx + 0.05);
      rect.setAttribute("height", height);
      rect.setAttribute("fill", diverging(v, p.limit));
      svg.appendChild(rect);
    });
    if (p.signal) {
      const s = p.signal[c].map((v) => v || 0);
      const lo = Math.min(...s), hi = Math.max(...s), span = hi - lo || 1;
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("points", s.map((v, i) => `${(i + 0.5) * dx},${height - 4 - ((height - 8) * (v - lo)) / span}`).join(" "));
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", "#222");
      svg.appendChild(line);
    }
    box.appendChild(el("div", { className: "panel-name", text: name }));
    box.appendChild(svg);
  });
  box.appendChild(legend(p.limit));
  return box;
}

const PANELS = { image: imagePanel, tokens: tokenPanel, matrix: matrixPanel, features: featurePanel, series: seriesPanel };

function infoLine(info) {
  const parts = [`example ${info.index}`];
  if (info.label !== null) parts.push(`label ${info.label}`);
  if (info.prediction !== null) parts.push(`prediction ${info.prediction}`);
  if (info.score !== null) parts.push(`score ${fmt(info.score)}`);
  parts.push(`rel. error ${fmt(info.relative_error)}`);
  if (info.steps !== null) parts.push(`steps ${info.steps}`);
  const div = el("div", { className: "info", text: parts.join(", ") });
  if (info.converged === false) div.appendChild(el("span", { className: "bad", text: "  not converged" }));
  return div;
}

// ---------- pages ----------

function current(generation) {
  return generation === state.route;
}

async function showResult(path, generation) {
  const data = await api("/api/results/" + path.split("/").map(encodeURIComponent).join("/"), filterParams());
  if (!current(generation)) return;
  const detail = clear(document.getElementById("detail"));
  const s = data.summary;
  detail.appendChild(el("h2", { text: s.title || s.path }));
  detail.appendChild(el("div", { className: "muted", text: `${s.path} · ${s.method} · ${s.kind} · ${s.examples.length} of ${s.total_examples} examples shown` }));
  if (Object.keys(data.params).length) detail.appendChild(paramsTable(data.params));
  for (const ex of data.examples) {
    const card = el("div", { className: "card", "data-example": ex.info.index }, [infoLine(ex.info)]);
    for (const p of ex.panels) {
      card.appendChild(el("div", { className: "panel" }, [el("div", { className: "panel-name", text: p.name }), PANELS[p.type](p)]));
    }
    detail.appendChild(card);
  }
  if (!data.examples.length) detail.appendChild(el("p", { className: "muted", text: "No example passes the filters." }));
}

const DOC_COLUMNS = [
  { title: "document", value: (r) => r.doc_id },
  { title: "label", value: (r) => r.label },
  { title: "prediction", value: (r) => r.prediction },
  { title: "rel. error", value: (r) => r.relative_error, num: true },
  { title: "tokens", value: (r) => r.tokens, num: true },
  { title: "text", value: (r) => (r.preview || "").replace(/\r\n|\n|\r/g, "\u23ce").replace(/\t/g, "\u21e5") },
];

function docTable(run, table) {
  // The server sends documents in natural id order; columns no document has a value for are left out.
  const { table: out } = dataTable("documents", DOC_COLUMNS, table.rows, (r) => ({ className: "doc", "data-doc": r.doc_id }));
  out.querySelectorAll("tr.doc").forEach((row) => row.addEventListener("click", () => showDocument(run, row.dataset.doc)));
  return out;
}

const CUE_COLUMNS = [
  { title: "class", value: (r) => r.cls },
  { title: "rank", value: (r) => r.rank, num: true },
  { title: "token", value: (r) => label(r.token) },
  { title: "mean", value: (r) => r.mean_score, num: true },
  { title: "sum", value: (r) => r.total_score, num: true },
  { title: "tf-idf weight", value: (r) => r.weight, num: true },
  { title: "documents", value: (r) => r.documents, num: true },
];

async function showDocument(run, docId) {
  const box = clear(document.getElementById("document"));
  const panel = await api("/api/corpus/document", { run, doc_id: docId });
  box.appendChild(el("h3", { text: panel.name }));
  box.appendChild(tokenPanel(panel));
}

async function showCorpus(run, generation) {
  const f = filterParams();
  delete f.kind;
  const [table, cues] = await Promise.all([api("/api/corpus/documents", { run, ...f }), api("/api/corpus/cues", { run, top: 10 })]);
  if (!current(generation)) return;
  const detail = clear(document.getElementById("detail"));
  const c = table.corpus;
  detail.appendChild(el("h2", { text: c.path }));
  detail.appendChild(el("div", { className: "muted", text: `${c.documents} documents · ${c.tokens} tokens · ${c.shards} shards · classes: ${c.classes.join(", ")}` }));
  if (Object.keys(c.manifest).length) detail.appendChild(manifestTable(c.manifest));
  detail.appendChild(el("h3", { text: `Documents (${table.total} pass the filters)` }));
  detail.appendChild(docTable(run, table));
  detail.appendChild(el("div", { id: "document" }));
  detail.appendChild(el("h3", { text: `Lexical cues per class (by ${cues.by})` }));
  detail.appendChild(dataTable("cues", CUE_COLUMNS, cues.rows).table);
}

function showReport(path) {
  const detail = clear(document.getElementById("detail"));
  detail.appendChild(el("h2", { text: path }));
  // The server sends reports with a CSP sandbox; the iframe sandbox is a second lock.
  detail.appendChild(el("iframe", { className: "report", sandbox: "", src: "/reports/" + path.split("/").map(encodeURIComponent).join("/") }));
}

// ---------- lists and routing ----------

function link(kind, path, label, extra) {
  const li = el("li", { "data-kind": kind, "data-path": path }, [el("a", { href: `#${kind}=${encodeURIComponent(path)}`, text: label })]);
  if (extra) li.appendChild(el("span", { className: extra.bad ? "muted bad" : "muted", text: " " + extra.text }));
  return li;
}

async function loadLists() {
  // Filter changes can overlap; only the latest refresh may write the lists.
  const generation = ++state.generation;
  const [data, corporaData, reportsData] = await Promise.all([
    api("/api/results", filterParams()), api("/api/corpora"), api("/api/reports"),
  ]);
  if (generation !== state.generation) return false;
  document.getElementById("root").textContent = data.root;
  fillSelect(document.getElementById("f-label"), data.labels);
  fillSelect(document.getElementById("f-prediction"), data.predictions);
  const list = clear(document.getElementById("results"));
  for (const r of naturalSort(data.results, (x) => x.path)) {
    const extra = r.error ? { text: r.error, bad: true } : { text: `${r.kind} · ${r.examples.length}/${r.total_examples}` };
    list.appendChild(link("result", r.path, r.path, extra));
  }
  if (!data.results.length) list.appendChild(el("li", { className: "muted", text: "none match" }));
  const corpora = clear(document.getElementById("corpora"));
  for (const c of naturalSort(corporaData.corpora, (x) => x.path)) {
    // A damaged run stays in the list, marked, with the reason (e.g. which shard cannot be read).
    const extra = c.damaged ? { text: `damaged: ${c.error}`, bad: true } : c.error ? { text: c.error, bad: true } : { text: `${c.documents} docs` };
    const li = corpora.appendChild(link("corpus", c.path, c.path, extra));
    if (c.damaged) li.classList.add("damaged");
  }
  const reports = clear(document.getElementById("reports"));
  for (const r of naturalSort(reportsData.reports, (x) => x)) reports.appendChild(link("report", r, r));
  markActive();
  return true;
}

function markActive() {
  for (const li of document.querySelectorAll(".list li")) {
    li.classList.toggle("active", state.selected !== null && li.dataset.kind === state.selected.kind && li.dataset.path === state.selected.path);
  }
}

async function route() {
  const hash = window.location.hash.slice(1);
  const eq = hash.indexOf("=");
  state.selected = eq > 0 ? { kind: hash.slice(0, eq), path: decodeURIComponent(hash.slice(eq + 1)) } : null;
  markActive();
  if (!state.selected) return;
  const { kind, path } = state.selected;
  const generation = ++state.route;
  try {
    if (kind === "result") await showResult(path, generation);
    else if (kind === "corpus") await showCorpus(path, generation);
    else if (kind === "report") showReport(path);
  } catch (err) {
    clear(document.getElementById("detail")).appendChild(el("p", { className: "bad", text: String(err.message || err) }));
  }
}

async function refresh() {
  try {
    if (await loadLists()) await route();
  } catch (err) {
    clear(document.getElementById("detail")).appendChild(el("p", { className: "bad", text: String(err.message || err) }));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("filters");
  form.addEventListener("change", refresh);
  form.addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
  document.getElementById("f-clear").addEventListener("click", () => { form.reset(); refresh(); });
  window.addEventListener("hashchange", route);
  refresh();
});
