// The job list: rows pushed by the server on every change (no reload, no polling).
"use strict";
let latest = { jobs: [] };

function render(state) {
  latest = state;
  showErrors(state.errors);
  const allNamespaces = state.namespace === null;
  document.getElementById("scope").textContent = allNamespaces ? "all namespaces" : "namespace " + state.namespace;
  document.querySelectorAll(".ns").forEach((cell) => { cell.hidden = !allNamespaces; });
  const body = document.querySelector("#jobs tbody");
  // Rows are rebuilt on every push: keep the keyboard's place, or a person tabbing through the
  // list would lose it (and an Enter would go nowhere) each time a job moved.
  const focused = body.contains(document.activeElement) ? document.activeElement.getAttribute("href") : null;
  body.replaceChildren(...state.jobs.map((job) => {
    const link = el("a", { href: "/jobs/" + encodeURIComponent(job.namespace) + "/" + encodeURIComponent(job.name),
      text: job.name });
    const reason = el("td", { class: "reason" + (job.phase === "Failed" ? " bad" : "") }, job.reason || "");
    const row = el("tr", { "data-job": job.key, "data-phase": job.phase },
      el("td", { class: "ns", hidden: !allNamespaces }, job.namespace),
      el("td", {}, link), el("td", {}, phasePill(job.phase)), el("td", {}, progressCell(job.progress)),
      el("td", { class: "num" }, fmt(job.iteration)), el("td", { class: "num" }, fmt(job.attempt)),
      el("td", { class: "num" }, fmt(job.restarts)), el("td", { class: "num" }, fmt(job.disruptions)),
      el("td", { class: "num" }, job.workers.ready + "/" + job.workers.wanted),
      el("td", {}, compactMetrics(job.metrics)),
      el("td", { class: "num", "data-created": job.created || "" }, age(job.created)), reason);
    return row;
  }));
  if (focused !== null) {
    const again = Array.from(body.querySelectorAll("a[href]")).find((a) => a.getAttribute("href") === focused);
    if (again) again.focus();
  }
  document.getElementById("empty").hidden = state.jobs.length > 0;
}

liveStream("/api/jobs/stream", { jobs: render });
setInterval(() => {
  document.querySelectorAll("td[data-created]").forEach((cell) => { cell.textContent = age(cell.dataset.created); });
}, 1000);
