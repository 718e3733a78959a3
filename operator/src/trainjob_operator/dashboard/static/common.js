// Shared by both pages: theme, element helpers, number and time formats, the live indicator.
"use strict";
(function () {
  const saved = localStorage.getItem("trainjob-theme");
  if (saved) document.documentElement.dataset.theme = saved;
})();

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fmt(value) {
  if (typeof value === "number" && !Number.isInteger(value)) return Number(value.toPrecision(4)).toString();
  return value === null || value === undefined ? "-" : String(value);
}

function duration(seconds) {
  seconds = Math.max(0, Math.floor(seconds));
  if (seconds < 120) return seconds + "s";
  if (seconds < 7200) return Math.floor(seconds / 60) + "m";
  if (seconds < 172800) return Math.floor(seconds / 3600) + "h" + Math.floor((seconds % 3600) / 60) + "m";
  return Math.floor(seconds / 86400) + "d";
}

function age(timestamp) {
  if (!timestamp) return "-";
  return duration((Date.now() - Date.parse(timestamp)) / 1000);
}

function size(bytes) {
  if (bytes === null || bytes === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return unit === 0 ? value + " B" : value.toFixed(1) + " " + units[unit];
}

function phasePill(phase) {
  return el("span", { class: "phase " + phase, text: phase });
}

function progressCell(progress) {
  if (!progress) return el("span", { class: "muted", text: "-" });
  const bar = el("span", { class: "bar", role: "progressbar", "aria-valuenow": String(progress.percent),
    "aria-valuemin": "0", "aria-valuemax": "100" }, el("span", { style: "width:" + progress.percent + "%" }));
  const eta = progress.etaSeconds ? " · ETA " + duration(progress.etaSeconds) : "";
  return el("span", {}, bar, Math.round(progress.percent) + "%" + eta);
}

function compactMetrics(metrics) {
  return Object.entries(metrics || {}).slice(0, 3).map(([k, v]) => k + "=" + fmt(v)).join(" ");
}

// An EventSource whose state shows in the header's indicator; it reconnects by itself.
function liveStream(url, handlers) {
  const live = document.getElementById("live");
  const source = new EventSource(url);
  source.onopen = () => { live.textContent = "live"; live.classList.add("on"); };
  source.onerror = () => { live.textContent = "reconnecting"; live.classList.remove("on"); };
  for (const [event, handler] of Object.entries(handlers)) {
    source.addEventListener(event, (message) => handler(JSON.parse(message.data)));
  }
  return source;
}

function showErrors(errors) {
  document.getElementById("errors").textContent = (errors || []).map((e) => "cannot watch " + e).join("; ");
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("theme").addEventListener("click", () => {
    const root = document.documentElement;
    const dark = root.dataset.theme
      ? root.dataset.theme === "dark"
      : window.matchMedia("(prefers-color-scheme: dark)").matches;
    root.dataset.theme = dark ? "light" : "dark";
    localStorage.setItem("trainjob-theme", root.dataset.theme);
    window.dispatchEvent(new Event("themechange"));
  });
});
