// The migration console's page: polls /api/state and /api/figures every REFRESH_MS and draws them; its buttons
// post to the console's actions with the page's token. Plain DOM and SVG, nothing loaded from elsewhere.
"use strict";

const REFRESH_MS = 2000;
const MINUTES = 15;
const TOKEN = document.querySelector('meta[name="console-token"]').content;
const COLOURS = ["#1f77b4", "#d95f02", "#2a9d55", "#7b3fa0", "#c0392b", "#8c6d1f", "#e377c2", "#17becf"];
const DASHES = ["", "6 3", "2 3", "9 3 2 3"];
const SVG = "http://www.w3.org/2000/svg";

let service = new URLSearchParams(location.search).get("service") || "";
let latest = null;      // the last /api/state answer
let busy = false;       // an action is under way: its buttons stay disabled
const styles = {};      // revision -> {colour, dash}, stable for the page's life

function $(id) { return document.getElementById(id); }

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function styleOf(revision) {
  if (!styles[revision]) {
    const n = Object.keys(styles).length;
    styles[revision] = { colour: COLOURS[n % COLOURS.length], dash: DASHES[n % DASHES.length] };
  }
  return styles[revision];
}

function pct(value, digits = 2) { return value === null || value === undefined ? "–" : `${(100 * value).toFixed(digits)}%`; }
function ms(value) { return value === null || value === undefined ? "–" : `${Number(value).toPrecision(3).replace(/\.?0+$/, "")} ms`; }
function when(epoch) { return epoch ? new Date(epoch * 1000).toLocaleTimeString() : "–"; }
function seconds(n) { return n >= 90 ? `${Math.floor(n / 60)} min ${Math.round(n % 60)} s` : `${Math.max(0, Math.round(n))} s`; }

async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((body.error && body.error.message) || `HTTP ${response.status}`);
  return body;
}

async function act(path, payload) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Console-Token": TOKEN, Accept: "application/json" },
    body: JSON.stringify({ service: latest ? latest.service : service, ...payload }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((body.error && body.error.message) || `HTTP ${response.status}`);
  return body;
}

function say(text, ok) {
  const result = $("action-result");
  result.textContent = text;
  result.className = "result " + (ok ? "ok" : "bad");
}

async function run(label, path, payload) {
  busy = true;
  renderButtons();
  say(`${label}…`, true);
  try {
    const answer = await act(path, payload);
    say(answer.done || `${label}: done`, true);
  } catch (error) {
    say(`${label} refused: ${error.message}`, false);
  } finally {
    busy = false;
    renderButtons();
    refresh();
  }
}

// ---------------------------------------------------------------- drawing the state

function renderHeader(state) {
  const select = $("service");
  const names = state.services.join("\n");
  if (select.dataset.names !== names) {
    select.replaceChildren(...state.services.map((name) => el("option", { value: name, text: name })));
    select.dataset.names = names;
  }
  select.value = state.service;
  $("target").textContent = state.target === "local" ? "local Cloud Run" : "Cloud Run";
  $("url").textContent = state.url || "";
  $("url").href = state.url || "#";
  const ready = state.ready.status === "True";
  $("ready").textContent = ready ? "Ready" : `Not ready${state.ready.reason ? ": " + state.ready.reason : ""}`;
  $("ready").className = "badge " + (ready ? "ok" : "bad");
  $("ready").title = state.ready.message || "";
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  document.title = `${state.service} · migration console`;
}

function renderSplit(state) {
  const bar = $("split-bar");
  bar.replaceChildren(...state.split.map((row, i) => {
    const seg = el("div", { class: "seg", title: `${row.revision}: ${row.percent}%` },
      el("strong", { text: `${row.model || "?"} ${row.percent}%` }), el("span", { text: row.revision }));
    seg.style.flexGrow = String(row.percent);
    seg.style.background = styleOf(row.revision).colour;
    if (i % 2) seg.style.backgroundImage = "repeating-linear-gradient(45deg, rgba(255,255,255,0.18) 0 6px, transparent 6px 12px)";  // neighbours differ by more than colour
    return seg;
  }));
  bar.setAttribute("aria-label", "traffic split: " + state.split.map((r) => `${r.revision} (${r.model}) ${r.percent}%`).join(", "));
  const body = $("split-table").tBodies[0];
  body.replaceChildren(...state.split.map((row) => {
    const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
    swatch.style.background = styleOf(row.revision).colour;
    const tr = el("tr", { "data-revision": row.revision, "data-percent": String(row.percent) },
      el("td", {}, swatch, el("code", { text: row.revision })),
      el("td", { text: row.model || "?" }),
      el("td", { text: row.tags.map((t) => t.tag).join(", ") || "–" }),
      el("td", { class: "num", text: `${row.percent}%` }));
    return tr;
  }));
}

function renderRevisions(state) {
  $("revisions").tBodies[0].replaceChildren(...state.revisions.map((r) => {
    const ready = r.ready === "True" ? "Ready" : `${r.ready === "False" ? "Not ready" : "Unknown"}: ${r.reason || ""} ${r.message || ""}`.trim();
    const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
    swatch.style.background = styleOf(r.name).colour;
    const cells = [
      el("td", {}, swatch, el("code", { text: r.name }), ...(r.tags.length ? [el("span", { class: "muted", text: ` tag ${r.tags.map((t) => t.tag).join(", ")}` })] : [])),
      el("td", { text: r.model || "?" }),
      el("td", { class: "num", text: `${r.percent}%` }),
      el("td", { class: "num", text: r.instances ? `${r.instances.active + r.instances.idle} (${r.instances.active} active)` : "–",
                 title: "instances now (Monitoring's container/instance_count): active ones had a request in the last second" }),
      el("td", {}, el("code", { text: r.digest ? r.digest.replace(/^(.*@sha256:)(.{12}).*$/, "$1$2…") : "–", title: r.digest || "" })),
      el("td", { text: r.created ? new Date(r.created).toLocaleString() : "–" }),
      el("td", { class: r.ready === "True" ? "" : "bad", text: ready + (r.barred ? ` · rolled back ${r.barred.at}: barred` : "") }),
    ];
    return el("tr", { "data-revision": r.name }, ...cells);
  }));
}

function renderButtons() {
  const rollout = latest && latest.rollout;
  $("promote").disabled = busy || !(rollout && rollout.state === "paused");
  $("rollback").disabled = busy || !latest;
  $("split-apply").disabled = busy;
  $("rollback").textContent = rollout ? "Roll back (abort the rollout)" : "Roll back";
}

function renderRollout(state) {
  const rollout = state.rollout;
  const badge = $("rollout-state");
  const steps = $("steps");
  if (!rollout) {
    badge.textContent = "no rollout in progress";
    badge.className = "badge";
    $("rollout-summary").textContent = state.history.length
      ? `Revisions that reached 100%, oldest first: ${state.history.join(" → ")}. Roll back returns to the one before.`
      : "No rollout in progress.";
    steps.replaceChildren();
    $("gate").hidden = true;
    return;
  }
  const labels = { running: ["RUNNING", "ok"], paused: ["PAUSED: waiting for Promote or Roll back", "warn"], interrupted: ["INTERRUPTED: make rollout resumes it", "bad"] };
  const [text, tone] = labels[rollout.state] || [rollout.state, ""];
  badge.textContent = text;
  badge.className = "badge " + tone;
  $("rollout-summary").textContent = `${rollout.candidate} replacing ${rollout.stable}; step ${rollout.text}` +
    (rollout.execution ? ` (Cloud Run job execution ${rollout.execution}: make rollout-status follows it)`
      : rollout.host ? ` (pid ${rollout.pid} on ${rollout.host})` : "");
  const paired = rollout.paired ? [pairedItem(rollout.paired)] : [];
  steps.replaceChildren(...paired, ...rollout.steps.map((step) => {
    const current = step.step === rollout.index;
    const done = step.verdict === "promote";
    const failed = step.verdict && step.verdict !== "promote";
    const status = current ? (rollout.state === "paused" ? "waiting" : "now") : done ? "passed" : failed ? step.verdict : "to come";
    const li = el("li", { class: [current ? "current" : "", done ? "done" : "", failed ? "failed" : ""].join(" ").trim(), "data-step": String(step.step) },
      el("span", { class: "pct", text: step.pause ? `pause at ${step.percent}%` : `${step.percent}%` }),
      el("span", { class: "muted", text: `step ${step.step + 1}: ${status}` }));
    if (current) li.setAttribute("aria-current", "step");
    return li;
  }));
  renderGate(rollout, state.now);
}

// With LABELS the rollout starts with a paired check at 0%: the stable revision's labelled answers replayed to the
// candidate, before any user is moved.
const PAIRED_WORDS = { pass: "passed", rollback: "rolled back", skipped: "skipped" };

function pairedText(paired) {
  return `0% paired check ${PAIRED_WORDS[paired.decision] || paired.decision}` +
    (paired.n ? ` on ${paired.n} labelled answers` : "");
}

function pairedItem(paired) {
  const failed = paired.decision === "rollback";
  return el("li", { class: failed ? "failed" : paired.decision === "pass" ? "done" : "", "data-step": "paired",
    title: (paired.reasons || []).join("; ") },
    el("span", { class: "pct", text: "0%" }),
    el("span", { class: "muted", text: pairedText(paired).replace(/^0% /, "") }));
}

function renderGate(rollout, now) {
  const current = rollout.current;
  const gate = $("gate");
  if (!current || current.paused || !current.candidate) {
    gate.hidden = true;
    return;
  }
  gate.hidden = false;
  const left = current.window_end - now;
  $("time-left").textContent = left > 0 ? `· ${seconds(left)} left in its window`
    : `· window over; holding up to ${seconds(current.hold_end - now)} more for a verdict`;
  const c = current.candidate, s = current.stable, limits = current.limits;
  const rate = (f) => (f && f.requests ? f.errors / f.requests : null);
  const rows = [
    ["Requests", String(c.requests), `≥ ${limits.min_requests}`, String(s.requests || 0), c.requests >= limits.min_requests ? "yes" : "not yet"],
    ["5xx rate", pct(rate(c)), `≤ ${pct(limits.max_error_rate, 1)}`, pct(rate(s)), rate(c) === null ? "–" : rate(c) <= limits.max_error_rate ? "yes" : "no"],
    ["p50", ms(c.p50_ms), "", ms(s.p50_ms), ""],
    ["p99", ms(c.p99_ms), limits.p99_ms === null ? "no baseline yet" : `≤ ${ms(limits.p99_ms)}`, ms(s.p99_ms),
      c.p99_ms === null || limits.p99_ms === null ? "–" : c.p99_ms <= limits.p99_ms ? "yes" : "no"],
  ];
  const q = current.quality;  // with LABELS: the candidate judged by its answers too
  if (q) {
    const share = (side) => (side.accuracy === null || side.accuracy === undefined ? "–" : pct(side.accuracy));
    const t = q.thresholds || {};
    rows.push(["Labels back", String(q.candidate.labelled), `≥ ${t.min_labels}`, String(q.stable.labelled),
      Math.min(q.candidate.labelled, q.stable.labelled) >= t.min_labels ? "yes" : "not yet"]);
    if (q.label_share) {
      // The sample-ratio check: labels must reach both sides' answers alike; a mismatch holds, never promotes.
      const ls = q.label_share;
      rows.push(["Labelled share", pct(ls.candidate, 1), `alike (p ≥ ${ls.alpha})`, pct(ls.stable, 1),
        ls.mismatched ? `no (p = ${ls.p_value.toPrecision(2)})` : "yes"]);
    }
    const seen = q.seen || {};
    if (seen.conflicts) {
      rows.push(["Conflicting labels", String(seen.conflicts), "a later label for a labelled answer", "", "counted, not judged"]);
    }
    rows.push(["Accuracy", share(q.candidate), `≥ stable − ${pct(t.max_accuracy_drop, 1)}`, share(q.stable),
      q.decision === "rollback" ? "no" : q.wants_labels ? "pending labels" : q.decision === "promote" ? "yes" : "not yet decided"]);
    if (q.candidate.brier !== null && q.candidate.brier !== undefined || q.stable.brier !== null && q.stable.brier !== undefined) {
      // Shown, not judged: the top-class Brier score of the labelled answers whose clients asked for probabilities.
      const brier = (side) => (side.brier === null || side.brier === undefined ? "–" : `${side.brier.toFixed(4)} (${side.calibrated})`);
      rows.push(["Brier (top class)", brier(q.candidate), "lower is better calibrated", brier(q.stable), "shown, not judged"]);
    }
    if (q.mix) {
      rows.push(["Mix shift", q.mix.total_variation.toFixed(3), `≤ ${t.max_mix_shift}`, "",
        q.mix.total_variation <= t.max_mix_shift ? "yes" : q.mix.p_value < 0.05 ? "no" : "within chance"]);
    }
  }
  $("gate-table").tBodies[0].replaceChildren(...rows.map(([name, cand, limit, stable, within]) =>
    el("tr", {}, el("th", { scope: "row", text: name }), el("td", { class: "num", text: cand }), el("td", { class: "num", text: limit }),
      el("td", { class: "num", text: stable }), el("td", { text: within }))));
  const words = { promote: "PROMOTE when the window ends", hold: "HOLD: not yet judged", rollback: "ROLL BACK: a breach" };
  $("verdict").textContent = `Verdict now: ${words[current.decision] || current.decision}`;
  const reasons = [...(current.reasons || []), ...((q && q.reasons) || [])];
  $("reasons").replaceChildren(...reasons.map((reason) => el("li", { text: reason })));
  renderQualityCharts(rollout, now);
}

function renderQualityCharts(rollout, now) {
  // With LABELS: each revision's accuracy and labels back at each read of this rollout (the last MINUTES).
  const timeline = rollout.quality_timeline || {};
  const revisions = Object.keys(timeline).sort();
  const box = $("quality-charts");
  box.hidden = !revisions.length;
  if (!revisions.length) return;
  const figures = { start: now - MINUTES * 60, end: now, period_s: 0, revisions: timeline };
  drawChart($("chart-accuracy"), figures, revisions, 1, (v) => pct(v, 0));
  drawChart($("chart-labels"), figures, revisions, 2, num);
}

function renderShadow(state) {
  const shadow = state.shadow;
  const box = $("shadow");
  if (!shadow) {
    box.replaceChildren(el("p", { class: "muted", text: "No shadow comparison for this service yet: make shadow MODEL=<name>." }));
    return;
  }
  if (shadow.task === "regressor") {
    renderRegressorShadow(box, shadow);
    return;
  }
  const [low, high] = shadow.agreement_ci95 || [null, null];
  const classes = shadow.classes || [];
  const head = el("tr", {}, el("th", { scope: "col", text: `${shadow.stable} \\ ${shadow.candidate}` }),
    ...classes.map((c) => el("th", { scope: "col", class: "num", text: c })));
  const rows = classes.map((s) => el("tr", {}, el("th", { scope: "row", text: s }),
    ...classes.map((c) => el("td", { class: "num" + (c === s ? " diag" : ""), text: String(shadow.confusion[s][c]) }))));
  const shift = shadow.class_shift || {};
  box.replaceChildren(
    el("p", {}, el("strong", { text: `Agreement ${pct(shadow.agreement, 1)}` }),
      ` of ${shadow.n} inputs (95% interval ${pct(low, 1)} to ${pct(high, 1)}); ${shadow.failed_requests} of ${shadow.replayed} replays failed; written ${when(shadow.written)}.`),
    el("table", { class: "grid confusion" }, el("thead", {}, head), el("tbody", {}, ...rows)),
    el("p", { class: "muted", text: shift.p_value === undefined ? "" :
      `Class mix: paired Stuart–Maxwell test p = ${Number(shift.p_value).toPrecision(3)}: ${shift.shifted ? "the mix shifted" : "no significant shift"}.` }));
}

function sig(value) { return value === null || value === undefined ? "–" : String(Number(Number(value).toPrecision(4))); }

function renderRegressorShadow(box, shadow) {
  // A regressor's versions are compared by the paired difference of their answers to the same inputs.
  const [low, high] = shadow.mean_absolute_difference_ci95 || [null, null];
  const [biasLow, biasHigh] = shadow.mean_difference_ci95 || [null, null];
  const row = (label, value, interval) => el("tr", {}, el("th", { scope: "row", text: label }),
    el("td", { class: "num", text: sig(value) }), el("td", { class: "num", text: interval }));
  box.replaceChildren(
    el("p", {}, el("strong", { text: `Mean absolute difference ${sig(shadow.mean_absolute_difference)}` }),
      ` over ${shadow.n} inputs, ${shadow.candidate} against ${shadow.stable}; ${shadow.failed_requests} of ${shadow.replayed} replays failed; written ${when(shadow.written)}.`),
    el("table", { class: "grid regression" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "paired difference" }),
        el("th", { scope: "col", class: "num", text: "value" }), el("th", { scope: "col", class: "num", text: "95% interval" }))),
      el("tbody", {},
        row("mean absolute difference", shadow.mean_absolute_difference, `${sig(low)} to ${sig(high)}`),
        row(`mean difference (${shadow.candidate} − ${shadow.stable})`, shadow.mean_difference, `${sig(biasLow)} to ${sig(biasHigh)}`),
        row("largest absolute difference", shadow.largest_absolute_difference, ""))));
}

function renderRecords(state) {
  const box = $("records");
  if (!state.records.length) {
    box.replaceChildren(el("p", { class: "muted", text: "No rollout recorded on this machine yet." }));
    return;
  }
  const head = el("tr", {}, ...["Started", "Candidate", "From", "Steps", "Decision"].map((h) => el("th", { scope: "col", text: h })));
  const rows = state.records.map((r) => el("tr", {},
    el("td", { text: when(r.started) }), el("td", {}, el("code", { text: r.candidate || "?" })),
    el("td", {}, el("code", { text: r.stable || "?" })),
    el("td", { text: [...(r.paired ? [pairedText(r.paired)] : []), ...r.steps.map((s) => `${s.percent}% ${s.verdict}`)]
      .join(", ") || "–" }),
    el("td", { text: r.decision + (r.reason ? `: ${r.reason}` : ""), title: r.file })));
  box.replaceChildren(el("table", { class: "grid" }, el("thead", {}, head), el("tbody", {}, ...rows)));
}

function renderReport(state) {
  $("report-card").hidden = !state.report;
  if (state.report && !$("report-img").getAttribute("src")) $("report-img").src = "/api/report.png";
}

// ---------------------------------------------------------------- charts

function num(v) { return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1).replace(/\.0$/, "") : v.toFixed(2).replace(/\.?0+$/, "") || "0"; }
const CHARTS = [
  ["chart-rps", 1, num],
  ["chart-errors", 2, (v) => `${num(100 * v)}%`],
  ["chart-p50", 3, num],
  ["chart-p99", 4, num],
];

function renderFigures(figures) {
  const revisions = Object.keys(figures.revisions).sort();
  const delay = figures.delay_s ? `, ${seconds(figures.delay_s)} behind (monitoring delay)` : "";
  $("figures-note").textContent = `· last ${MINUTES} min, ${figures.period_s} s points${delay}`;
  $("legend").replaceChildren(...revisions.map((name) => {
    const points = figures.revisions[name];
    const last = points[points.length - 1];
    const { colour, dash } = styleOf(name);
    const key = svg("svg", { width: 26, height: 10, "aria-hidden": "true" });
    key.append(svg("line", { x1: 0, y1: 5, x2: 26, y2: 5, stroke: colour, "stroke-width": 3, "stroke-dasharray": dash }));
    const model = latest && (latest.revisions.find((r) => r.name === name) || {}).model;
    return el("span", { "data-revision": name }, key,
      `${name}${model ? ` (${model})` : ""}: ${last ? `${last[1]} req/s, 5xx ${pct(last[2], 1)}, p50 ${ms(last[3])}, p99 ${ms(last[4])}` : "no requests"}`);
  }));
  for (const [id, column, format] of CHARTS) drawChart($(id), figures, revisions, column, format);
}

function drawChart(node, figures, revisions, column, format) {
  const width = node.clientWidth || 500, height = node.clientHeight || 170;
  const left = 44, right = 8, top = 8, bottom = 20;
  node.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const series = revisions.map((name) => [name, figures.revisions[name].filter((p) => p[column] !== null)]);
  const values = series.flatMap(([, points]) => points.map((p) => p[column]));
  const children = [];
  const max = Math.max(column === 2 ? 0.01 : 1e-9, ...values) * 1.1;
  const x = (t) => left + ((t - figures.start) / (figures.end - figures.start)) * (width - left - right);
  const y = (v) => top + (1 - v / max) * (height - top - bottom);
  for (const fraction of [0, 0.5, 1]) {
    const v = max * fraction;
    children.push(svg("line", { class: "axis", x1: left, x2: width - right, y1: y(v), y2: y(v) }));
    const label = svg("text", { x: left - 4, y: y(v) + 3, "text-anchor": "end" });
    label.textContent = format(v);
    children.push(label);
  }
  for (const minutesAgo of [15, 10, 5, 0]) {
    const t = figures.end - minutesAgo * 60;
    const label = svg("text", { x: x(t), y: height - 4, "text-anchor": minutesAgo === 0 ? "end" : minutesAgo === 15 ? "start" : "middle" });
    label.textContent = minutesAgo ? `−${minutesAgo} min` : "now";
    children.push(label);
  }
  if (!values.length) {
    const empty = svg("text", { class: "nodata", x: (left + width) / 2, y: height / 2, "text-anchor": "middle" });
    empty.textContent = "no requests in this window";
    children.push(empty);
  }
  for (const [name, points] of series) {
    if (!points.length) continue;
    const { colour, dash } = styleOf(name);
    const path = points.map((p, i) => `${i ? "L" : "M"}${x(p[0] - figures.period_s / 2).toFixed(1)},${y(p[column]).toFixed(1)}`).join("");
    const line = svg("path", { d: path, fill: "none", stroke: colour, "stroke-width": 2, "stroke-dasharray": dash, "stroke-linejoin": "round" });
    const title = svg("title");
    title.textContent = `${name}: ${format(points[points.length - 1][column])} at the last point`;
    line.append(title);
    children.push(line);
  }
  node.replaceChildren(...children);
}

// ---------------------------------------------------------------- the loop

let timer = null;
async function refresh() {
  clearTimeout(timer);
  const started = performance.now();  // reads start every REFRESH_MS, however long one takes (never overlapping)
  const query = service ? `?service=${encodeURIComponent(service)}` : "";
  try {
    const [state, figures] = await Promise.all([
      getJSON(`/api/state${query}`),
      getJSON(`/api/figures${query ? query + "&" : "?"}minutes=${MINUTES}`).catch((error) => ({ error })),
    ]);
    latest = state;
    renderHeader(state);
    renderSplit(state);
    renderRollout(state);
    renderRevisions(state);
    renderShadow(state);
    renderRecords(state);
    renderReport(state);
    renderButtons();
    const problem = $("problem");
    if (figures.error) {
      problem.textContent = `Figures unavailable: ${figures.error.message}`;
      problem.hidden = false;
    } else {
      problem.hidden = true;
      renderFigures(figures);
    }
  } catch (error) {
    $("problem").textContent = `Cannot read service ${service || "(default)"}: ${error.message}. Retrying every ${REFRESH_MS / 1000} s.`;
    $("problem").hidden = false;
  }
  timer = setTimeout(refresh, Math.max(0, REFRESH_MS - (performance.now() - started)));
}

$("service").addEventListener("change", (event) => {
  service = event.target.value;
  history.replaceState(null, "", `?service=${encodeURIComponent(service)}`);
  refresh();
});
$("split-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const split = $("split-input").value.trim();
  if (split) run(`Split ${split}`, "/api/split", { split });
});
$("rollback").addEventListener("click", () => {
  const rollout = latest && latest.rollout;
  const what = rollout ? `abort the rollout of ${rollout.candidate} and send 100% to ${rollout.stable}` : "send 100% back to the revision before";
  if (window.confirm(`Roll back: ${what}?`)) run("Roll back", "/api/rollback", {});
});
$("promote").addEventListener("click", () => run("Promote", "/api/promote", {}));
refresh();
