// One job: live metric curves (uPlot), checkpoints, pods, the log of a rank, and the timeline.
"use strict";
const [, , namespace, name] = location.pathname.split("/").map(decodeURIComponent);
const base = "/api/jobs/" + encodeURIComponent(namespace) + "/" + encodeURIComponent(name);
document.getElementById("title").textContent = namespace + "/" + name;
document.title = name + " · TrainJob";

const ATTEMPT_COLORS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bc4c00", "#1b7c83", "#bf3989"];
const points = new Map(); // "attempt:iteration" -> {attempt, iteration, metrics}
const charts = new Map(); // metric -> {plot, box}
let job = null;
let conditions = [];
let events = [];

// ---- summary -------------------------------------------------------------------------------

function renderJob(view) {
  job = view;
  showErrors(view.errors);
  const row = view.row;
  const item = (key, value) => el("span", {}, el("span", { class: "k", text: key }), value);
  document.getElementById("summary").replaceChildren(
    phasePill(row.phase), item("progress", progressCell(row.progress)), item("iteration", fmt(row.iteration)),
    item("attempt", fmt(row.attempt)), item("restarts", fmt(row.restarts)),
    item("disruptions", fmt(row.disruptions)), item("workers", row.workers.ready + "/" + row.workers.wanted),
    item("age", age(row.created)), item("metrics", compactMetrics(row.metrics) || "-"));
  const reason = document.getElementById("reason");
  reason.textContent = row.reason || view.message || "";
  reason.className = "reason" + (row.phase === "Failed" ? " bad" : "");
  document.getElementById("score-head").textContent = view.spec.scoreAttribute
    ? "Score (" + view.spec.scoreAttribute + ")" : "Score";
  conditions = view.conditions;
  renderTimeline();
  renderRanks(view.spec.workers, row.attempt);
  drawCharts();
}

// ---- metrics -------------------------------------------------------------------------------

function addPoint(point) {
  if (point.iteration === null || point.iteration === undefined) return;
  points.set(point.attempt + ":" + point.iteration, point);
}

function numericMetrics() {
  const names = new Set();
  for (const point of points.values()) {
    for (const [key, value] of Object.entries(point.metrics || {})) {
      if (typeof value === "number" && Number.isFinite(value)) names.add(key);
    }
  }
  return [...names].sort();
}

function chartData(metric) {
  const all = [...points.values()].filter((p) => typeof (p.metrics || {})[metric] === "number");
  const attempts = [...new Set(all.map((p) => p.attempt))].sort((a, b) => a - b);
  const xs = [...new Set(all.map((p) => p.iteration))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const series = attempts.map(() => xs.map(() => null));
  for (const p of all) series[attempts.indexOf(p.attempt)][index.get(p.iteration)] = p.metrics[metric];
  return { attempts, data: [xs, ...series], count: all.length };
}

// Vertical marks: where each later attempt began (a restart) and the best checkpoint.
function marksPlugin(metric) {
  return {
    hooks: {
      draw: [(u) => {
        const ctx = u.ctx;
        const { top, height } = u.bbox;
        const line = (iteration, color, dash, label) => {
          const x = Math.round(u.valToPos(iteration, "x", true));
          if (!Number.isFinite(x)) return;
          ctx.save();
          ctx.strokeStyle = color; ctx.fillStyle = color; ctx.setLineDash(dash); ctx.lineWidth = 1.5;
          ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
          ctx.font = "11px system-ui"; ctx.fillText(label, x + 4, top + 12);
          ctx.restore();
        };
        const firstOf = new Map();
        for (const p of points.values()) {
          if (!firstOf.has(p.attempt) || p.iteration < firstOf.get(p.attempt)) firstOf.set(p.attempt, p.iteration);
        }
        const attempts = [...firstOf.keys()].sort((a, b) => a - b);
        for (const attempt of attempts.slice(1)) {
          line(firstOf.get(attempt), ATTEMPT_COLORS[attempt % ATTEMPT_COLORS.length], [4, 4], "restart → " + attempt);
        }
        const best = job && job.bestCheckpoint;
        if (best && best.iteration !== undefined && best.iteration !== null) {
          line(best.iteration, getComputedStyle(document.body).getPropertyValue("--ok"), [], "best");
        }
      }],
    },
  };
}

function chartWidth(box) {
  return Math.max(300, box.clientWidth - 20);
}

function drawCharts() {
  const metrics = numericMetrics();
  const container = document.getElementById("charts");
  document.getElementById("no-metrics").hidden = metrics.length > 0;
  let total = 0;
  for (const metric of metrics) {
    const { attempts, data, count } = chartData(metric);
    total += count;
    let chart = charts.get(metric);
    const key = attempts.join(",");
    if (chart && chart.key !== key) { chart.plot.destroy(); chart.box.remove(); charts.delete(metric); chart = null; }
    if (!chart) {
      const box = el("div", { class: "chart", "data-metric": metric }, el("h3", { text: metric }));
      container.append(box);
      const fg = getComputedStyle(document.body).getPropertyValue("--fg");
      const grid = getComputedStyle(document.body).getPropertyValue("--line");
      const axis = { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid } };
      const plot = new uPlot({
        width: chartWidth(box), height: 220,
        scales: { x: { time: false } },
        axes: [{ ...axis, label: "iteration" }, { ...axis }],
        series: [{ label: "iteration" }, ...attempts.map((attempt) => ({
          label: "attempt " + attempt, stroke: ATTEMPT_COLORS[attempt % ATTEMPT_COLORS.length], width: 2,
          spanGaps: false, points: { size: 4 },
        }))],
        plugins: [marksPlugin(metric)],
      }, data, box);
      chart = { plot, box, key };
      charts.set(metric, chart);
    } else {
      chart.plot.setData(data);
    }
    chart.box.dataset.points = String(count);
  }
  container.dataset.points = String(total);
}

window.addEventListener("resize", () => {
  for (const chart of charts.values()) chart.plot.setSize({ width: chartWidth(chart.box), height: 220 });
});
window.addEventListener("themechange", () => {
  for (const chart of charts.values()) { chart.plot.destroy(); chart.box.remove(); }
  charts.clear();
  drawCharts();
});

// ---- checkpoints and history from storage ----------------------------------------------------

function renderStorage(stored) {
  for (const point of stored.history) addPoint(point);
  drawCharts();
  document.getElementById("storage-error").textContent = stored.storageError
    ? "storage: " + stored.storageError : "";
  const body = document.querySelector("#checkpoints tbody");
  body.replaceChildren(...stored.checkpoints.slice().reverse().map((c) => {
    const marks = [c.latest && "latest", c.best && "best"].filter(Boolean).join(", ");
    return el("tr", { "data-iteration": String(c.iteration) },
      el("td", { class: "num" }, fmt(c.iteration)), el("td", { class: "num" }, fmt(c.attempt)),
      el("td", { class: "num" }, fmt(c.score)), el("td", { class: "num" }, size(c.sizeBytes)),
      el("td", {}, c.committedAt || "-"), el("td", { class: "marks" }, marks),
      el("td", {}, el("code", { text: c.uri })), el("td", {}, el("code", { class: "cmd", text: c.download })));
  }));
}

// ---- pods -----------------------------------------------------------------------------------

function renderPods(pods) {
  const body = document.querySelector("#pods tbody");
  body.replaceChildren(...pods.map((p) => el("tr", { "data-pod": p.name },
    el("td", {}, p.name), el("td", { class: "num" }, fmt(p.rank)), el("td", { class: "num" }, fmt(p.attempt)),
    el("td", {}, p.node || "-"), el("td", {}, p.phase), el("td", {}, p.trainer),
    el("td", { class: "reason" }, p.problem || ""))));
}

// ---- timeline -------------------------------------------------------------------------------

function renderTimeline() {
  const entries = [
    ...conditions.map((c) => ({ time: c.time, kind: "condition", text: c.type + "=" + c.status,
      detail: [c.reason, c.message].filter(Boolean).join(": ") })),
    ...events.map((e) => ({ time: e.time, kind: e.type, text: e.reason + (e.count > 1 ? " ×" + e.count : ""),
      detail: e.object + ": " + e.message })),
  ].sort((a, b) => String(a.time || "").localeCompare(String(b.time || "")));
  document.getElementById("timeline").replaceChildren(...entries.map((e) => el("li", { class: e.kind },
    el("time", { datetime: e.time || "", text: e.time ? new Date(e.time).toLocaleTimeString() : "-" }),
    el("strong", { text: e.text }), " ", el("span", { class: "muted", text: e.detail }))));
}

// ---- logs -----------------------------------------------------------------------------------

let logSource = null;
let logKey = null;
const MAX_LOG_LINES = 5000;

function renderRanks(workers, attempt) {
  const select = document.getElementById("rank");
  if (select.options.length !== workers) {
    const chosen = select.value || "0";
    select.replaceChildren(...Array.from({ length: workers }, (_, r) => el("option", { value: String(r), text: String(r) })));
    select.value = chosen;
  }
  followLog(select.value || "0", attempt);
}

function followLog(rank, attempt) {
  const key = rank + "@" + attempt;
  if (key === logKey) return;
  logKey = key;
  if (logSource) logSource.close();
  const log = document.getElementById("log");
  log.textContent = "";
  logSource = new EventSource(base + "/log?rank=" + rank + "&attempt=" + attempt);
  logSource.addEventListener("pod", (m) => {
    document.getElementById("log-pod").textContent = "pod " + JSON.parse(m.data).pod;
  });
  let received = 0;
  logSource.addEventListener("line", (m) => {
    received++;
    log.append(JSON.parse(m.data).text + "\n");
    while (log.childNodes.length > MAX_LOG_LINES) log.firstChild.remove();
    if (document.getElementById("follow").checked) log.scrollTop = log.scrollHeight;
  });
  logSource.addEventListener("end", (m) => {
    log.append("— " + JSON.parse(m.data).text + " —\n");
    logSource.close();
    // A pod that was not there yet: try again while the job has not finished.
    const finished = job && ["Succeeded", "Failed"].includes(job.row.phase);
    if (received === 0 && !finished) {
      setTimeout(() => { if (logKey === key) { logKey = null; followLog(rank, job ? job.row.attempt : attempt); } }, 3000);
    }
  });
}

document.getElementById("rank").addEventListener("change", (e) => followLog(e.target.value, job ? job.row.attempt : 0));

liveStream(base + "/stream", {
  job: renderJob,
  pods: renderPods,
  events: (list) => { events = list; renderTimeline(); },
  point: (point) => { addPoint(point); drawCharts(); },
  history: renderStorage,
  gone: (m) => { document.getElementById("errors").textContent = m.message; },
});
