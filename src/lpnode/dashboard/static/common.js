// lpnode dashboard: shared helpers. Every piece of text goes in through textContent (never innerHTML),
// so names and messages from the network cannot inject markup.
"use strict";

const LP = {};

// h("td", {class: "num", title: "x"}, "text", otherNode, ...)
LP.h = function (tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  LP.append(node, children);
  return node;
};

LP.append = function (node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
};

LP.table = function (columns, rows, label) {
  const head = LP.h("tr", {}, columns.map((c) => LP.h("th", { scope: "col", class: c.num ? "num" : null }, c.title)));
  const body = rows.map((row) => LP.h("tr", {}, columns.map((c) => {
    const value = c.value(row);
    return LP.h("td", { class: c.num ? "num" : c.cls || null }, value === "" || value === null || value === undefined ? "—" : value);
  })));
  return LP.h("div", { class: "table-wrap" }, LP.h("table", { "aria-label": label || null }, LP.h("thead", {}, head), LP.h("tbody", {}, body)));
};

LP.badge = function (text, cls) {
  return LP.h("span", { class: "badge " + cls }, text);
};

LP.group = function (text) {
  // "1234567" -> "1,234,567" (decimal strings stay exact; no float rounding)
  const [whole, fraction] = String(text).split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return fraction ? grouped + "." + fraction : grouped;
};

// A wei amount (decimal string) for people: wei below 1e9, then gwei, then ETH; exact wei in the title.
LP.wei = function (text) {
  if (text === "" || text === null || text === undefined) return LP.h("span", { class: "muted" }, "not priced");
  const value = Number(text);
  let shown = LP.group(text) + " wei";
  const digits = { maximumSignificantDigits: 4 };  // 50,000 gwei rather than 5.000e+4
  if (value >= 1e15) shown = (value / 1e18).toLocaleString("en-US", digits) + " ETH";
  else if (value >= 1e9) shown = (value / 1e9).toLocaleString("en-US", digits) + " gwei";
  return LP.h("span", { title: LP.group(text) + " wei" }, shown);
};

// A wei amount (decimal string) in ETH, 6 significant digits and never an exponent; exact wei in the title.
// For balances, deposits, tickets' value and earnings.
LP.eth = function (text) {
  if (text === "" || text === null || text === undefined) return "";
  const value = Number(text);
  if (!Number.isFinite(value)) return String(text);
  const shown = value === 0 ? "0" : (value / 1e18).toLocaleString("en-US", { maximumSignificantDigits: 6 });
  return LP.h("span", { title: LP.group(text) + " wei" }, shown + " ETH");
};

LP.yesNo = function (value, good) {
  if (value !== true && value !== false) return LP.badge("?", "muted");
  return LP.badge(value ? "yes" : "no", value === good ? "ok" : "bad");
};

LP.ago = function (seconds) {
  if (!seconds) return "";
  const delta = Math.max(0, Date.now() / 1000 - seconds);
  if (delta < 60) return Math.round(delta) + " s ago";
  if (delta < 3600) return Math.round(delta / 60) + " min ago";
  if (delta < 86400) return Math.round(delta / 3600) + " h ago";
  return Math.round(delta / 86400) + " d ago";
};

// Fetch url every intervalMs (paused while the tab is hidden) and call render(data); the status line says
// when the data was last fetched, or why it could not be.
LP.poll = function (url, render, intervalMs, statusNode) {
  let timer = null;
  let lastOk = 0;
  async function tick() {
    clearTimeout(timer);
    try {
      const response = await fetch(typeof url === "function" ? url() : url, { cache: "no-store", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(response.status + " " + (await response.text()).slice(0, 200));
      const data = await response.json();
      render(data);
      lastOk = Date.now();
      statusNode.className = "status";
      statusNode.textContent = "Updated " + new Date().toLocaleTimeString() + " · refreshes every " + intervalMs / 1000 + " s";
    } catch (error) {
      statusNode.className = "status bad";
      statusNode.textContent = "Cannot fetch " + (typeof url === "function" ? url() : url) + ": " + error.message +
        (lastOk ? " (showing data from " + new Date(lastOk).toLocaleTimeString() + ")" : "");
    }
    if (!document.hidden) timer = setTimeout(tick, intervalMs);
  }
  document.addEventListener("visibilitychange", () => { if (!document.hidden) tick(); });
  tick();
  return tick;
};

// Re-render container with build() while keeping keyboard focus and open/closed <details> by data-key.
LP.rerender = function (container, build) {
  const focusedKey = document.activeElement && container.contains(document.activeElement) ? document.activeElement.dataset.key : null;
  const closed = new Set();
  const open = new Set();
  for (const d of container.querySelectorAll("details[data-key]")) (d.open ? open : closed).add(d.dataset.key);
  const fresh = build();
  container.replaceChildren(...fresh);
  for (const d of container.querySelectorAll("details[data-key]")) {
    if (closed.has(d.dataset.key)) d.open = false;
    else if (open.has(d.dataset.key)) d.open = true;
  }
  if (focusedKey) {
    const again = [...container.querySelectorAll("[data-key]")].find((n) => n.dataset.key === focusedKey);
    if (again) again.focus();
  }
};
