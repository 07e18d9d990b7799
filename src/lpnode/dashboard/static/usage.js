// The usage page: requests, units, spend and latency over time per API key or pipeline, drawn as inline SVG.
"use strict";

(function () {
  const { h } = LP;
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#1f77b4", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#a6761d", "#e6ab02", "#666666"];
  const MEASURES = [
    { key: "requests", title: "Requests" },
    { key: "spend_wei", title: "Spend (wei)" },
    { key: "latency_ms", title: "Mean latency (ms)" },
    { key: "units", title: "Billing units" },
  ];
  const windowSelect = document.getElementById("window");
  const groupSelect = document.getElementById("group");
  let latest = null;

  function axisLabel(v) {
    if (v >= 1e6) return v.toExponential(1);
    if (v >= 10) return String(Math.round(v));
    return String(Number(v.toPrecision(2)));
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function chart(measure, buckets, series) {
    const W = 600, H = 220, L = 52, R = 10, T = 12, B = 28;
    const names = Object.keys(series);
    let max = 0;
    for (const name of names) for (const v of series[name][measure.key]) max = Math.max(max, v);
    const top = max > 0 ? max * 1.1 : 1;
    const x = (i) => L + (buckets.length > 1 ? (i * (W - L - R)) / (buckets.length - 1) : 0);
    const y = (v) => T + (H - T - B) * (1 - v / top);
    const root = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": measure.title + " over time" });
    root.append(svg("title", {}, measure.title + " over time"));
    root.append(svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }), svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
    for (const frac of [0, 0.5, 1]) {
      const value = top * frac;
      root.append(svg("text", { x: L - 6, y: y(value) + 4, "text-anchor": "end" }, axisLabel(value)));
      if (frac) root.append(svg("line", { class: "axis", x1: L, y1: y(value), x2: W - R, y2: y(value), "stroke-dasharray": "3 4" }));
    }
    const time = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    if (buckets.length) {
      root.append(svg("text", { x: L, y: H - 8 }, time(buckets[0])));
      root.append(svg("text", { x: W - R, y: H - 8, "text-anchor": "end" }, time(buckets[buckets.length - 1])));
    }
    names.forEach((name, index) => {
      const points = series[name][measure.key].map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
      const line = svg("polyline", { points, fill: "none", stroke: COLORS[index % COLORS.length], "stroke-width": 2, "stroke-linejoin": "round" });
      line.append(svg("title", {}, name));
      root.append(line);
    });
    const legend = h("ul", { class: "legend", "aria-label": measure.title + " legend" },
      names.map((name, index) => h("li", {}, h("span", { class: "swatch", style: null, dataset: { color: index } }), name)));
    legend.querySelectorAll("span.swatch").forEach((node) => { node.style.background = COLORS[Number(node.dataset.color) % COLORS.length]; });
    const body = names.length ? [root, legend] : [h("p", { class: "empty" }, "No requests in this window.")];
    return h("section", { class: "card", "aria-label": measure.title }, h("h2", {}, measure.title), body);
  }

  function render(data) {
    latest = data;
    document.getElementById("keys-note").hidden = data.keys;
    const series = data[groupSelect.value] || {};
    document.getElementById("charts").replaceChildren(...MEASURES.map((m) => chart(m, data.buckets, series)));
    const totals = (data.totals || {})[groupSelect.value] || [];
    const columns = [
      { title: groupSelect.value === "by_key" ? "API key" : "Pipeline", value: (t) => t.name },
      { title: "Requests", num: true, value: (t) => LP.group(t.requests) },
      { title: "Errors", num: true, value: (t) => LP.group(t.errors) },
      { title: "Units", num: true, value: (t) => LP.group(t.units) },
      { title: "Spend", num: true, value: (t) => (t.spend_wei ? LP.wei(BigInt(Math.round(t.spend_wei)).toString()) : "") },
      { title: "Mean latency", num: true, value: (t) => t.latency_ms + " ms" },
    ];
    document.getElementById("totals").replaceChildren(totals.length ? LP.table(columns, totals, "totals") : h("p", { class: "empty" }, "No requests in this window."));
  }

  const url = () => "/dashboard/usage.json?window=" + encodeURIComponent(windowSelect.value);
  const refresh = LP.poll(url, render, 10000, document.getElementById("status"));
  windowSelect.addEventListener("change", refresh);
  groupSelect.addEventListener("change", () => latest && render(latest));
})();
