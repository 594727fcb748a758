// git exp ui: the page. Every string from a run goes into the DOM as text
// (textContent, createTextNode, attribute values): never as HTML. Listing,
// filtering, sorting and diffing are done by the server's services; this file
// draws what the API answers. In a report (`git exp report`) the answers are
// inline (<script type="application/json" id="gitexp-data">) and nothing is fetched.
"use strict";
(function () {
  const MAX_CELL = 120;
  const MAX_CURVE_RUNS = 50;
  const POLL_MS = 2500;
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const dataEl = document.getElementById("gitexp-data");
  const REPORT = dataEl ? JSON.parse(dataEl.textContent) : null;
  const tokenEl = document.querySelector('meta[name="gitexp-token"]');
  const TOKEN = tokenEl ? tokenEl.getAttribute("content") : "";
  const $ = (id) => document.getElementById(id);

  const state = {
    query: { where: "", experiment: "", status: "", tag: "", sweep: "", columns: "", group_by: "",
      baseline: "", sort: "", offset: 0, limit: 100 },
    page: null, version: null, selected: new Map(), facets: null, metricKeys: [],
    chartKeys: [], plots: [], brushes: {}, runPage: null,
  };

  // ------------------------------------------------------------- helpers
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return e;
  }
  const svgNS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    const e = document.createElementNS(svgNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }
  function clip(text, n) {
    const s = String(text);
    return s.length > n ? s.slice(0, n - 1) + "…" : s;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "number") {
      if (Number.isInteger(v)) return String(v);
      return String(Number(v.toPrecision(6)));
    }
    if (typeof v === "string") return v;
    return JSON.stringify(v);
  }
  function num(v) {
    if (typeof v === "number") return v;
    if (v === "NaN") return NaN;
    if (v === "Infinity") return Infinity;
    if (v === "-Infinity") return -Infinity;
    return null;
  }
  function bytes(n) {
    if (n === null || n === undefined) return "";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0; let x = n;
    while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
    return (i ? x.toFixed(1) : String(x)) + " " + units[i];
  }
  function address(row) {
    const ref = row.ref || "";
    return ref.startsWith("refs/experiments/") ? ref.slice("refs/experiments/".length) : String(row.id);
  }
  function runUrl(addr) { return "#run/" + encodeURIComponent(addr); }
  function apiRun(addr) { return "/api/runs/" + encodeURIComponent(addr); }
  function artifactUrl(addr, path) {
    return apiRun(addr) + "/artifacts/" + path.split("/").map(encodeURIComponent).join("/");
  }
  // a User Timing mark per thing drawn: bench/bench_ui.py reads them
  function mark(name) { if (window.performance && performance.mark) performance.mark(name); }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function showError(msg) { $("error").textContent = msg ? clip(msg, 2000) : ""; }

  async function api(path, params) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== "" && v !== null && v !== undefined) qs.set(k, String(v));
    }
    const url = path + (qs.toString() ? "?" + qs.toString() : "");
    const res = await fetch(url, { headers: { Accept: "application/json" } });
    const body = await res.json().catch(() => ({ error: res.statusText }));
    if (!res.ok) throw new Error(body.error || res.statusText);
    return body;
  }
  async function post(path, body) {
    const res = await fetch(path, {
      method: "POST", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json", "X-GitExp-Token": TOKEN },
    });
    const out = await res.json().catch(() => ({ error: res.statusText }));
    if (!res.ok) throw new Error(out.error || res.statusText);
    return out;
  }

  // The table's first answer: the page's <link rel=preload> asked for it (the
  // server wrote the address from the filters of the page's own address) while
  // the scripts loaded.
  const preloadEl = document.querySelector('link[rel="preload"][as="fetch"]');
  let preloaded = preloadEl ? preloadEl.href : null;
  async function firstRuns() {
    const url = preloaded; preloaded = null;
    const res = await fetch(url);
    const body = await res.json().catch(() => ({ error: res.statusText }));
    if (!res.ok) throw new Error(body.error || res.statusText);
    return body;
  }

  // The data source: the API, or the report's inline answers.
  const source = {
    runs: (q) => REPORT ? Promise.resolve(REPORT.runs) : preloaded ? firstRuns() : api("/api/runs", q),
    facets: () => REPORT ? Promise.resolve(REPORT.facets) : api("/api/facets"),
    sweeps: () => REPORT ? Promise.resolve({ sweeps: REPORT.sweep ? [REPORT.sweep] : [] }) : api("/api/sweeps"),
    sweep: (id) => REPORT ? Promise.resolve(REPORT.sweep) : api("/api/sweeps/" + encodeURIComponent(id)),
    metrics: (runs, keys, maxPoints) => {
      if (!REPORT) return api("/api/metrics", { runs: runs.join(","), keys: keys.join(","), max_points: maxPoints });
      const want = new Set(runs); const k = new Set(keys);
      return Promise.resolve({ series: REPORT.metrics.series.filter(
        (s) => want.has(s.experiment + "/" + s.run) && k.has(s.key)) });
    },
  };

  // ---------------------------------------------------------- the table
  function readFilters() {
    const q = state.query;
    q.where = $("where").value.trim();
    q.experiment = $("experiment").value;
    q.status = $("status").value;
    q.tag = $("tag").value.trim();
    q.sweep = $("sweep").value;
    q.columns = $("columns").value.trim();
    q.group_by = $("group-by").value.trim();
    q.baseline = $("baseline").value.trim();
  }

  // An async render whose answer comes after a newer call of the same render
  // (a sort clicked twice, a fifth run checked while four are drawn) draws
  // nothing: the answers of a server may come back in any order.
  const turns = {};
  function turn(name) { const n = (turns[name] = (turns[name] || 0) + 1); return () => turns[name] === n; }

  async function loadTable(quiet) {
    const current = turn("table");
    let page;
    try {
      page = await source.runs(state.query);
    } catch (err) {
      if (!current()) return false;
      if (!quiet) { showError(err.message); markTable("error"); }
      return false;
    }
    if (!current()) return false;
    showError("");
    const changed = page.version !== state.version || !quiet;
    state.version = page.version;
    state.page = page;
    if (changed) renderTable(page);
    return changed;
  }

  function markTable(status) { $("runs").setAttribute("data-state", status); }

  function renderTable(page) {
    const table = $("runs");
    const thead = table.tHead; const tbody = table.tBodies[0];
    clear(thead); clear(tbody);
    const cols = page.columns;
    const head = el("tr");
    if (!page.grouped) head.appendChild(el("th", { class: "sel" }));
    const sort = state.query.sort;
    for (const c of cols) {
      const th = el("th", { "data-col": c, title: "sort by " + c }, clip(c, 60));
      if (!REPORT) {
        if (sort === c) th.appendChild(el("span", { class: "arrow" }, " ▲"));
        if (sort === "-" + c) th.appendChild(el("span", { class: "arrow" }, " ▼"));
        th.addEventListener("click", () => {
          state.query.sort = sort === c ? "-" + c : sort === "-" + c ? "" : c;
          state.query.offset = 0; filtersToUrl();
          loadTable(false).then(refreshCharts);
        });
      }
      head.appendChild(th);
    }
    thead.appendChild(head);
    for (const row of page.runs) {
      const tr = el("tr");
      let addr = null;
      if (!page.grouped) {
        addr = address(row);
        tr.setAttribute("data-run", addr);
        const box = el("input", { type: "checkbox", "aria-label": "select" });
        box.checked = state.selected.has(addr);
        if (box.checked) tr.classList.add("selected");
        box.addEventListener("change", () => {
          if (box.checked) state.selected.set(addr, row); else state.selected.delete(addr);
          tr.classList.toggle("selected", box.checked);
          selectionChanged();
        });
        tr.appendChild(el("td", { class: "sel" }, box));
      }
      for (const c of cols) {
        const v = row[c];
        const text = fmt(v);
        const td = el("td", { "data-col": c });
        if (typeof v === "number") td.className = "num";
        if (c.startsWith("delta(") && typeof v === "number") td.classList.add(v > 0 ? "up" : v < 0 ? "down" : "same");
        if (c === "id" && addr && !REPORT) td.appendChild(el("a", { href: runUrl(addr) }, clip(text, MAX_CELL)));
        else td.textContent = clip(text, MAX_CELL);
        if (text.length > MAX_CELL) td.title = clip(text, 2000);
        tr.appendChild(td);
      }
      tbody.appendChild(tr);
    }
    const q = state.query;
    const from = page.total ? q.offset + 1 : 0;
    const to = q.offset + page.runs.length;
    $("total").textContent = REPORT ? page.total + " runs"
      : `${from}–${to} of ${page.total} ${page.grouped ? "groups" : "runs"}`;
    $("prev").disabled = q.offset <= 0;
    $("next").disabled = to >= page.total;
    markTable("ready");
    mark("gitexp:table");
  }

  function selectionChanged() {
    const n = state.selected.size;
    $("selected-count").textContent = n ? n + " selected" : "";
    refreshCharts();
  }

  // ---------------------------------------------------------- the diff
  function kvTable(headers, rows, cls) {
    const t = el("table", { class: cls || "kv" });
    t.appendChild(el("tr", {}, ...headers.map((h) => el("th", {}, h))));
    for (const r of rows) {
      const tr = el("tr");
      for (const v of r) {
        const td = el("td", {}, clip(fmt(v), 400));
        if (typeof v === "number") td.className = "num";
        tr.appendChild(td);
      }
      t.appendChild(tr);
    }
    return t;
  }

  async function renderDiff() {
    const box = $("diff");
    const sel = [...state.selected.keys()];
    const current = turn("diff");
    if (REPORT || sel.length !== 2) { box.hidden = true; clear(box); return; }
    let d;
    try { d = await api("/api/diff", { a: sel[0], b: sel[1] }); } catch (err) {
      if (!current()) return;
      box.hidden = false; clear(box); box.appendChild(el("p", { class: "error" }, err.message)); return;
    }
    if (!current()) return;
    clear(box); box.hidden = false;
    box.appendChild(el("h2", {}, "Diff"));
    box.appendChild(el("p", {}, "a = ", el("b", {}, d.a.run), " (", String(d.a.name || ""), ")   b = ",
      el("b", {}, d.b.run), " (", String(d.b.name || ""), ")"));
    if (d.data_changed) box.appendChild(el("p", { class: "loud", id: "data-changed" }, "DATA CHANGED: the runs read different inputs"));
    box.appendChild(el("p", {}, d.same_fingerprint ? "same fingerprint (code, params, inputs, command)" : "different fingerprints"));
    box.appendChild(el("h3", {}, "Params that differ"));
    box.appendChild(d.params.length ? kvTable(["param", "a", "b"], d.params.map((p) => [p.key, p.a, p.b]), "kv diff-params")
      : el("p", {}, "(none)"));
    box.appendChild(el("h3", {}, "Metrics"));
    box.appendChild(kvTable(["metric", "a", "b", "b − a"], d.metrics.map((m) => [m.key, num(m.a) ?? m.a, num(m.b) ?? m.b, m.delta]), "kv diff-metrics"));
    if (d.inputs.length) {
      box.appendChild(el("h3", { class: "loud" }, "Inputs"));
      box.appendChild(kvTable(["input", "status", "a", "b"], d.inputs.map((x) => [x.path, x.status, (x.a || "").slice(0, 12), (x.b || "").slice(0, 12)])));
    }
    if (d.artifacts.length) {
      box.appendChild(el("h3", {}, "Artifacts"));
      box.appendChild(kvTable(["artifact", "status", "a size", "b size"], d.artifacts.map((x) => [x.role + ":" + x.path, x.status, bytes(x.a_size), bytes(x.b_size)])));
    }
    if (d.command) box.appendChild(kvTable(["command", "a", "b"], [["argv", d.command.a, d.command.b]]));
    const env = d.env || {};
    const envRows = (env.packages || []).map((p) => [p.name, p.a, p.b]);
    for (const part of ["python", "platform", "cpu", "gpus", "variables"]) if (env[part]) envRows.push([part, env[part].a, env[part].b]);
    if (envRows.length) { box.appendChild(el("h3", {}, "Environment")); box.appendChild(kvTable(["", "a", "b"], envRows)); }
    const c = d.code;
    box.appendChild(el("h3", {}, "Code"));
    box.appendChild(el("p", {}, `a ${String(c.a || "").slice(0, 12)}${c.a_dirty ? " (dirty)" : ""}   b ${String(c.b || "").slice(0, 12)}${c.b_dirty ? " (dirty)" : ""}`
      + (c.same_tree ? "   same tree" : "")));
    if (c.source_diff) box.appendChild(el("pre", { class: "code" }, c.source_diff));
  }

  // ---------------------------------------------------------- curves
  function ema(values, w) {
    if (!w) return values;
    const out = new Array(values.length); let acc = null;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v === null || !Number.isFinite(v)) { out[i] = null; continue; }
      acc = acc === null ? v : acc * w + v * (1 - w);
      out[i] = acc;
    }
    return out;
  }

  function xsOf(s, mode) {
    if (mode === "time") return s.time;
    if (mode === "relative") { const t0 = s.time.length ? s.time[0] : 0; return s.time.map((t) => t - t0); }
    return s.step;
  }

  // one chart: every series of `list` (same key) on one x; a band where downsampled
  function drawChart(container, key, list, opts) {
    const mode = opts.x; const logy = opts.logy; const w = opts.smooth;
    const xsAll = new Set();
    const perRun = list.map((s) => ({ s, x: xsOf(s, mode) }));
    for (const p of perRun) for (const x of p.x) xsAll.add(x);
    const xs = Float64Array.from([...xsAll].sort((a, b) => a - b));
    const index = new Map(); xs.forEach((x, i) => index.set(x, i));
    const data = [xs]; const series = [{ label: mode }]; const bands = []; const bandSeries = [];
    const fix = (v) => (v === null || !Number.isFinite(v) || (logy && v <= 0)) ? null : v;
    perRun.forEach((p, i) => {
      const color = COLORS[i % COLORS.length];
      const col = (vals) => { const a = new Array(xs.length).fill(undefined); p.x.forEach((x, j) => { a[index.get(x)] = fix(vals[j]); }); return a; };
      data.push(col(ema(p.s.value, w)));
      const label = clip((p.s.name ? p.s.name + " " : "") + p.s.run, 60);
      series.push({ label, stroke: color, width: 1.5, spanGaps: true, points: { show: false } });
      if (p.s.downsampled && p.s.min && p.s.max) {
        const hi = data.length; data.push(col(p.s.max));
        series.push({ label: label + " max", stroke: "transparent", spanGaps: true, points: { show: false } });
        const lo = data.length; data.push(col(p.s.min));
        series.push({ label: label + " min", stroke: "transparent", spanGaps: true, points: { show: false } });
        bands.push({ series: [hi, lo], fill: color + "33" });
        bandSeries.push(hi, lo);
      }
    });
    const box = el("div", { class: "chart", "data-key": key, "data-series": String(list.length), "data-bands": String(bands.length),
      "data-x": mode, "data-logy": String(logy), "data-x0": String(xs.length ? xs[0] : "") });
    box.appendChild(el("h4", {}, key));
    container.appendChild(box);
    const width = Math.max(320, Math.min(container.clientWidth || 800, 900));
    const plot = new uPlot({
      width, height: 260, series, bands,
      scales: { x: { time: mode === "time" }, y: logy ? { distr: 3 } : {} },
      legend: { show: true },
      cursor: { drag: { x: true, y: false } },
    }, data, box);
    // a band's edges are series of their own: out of the legend, which names the runs
    const rows = plot.root.querySelectorAll(".u-legend .u-series");
    for (const i of bandSeries) if (rows[i]) rows[i].style.display = "none";
    state.plots.push(plot);
    return plot;
  }

  function destroyPlots() { for (const p of state.plots) p.destroy(); state.plots = []; }

  async function renderCurves() {
    const panel = $("curves-panel"); const box = $("curves");
    const current = turn("curves");
    const runs = [...state.selected.keys()].slice(0, MAX_CURVE_RUNS);
    if (!runs.length || !state.metricKeys.length) { panel.hidden = true; destroyPlots(); clear(box); return; }
    panel.hidden = false;
    const picked = [...$("metric-keys").selectedOptions].map((o) => o.value);
    // nothing picked: the first metric the selected runs have (the sweep's, when one is shown)
    const rows = [...state.selected.values()];
    const has = (k) => rows.some((r) => r["metrics." + k] !== null && r["metrics." + k] !== undefined);
    const sweepKey = state.sweepMetric ? state.sweepMetric.slice("metrics.".length) : null;
    const fallback = sweepKey && has(sweepKey) ? sweepKey : state.metricKeys.find(has) || state.metricKeys[0];
    const keys = picked.length ? picked : [fallback];
    let answer;
    try { answer = await source.metrics(runs, keys, 1000); } catch (err) {
      if (!current()) return;
      destroyPlots(); clear(box); box.appendChild(el("p", { class: "error" }, err.message)); return;
    }
    if (!current()) return;
    destroyPlots(); clear(box);
    const opts = { x: $("xaxis").value, logy: $("logy").checked, smooth: Number($("smooth").value) };
    for (const key of keys) {
      const list = answer.series.filter((s) => s.key === key);
      if (!list.length) { box.appendChild(el("p", {}, key + ": no points")); continue; }
      drawChart(box, key, list, opts);
    }
    box.setAttribute("data-state", "ready");
    mark("gitexp:curves");
  }

  // ------------------------------------------------- parallel coordinates
  function chartRows() {
    if (state.selected.size >= 2) return [...state.selected.values()];
    return state.page && !state.page.grouped ? state.page.runs : [];
  }

  function axisOf(rows, col) {
    const vals = rows.map((r) => r[col]);
    const nums = vals.map(num).filter((v) => v !== null && Number.isFinite(v));
    const present = vals.filter((v) => v !== null && v !== undefined);
    if (present.length && nums.length === present.length) {
      let lo = Math.min(...nums); let hi = Math.max(...nums);
      if (lo === hi) { lo -= 0.5; hi += 0.5; }
      return { col, kind: "num", lo, hi, pos: (v) => { const n = num(v); return n === null || !Number.isFinite(n) ? null : (n - lo) / (hi - lo); } };
    }
    const cats = [...new Set(present.map(fmt))].sort();
    return { col, kind: "cat", cats, pos: (v) => v === null || v === undefined ? null : cats.length < 2 ? 0.5 : cats.indexOf(fmt(v)) / (cats.length - 1) };
  }

  function renderParcoords() {
    const panel = $("pc-panel"); const box = $("parcoords");
    const rows = chartRows();
    const metric = usable($("pc-metric"), rows, "metrics.");
    const params = [...new Set(rows.flatMap((r) => Object.keys(r).filter((k) => k.startsWith("params."))))].sort();
    if (rows.length < 2 || !params.length || !metric) { panel.hidden = true; clear(box); return; }
    panel.hidden = false; clear(box);
    const cols = [...params, metric];
    const axes = cols.map((c) => axisOf(rows, c));
    const W = Math.max(480, 130 * cols.length); const H = 300; const top = 30; const bottom = 20; const h = H - top - bottom;
    const xAt = (i) => 40 + i * ((W - 80) / Math.max(1, cols.length - 1));
    const yAt = (p) => top + (1 - p) * h;
    const root = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, id: "pc-svg" });
    const mAxis = axes[axes.length - 1];
    const lines = svg("g", { class: "lines" });
    const polylines = rows.map((r) => {
      const pts = [];
      axes.forEach((a, i) => { const p = a.pos(r[a.col]); if (p !== null) pts.push(`${xAt(i)},${yAt(p)}`); });
      const mp = mAxis.pos(r[metric]);
      const hue = mp === null ? 0 : Math.round(240 - 240 * mp);
      const line = svg("polyline", { points: pts.join(" "), fill: "none", stroke: mp === null ? "#999" : `hsl(${hue},70%,45%)`, "stroke-width": 1.5, class: "pc-line" });
      const t = svg("title", {}); t.textContent = clip(address(r), 200); line.appendChild(t);
      lines.appendChild(line);
      return { r, line };
    });
    root.appendChild(lines);
    const update = () => {
      let n = 0;
      for (const { r, line } of polylines) {
        const ok = axes.every((a) => {
          const b = state.brushes[a.col]; if (!b) return true;
          const p = a.pos(r[a.col]); return p !== null && p >= b[0] && p <= b[1];
        });
        line.setAttribute("class", ok ? "pc-line" : "pc-line dim");
        if (ok) n++;
      }
      $("pc-status").textContent = `${n} of ${rows.length} runs in the brushes`;
      root.setAttribute("data-in", String(n));
    };
    axes.forEach((a, i) => {
      const g = svg("g", { class: "axis", "data-col": a.col });
      g.appendChild(svg("line", { x1: xAt(i), x2: xAt(i), y1: top, y2: top + h, stroke: "#333" }));
      const label = svg("text", { x: xAt(i), y: 14, "text-anchor": "middle", class: "pc-label" });
      label.textContent = clip(a.col.replace(/^(params|metrics)\./, ""), 24); g.appendChild(label);
      const ticks = a.kind === "num" ? [[0, a.lo], [1, a.hi]] : a.cats.slice(0, 12).map((c, j) => [a.cats.length < 2 ? 0.5 : j / (a.cats.length - 1), c]);
      for (const [p, v] of ticks) {
        const t = svg("text", { x: xAt(i) + 4, y: yAt(p) + 4, class: "pc-tick" }); t.textContent = clip(fmt(v), 16); g.appendChild(t);
      }
      const rect = svg("rect", { x: xAt(i) - 12, y: top, width: 24, height: h, class: "pc-hit", fill: "transparent" });
      const brush = svg("rect", { x: xAt(i) - 8, width: 16, class: "pc-brush", y: 0, height: 0 });
      g.appendChild(brush); g.appendChild(rect);
      const drawBrush = () => {
        const b = state.brushes[a.col];
        if (!b) { brush.setAttribute("height", 0); return; }
        brush.setAttribute("y", yAt(b[1])); brush.setAttribute("height", Math.max(1, yAt(b[0]) - yAt(b[1])));
      };
      drawBrush();
      rect.addEventListener("mousedown", (ev) => {
        ev.preventDefault();
        const bound = root.getBoundingClientRect();
        const pAt = (cy) => Math.min(1, Math.max(0, 1 - (cy - bound.top - top) / h));
        const start = pAt(ev.clientY);
        const move = (e2) => { const p = pAt(e2.clientY); state.brushes[a.col] = [Math.min(start, p), Math.max(start, p)]; drawBrush(); update(); };
        const up = (e2) => {
          document.removeEventListener("mousemove", move); document.removeEventListener("mouseup", up);
          if (Math.abs(pAt(e2.clientY) - start) < 0.01) delete state.brushes[a.col];
          drawBrush(); update();
        };
        document.addEventListener("mousemove", move); document.addEventListener("mouseup", up);
      });
      root.appendChild(g);
    });
    box.appendChild(root);
    update();
  }

  // a picker's choice, or the first column of that kind the rows have when they lack it
  function usable(sel, rows, prefix) {
    const has = (c) => rows.some((r) => r[c] !== null && r[c] !== undefined);
    if (sel.value && has(sel.value)) return sel.value;
    const first = [...sel.options].map((o) => o.value).find((c) => c.startsWith(prefix) && has(c));
    if (first) sel.value = first;
    return sel.value;
  }

  function renderScatter() {
    const panel = $("scatter-panel"); const box = $("scatter");
    const rows = chartRows();
    const xc = usable($("sc-x"), rows, "params."); const yc = usable($("sc-y"), rows, "metrics.");
    if (rows.length < 2 || !xc || !yc) { panel.hidden = true; clear(box); return; }
    panel.hidden = false; clear(box);
    const ax = axisOf(rows, xc); const ay = axisOf(rows, yc);
    const W = 520; const H = 300; const m = 40;
    const root = svg("svg", { width: W, height: H, id: "scatter-svg" });
    root.appendChild(svg("rect", { x: m, y: 10, width: W - m - 10, height: H - m - 10, fill: "none", stroke: "#ccc" }));
    for (const [a, x, y, anchor] of [[ax, W / 2, H - 8, "middle"], [ay, 4, 20, "start"]]) {
      const t = svg("text", { x, y, "text-anchor": anchor, class: "pc-label" }); t.textContent = clip(a.col, 40); root.appendChild(t);
    }
    let n = 0;
    for (const r of rows) {
      const px = ax.pos(r[xc]); const py = ay.pos(r[yc]);
      if (px === null || py === null) continue;
      const c = svg("circle", { cx: m + px * (W - m - 20) + 5, cy: 15 + (1 - py) * (H - m - 20), r: 4, class: "dot" });
      const t = svg("title", {}); t.textContent = clip(`${address(r)}: ${fmt(r[xc])}, ${fmt(r[yc])}`, 300); c.appendChild(t);
      root.appendChild(c); n++;
    }
    root.setAttribute("data-points", String(n));
    box.appendChild(root);
  }

  function fillSelect(sel, values, keep) {
    const old = keep ? [...sel.selectedOptions].map((o) => o.value) : [sel.value];
    clear(sel);
    for (const v of values) {
      const o = el("option", { value: v }, clip(v, 80));
      if (old.includes(v)) o.selected = true;
      sel.appendChild(o);
    }
  }

  function updatePickers() {
    const f = state.facets || { params: [], metrics: [] };
    state.metricKeys = f.metrics.map((k) => k.slice("metrics.".length));
    fillSelect($("metric-keys"), state.metricKeys, true);
    const sort = state.query.sort.replace(/^-/, "");
    const pcm = $("pc-metric"); const before = pcm.value;
    fillSelect(pcm, f.metrics, false);
    const prefer = state.sweepMetric && f.metrics.includes(state.sweepMetric) ? state.sweepMetric : null;
    if (!before && f.metrics.length) pcm.value = prefer || (f.metrics.includes("metrics." + sort) ? "metrics." + sort : f.metrics.includes(sort) ? sort : f.metrics[0]);
    const scx = $("sc-x"); const scy = $("sc-y"); const bx = scx.value; const by = scy.value;
    fillSelect(scx, f.params, false); fillSelect(scy, f.metrics, false);
    if (!bx && f.params.length) scx.value = f.params[0];
    if (!by && f.metrics.length) scy.value = prefer || f.metrics[0];
  }

  async function loadFacets() {
    try { state.facets = await source.facets(); } catch (err) { showError(err.message); return; }
    const f = state.facets;
    const exp = $("experiment"); const cur = state.query.experiment;
    clear(exp); exp.appendChild(el("option", { value: "" }, "all"));
    for (const e of f.experiments) exp.appendChild(el("option", { value: e }, clip(e, 80)));
    if (cur && !f.experiments.includes(cur)) exp.appendChild(el("option", { value: cur }, clip(cur, 80)));
    exp.value = cur;
    const st = $("status"); const curS = state.query.status;
    clear(st); st.appendChild(el("option", { value: "" }, "any"));
    for (const s of f.statuses) st.appendChild(el("option", { value: s }, s));
    st.value = curS;
    updatePickers();
  }

  function refreshCharts() {
    renderDiff();
    renderCurves();
    renderParcoords();
    renderScatter();
  }

  // ---------------------------------------------------------- sweeps
  const FILTERS = ["where", "experiment", "status", "tag", "sweep", "columns", "group_by", "baseline", "sort"]; // server.py FILTERS
  const INPUT = { group_by: "group-by" };

  async function loadSweeps() {
    let list;
    try { list = (await source.sweeps()).sweeps || []; } catch (err) { return; }
    const sel = $("sweep"); const cur = state.query.sweep;
    clear(sel); sel.appendChild(el("option", { value: "" }, "none"));
    for (const w of list) {
      sel.appendChild(el("option", { value: String(w.id) },
        clip(`${w.id} · ${w.experiment || ""} · ${w.method || ""}`, 80)));
    }
    if (cur && ![...sel.options].some((o) => o.value === cur)) sel.appendChild(el("option", { value: cur }, cur));
    sel.value = cur;
  }

  async function renderSweep() {
    const box = $("sweep-panel"); const id = state.query.sweep;
    const current = turn("sweep");
    if (!id) { box.hidden = true; clear(box); state.sweepMetric = null; return; }
    let d;
    try { d = await source.sweep(id); } catch (err) {
      if (!current()) return;
      box.hidden = false; clear(box); box.appendChild(el("p", { class: "error" }, err.message)); return;
    }
    if (!current()) return;
    if (!d) { box.hidden = true; return; }
    clear(box); box.hidden = false;
    const metric = d.metric || {};
    state.sweepMetric = metric.name ? "metrics." + metric.name : null;
    const counts = Object.entries(d.counts || {}).map(([k, v]) => `${v} ${k}`).join(", ");
    box.appendChild(el("h2", {}, "Sweep ", el("span", { id: "sweep-id" }, String(d.id))));
    const best = d.best || {};
    box.appendChild(kvTable(["", ""], [
      ["experiment", d.experiment], ["method", d.method], ["status", d.status],
      ["metric", metric.name ? `${metric.name} (${metric.goal || ""})` : ""],
      ["trials", `${(d.trials || []).length}${counts ? " (" + counts + ")" : ""}`],
    ], "kv sweep-info"));
    if (best.run) {
      const addr = String(best.run).replace(/^refs\/experiments\//, "");
      box.appendChild(el("p", { id: "sweep-best" }, "best: trial " + String(best.trial) + ", ",
        REPORT ? el("b", {}, addr) : el("a", { href: runUrl(addr) }, addr),
        " = " + fmt(num(best.value) ?? best.value) + "  " + clip(JSON.stringify(best.params || {}), 300)));
    }
    if (state.sweepMetric && state.facets && state.facets.metrics.includes(state.sweepMetric)) {
      $("pc-metric").value = state.sweepMetric; $("sc-y").value = state.sweepMetric;
      renderParcoords(); renderScatter();
    }
    if ((d.importance || []).length) {
      box.appendChild(kvTable(["param", "importance", "measure"],
        d.importance.map((x) => [x.param, num(x.importance) ?? x.importance, x.measure]), "kv sweep-importance"));
    }
  }

  function filtersFromUrl() {
    const qs = new URLSearchParams(location.search);
    for (const k of FILTERS) {
      const v = qs.get(k);
      if (v === null) continue;
      state.query[k] = v;
      const input = $(INPUT[k] || k);
      if (!input) continue;
      if (input.tagName === "SELECT" && ![...input.options].some((o) => o.value === v)) input.appendChild(el("option", { value: v }, clip(v, 80)));
      input.value = v;
    }
  }

  function filtersToUrl() {
    const qs = new URLSearchParams();
    for (const k of FILTERS) if (state.query[k]) qs.set(k, state.query[k]);
    const s = qs.toString();
    history.replaceState(null, "", location.pathname + (s ? "?" + s : "") + location.hash);
  }

  // ---------------------------------------------------------- run page
  function section(title, ...children) { return el("section", { class: "run-section" }, el("h3", {}, title), ...children); }

  async function renderRun(addr, quiet) {
    const view = $("run-view");
    const current = turn("run");
    let d;
    try { d = await api(apiRun(addr)); } catch (err) {
      if (!current()) return;
      if (!quiet) { clear(view); view.appendChild(el("p", { class: "error", role: "alert" }, err.message)); }
      return;
    }
    if (!current()) return;
    if (quiet && state.runPage && state.runPage.version === d.version) return;
    state.runPage = d;
    destroyPlots(); clear(view);
    const info = d.info || {};
    view.appendChild(el("p", {}, el("a", { href: "#" }, "← all runs")));
    view.appendChild(el("h2", { id: "run-title" }, clip(info.name || d.run, 200)));
    view.appendChild(kvTable(["", ""], [
      ["run", d.run], ["status", info.status], ["start", info.start_time], ["end", info.end_time],
      ["duration", info.duration], ["command", (info.command || []).join(" ")], ["exit code", info.exit_code], ["cwd", info.cwd_rel || info.cwd],
      ["host", info.host], ["user", info.user], ["commit", d.sha],
    ], "kv run-info"));
    const tags = el("ul", { id: "run-tags", class: "tags" }, ...(info.tags || []).map((t) => el("li", {}, clip(t, 200))));
    const notes = el("ul", { id: "run-notes" }, ...(info.notes || []).map((n) => el("li", {}, clip(`${n.time || ""}  ${n.text || ""}`, 4000))));
    const tagForm = el("form", { id: "tag-form" }, el("input", { name: "tag", placeholder: "new tag", maxlength: "200" }), el("button", { type: "submit" }, "Add tag"));
    const noteForm = el("form", { id: "note-form" }, el("input", { name: "note", placeholder: "a note", size: "50", maxlength: "4000" }), el("button", { type: "submit" }, "Add note"));
    const formError = el("p", { class: "error", id: "edit-error" });
    tagForm.addEventListener("submit", async (ev) => {
      ev.preventDefault(); const v = tagForm.elements.tag.value.trim(); if (!v) return;
      try { await post(apiRun(addr) + "/tags", { add: [v] }); await renderRun(addr, false); } catch (err) { formError.textContent = err.message; }
    });
    noteForm.addEventListener("submit", async (ev) => {
      ev.preventDefault(); const v = noteForm.elements.note.value.trim(); if (!v) return;
      try { await post(apiRun(addr) + "/notes", { text: v }); await renderRun(addr, false); } catch (err) { formError.textContent = err.message; }
    });
    view.appendChild(section("Tags and notes", tags, notes, tagForm, noteForm, formError));
    const params = Object.entries(flatten(d.params || {}, ""));
    view.appendChild(section("Params", kvTable(["param", "value"], params, "kv run-params")));
    const metrics = Object.entries(d.metrics || {});
    view.appendChild(section("Metrics", kvTable(["metric", "final", "min", "max", "last step", "points"],
      metrics.map(([k, m]) => [k, num(m.final) ?? m.final, num(m.min) ?? m.min, num(m.max) ?? m.max, m.last_step, m.count]), "kv run-metrics")));
    const curves = el("div", { id: "run-curves" });
    view.appendChild(section("Curves (drag to zoom, double-click to reset)", curves));
    const arts = el("table", { class: "kv", id: "run-artifacts" }, el("tr", {}, ...["artifact", "role", "size", "BLAKE3", ""].map((h) => el("th", {}, h))));
    for (const a of d.artifacts || []) {
      const link = a.kind && a.kind !== "file" ? el("span", {}, a.kind) : el("a", { href: artifactUrl(addr, a.path), download: "" }, "download");
      arts.appendChild(el("tr", {}, el("td", {}, clip(a.path, 300)), el("td", {}, a.role), el("td", { class: "num" }, bytes(a.size)), el("td", {}, String(a.blake3).slice(0, 16)), el("td", {}, link)));
    }
    view.appendChild(section("Artifacts", arts));
    const inputs = (d.inputs || []).map((a) => [a.source || a.path, bytes(a.size), String(a.blake3).slice(0, 16), a.stored === false ? "hash only" : "stored"]);
    if (inputs.length) view.appendChild(section("Inputs", kvTable(["input", "size", "BLAKE3", ""], inputs)));
    const logs = el("div", { id: "run-logs" });
    view.appendChild(section("Output", logs));
    const code = d.code || {};
    view.appendChild(section("Code", kvTable(["", ""], Object.entries(code).map(([k, v]) => [k, v]), "kv")));
    view.appendChild(section("Environment", kvTable(["", ""], Object.entries(d.env || {}).map(([k, v]) => [k, v]), "kv")));
    view.setAttribute("data-state", "ready");
    // the whole curves, then the logs
    const keys = Object.keys(d.metrics || {});
    if (keys.length) {
      try {
        const ans = await api("/api/metrics", { runs: addr, keys: keys.join(","), max_points: 2000 });
        for (const k of keys) {
          const list = ans.series.filter((s) => s.key === k);
          if (list.length) drawChart(curves, k, list, { x: "step", logy: false, smooth: 0 });
        }
        curves.setAttribute("data-state", "ready");
        mark("gitexp:run-curves");
      } catch (err) { curves.appendChild(el("p", { class: "error" }, err.message)); }
    }
    for (const path of d.logs || []) {
      try {
        const res = await fetch(artifactUrl(addr, path) + "?head=262144");
        const text = res.ok ? await res.text() : "(" + res.status + ")";
        logs.appendChild(el("h4", {}, clip(path, 200)));
        logs.appendChild(el("pre", { class: "log", "data-log": path }, text));
      } catch (err) { logs.appendChild(el("p", { class: "error" }, err.message)); }
    }
  }

  function flatten(obj, prefix) {
    const out = {};
    for (const [k, v] of Object.entries(obj)) {
      if (v && typeof v === "object" && !Array.isArray(v)) Object.assign(out, flatten(v, prefix + k + "."));
      else out[prefix + k] = v;
    }
    return out;
  }

  // ---------------------------------------------------------- routing
  let pickers = null;
  function loadPickers() {
    if (!pickers) pickers = Promise.all([loadFacets(), loadSweeps(), renderSweep()]);
    return pickers;
  }

  function route() {
    const h = location.hash;
    const runView = $("run-view"); const listView = $("list-view");
    if (h.startsWith("#run/") && !REPORT) {
      listView.hidden = true; runView.hidden = false; state.runPage = null;
      renderRun(decodeURIComponent(h.slice(5)), false);
    } else {
      runView.hidden = true; listView.hidden = false; clear(runView); state.runPage = null;
      destroyPlots(); refreshCharts();
      if (!REPORT && !pickers) loadPickers().then(refreshCharts);
    }
  }

  async function poll() {
    if (!$("run-view").hidden) {
      const d = state.runPage;
      if (d) await renderRun(d.run, true);
    } else {
      const changed = await loadTable(true);
      if (changed) { await loadFacets(); refreshSelected(); refreshCharts(); }
    }
    $("live").textContent = "live · " + new Date().toLocaleTimeString();
    setTimeout(poll, POLL_MS);
  }

  function refreshSelected() {
    if (!state.page || state.page.grouped) return;
    for (const r of state.page.runs) { const a = address(r); if (state.selected.has(a)) state.selected.set(a, r); }
  }

  function init() {
    $("filters").addEventListener("submit", (ev) => {
      ev.preventDefault(); readFilters(); state.query.offset = 0; filtersToUrl(); renderSweep();
      loadTable(false).then(refreshCharts);
    });
    $("prev").addEventListener("click", () => { state.query.offset = Math.max(0, state.query.offset - state.query.limit); loadTable(false).then(refreshCharts); });
    $("next").addEventListener("click", () => { state.query.offset += state.query.limit; loadTable(false).then(refreshCharts); });
    $("clear").addEventListener("click", () => { state.selected.clear(); renderTable(state.page); selectionChanged(); });
    $("select-all").addEventListener("click", async () => {
      try {
        const all = await source.runs({ ...state.query, offset: 0, limit: MAX_CURVE_RUNS });
        if (all.grouped) return;
        for (const r of all.runs.slice(0, MAX_CURVE_RUNS)) state.selected.set(address(r), r);
        renderTable(state.page); selectionChanged();
      } catch (err) { showError(err.message); }
    });
    for (const id of ["metric-keys", "xaxis", "logy", "smooth"]) $(id).addEventListener("change", renderCurves);
    $("pc-metric").addEventListener("change", () => { state.brushes = {}; renderParcoords(); });
    $("pc-reset").addEventListener("click", () => { state.brushes = {}; renderParcoords(); });
    for (const id of ["sc-x", "sc-y"]) $(id).addEventListener("change", renderScatter);
    window.addEventListener("hashchange", route);
    if (REPORT) {
      document.body.classList.add("report");
      $("title").textContent = clip(REPORT.title || "report", 200);
      $("filters").hidden = true; $("prev").hidden = true; $("next").hidden = true; $("select-all").hidden = true;
      state.facets = REPORT.facets; updatePickers();
      if (REPORT.sweep) { state.query.sweep = String(REPORT.sweep.id); renderSweep(); }
      state.page = REPORT.runs; renderTable(REPORT.runs);
      for (const r of REPORT.runs.runs.slice(0, 20)) state.selected.set(address(r), r);
      renderTable(REPORT.runs); selectionChanged();
      return;
    }
    filtersFromUrl();
    // a run page asked for by the address is drawn at once, not after the table
    const runFirst = location.hash.startsWith("#run/");
    if (runFirst) route();
    // the table first (the server answers one call at a time): the pickers can wait,
    // and wait for the list to be shown when the page opened on a run
    loadTable(false)
      .then(() => runFirst ? null : loadPickers())
      .then(() => { if (!runFirst) route(); setTimeout(poll, POLL_MS); });
  }
  init();
})();
