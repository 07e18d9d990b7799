// The network page: pipelines → models → orchestrator offers, from /dashboard/data.json, every 5 s; on chain,
// the gateway's wallet, funds and the tickets it sent each orchestrator first.
"use strict";

(function () {
  const { h } = LP;
  const container = document.getElementById("network");
  const search = document.getElementById("search");
  const pipelineSelect = document.getElementById("pipeline");
  const warmOnly = document.getElementById("warm-only");
  const summary = document.getElementById("summary");
  let latest = null;

  function warmBadge(warm) {
    if (warm === true) return LP.badge("Warm", "warm");
    if (warm === false) return LP.badge("Cold", "cold");
    return LP.badge("Unknown", "muted");
  }

  function rate(offer) {
    if (offer.success_rate === null || offer.success_rate === undefined) return "";
    const pct = (offer.success_rate * 100).toFixed(offer.success_rate === 1 ? 0 : 1) + "%";
    const cls = offer.success_rate >= 0.95 ? "ok" : offer.success_rate >= 0.7 ? "warn" : "bad";
    return h("span", { class: cls, title: offer.successes + " ok, " + offer.failures + " failed" }, pct);
  }

  function errors(offer) {
    const list = (offer.errors || []).slice(-3).reverse();
    if (!list.length && !offer.problem) return "";
    if (!list.length) return h("ul", { class: "errors" }, h("li", {}, offer.problem));
    return h("ul", { class: "errors" }, list.map((e) => h("li", {}, LP.ago(e.at) + ": " + (e.problem || ""))));
  }

  function offerColumns(data, pipeline) {
    const columns = [
      { title: "Orchestrator", cls: "url", value: (o) => h("span", { title: o.address || "" }, o.orchestrator || o.url || "") },
      { title: "State", value: (o) => [warmBadge(o.warm), o.suspended ? [" ", LP.badge("Suspended", "bad")] : null] },
      { title: "In use / capacity", num: true, value: (o) => o.in_use + " / " + o.capacity },
      { title: "Price per unit", num: true, value: (o) => LP.wei(o.price_wei) },
    ];
    if (pipeline.output_label) {
      columns.push({ title: "Per " + pipeline.output_label, num: true, value: (o) => LP.wei(o.price_per_output_wei) });
    }
    columns.push(
      { title: "Runner / node", value: (o) => (o.runner_version || "–") + " / " + (o.node_version || "–") },
      { title: "Hardware", value: (o) => (o.gpus || []).join(", ") },
    );
    if (data.measured) {
      columns.push(
        { title: "Latency (EWMA)", num: true, value: (o) => (o.latency_ms === null ? "" : o.latency_ms + " ms") },
        { title: "Success", num: true, value: rate },
        { title: "In flight", num: true, value: (o) => o.in_flight },
        { title: "Recent errors", value: errors },
      );
    }
    return columns;
  }

  // On chain only (data.payments): the wallet, deposit, reserve, what was sent each orchestrator and, on the
  // admin port, the credit held with each.
  function payments(p) {
    const facts = h("p", {},
      "Wallet ", h("code", {}, p.address || "?"), " on ", h("strong", {}, p.network || "?"),
      " · deposit ", LP.eth(p.deposit_wei), " · reserve ", LP.eth(p.reserve_wei),
      " · unlocking ", LP.yesNo(p.unlocking, false));
    const sent = Array.isArray(p.orchestrators) ? p.orchestrators : [];
    const sentColumns = [
      { title: "Orchestrator", cls: "url", value: (o) => o.url },
      { title: "Payments", num: true, value: (o) => o.payments },
      { title: "Tickets", num: true, value: (o) => o.tickets },
      { title: "EV sent", num: true, value: (o) => LP.eth(o.ev_wei) },
      { title: "Failed", num: true, value: (o) => o.failures },
    ];
    const parts = [facts, p.problem ? h("p", { class: "bad" }, "Cannot pay: " + p.problem) : null,
      sent.length ? LP.table(sentColumns, sent, "tickets sent") : h("p", { class: "empty" }, "No payment sent yet.")];
    if (Array.isArray(p.credits) && p.credits.length) {
      const creditColumns = [
        { title: "Recipient", cls: "url", value: (c) => c.recipient },
        { title: "Manifest", cls: "url", value: (c) => c.manifest },
        { title: "Credit", num: true, value: (c) => LP.eth(c.credit_wei) },
      ];
      parts.push(h("h3", {}, "Credit with each orchestrator"), LP.table(creditColumns, p.credits, "credits"));
    }
    return h("section", { class: "card", "aria-label": "payments" }, h("h2", {}, "Payments ", h("span", { class: "sub" }, "tickets on chain")), parts);
  }

  function matches(text, ...fields) {
    return !text || fields.some((f) => String(f || "").toLowerCase().includes(text));
  }

  function cheapest(model) {
    const prices = model.offers.map((o) => o.price_per_output_wei).filter((p) => p !== "");
    return prices.length ? prices.reduce((a, b) => (Number(a) <= Number(b) ? a : b)) : "";
  }

  function sum(offers, field) {
    return offers.reduce((total, o) => total + (Number(o[field]) || 0), 0);
  }

  function bestLatency(offers) {
    const measured = offers.map((o) => o.latency_ms).filter((v) => v !== null && v !== undefined);
    return measured.length ? Math.min(...measured) + " ms" : "";
  }

  function overallRate(offers) {
    const ok = sum(offers, "successes");
    const failed = sum(offers, "failures");
    return ok + failed ? rate({ success_rate: ok / (ok + failed), successes: ok, failures: failed }) : "";
  }

  function overview(data, pipelines) {
    const rows = [];
    for (const p of pipelines) for (const m of p.models) rows.push({ p, m });
    const columns = [
      { title: "Pipeline", value: (r) => h("a", { href: "#p-" + r.p.pipeline, dataset: { key: "o:" + r.p.pipeline + "\u0000" + r.m.model_id } }, r.p.pipeline) },
      { title: "Model", cls: "url", value: (r) => r.m.model_id },
      { title: "Warm", num: true, value: (r) => h("span", { class: r.m.warm ? "warm" : "muted" }, r.m.warm) },
      { title: "Cold", num: true, value: (r) => r.m.cold },
      { title: "In use / capacity", num: true, value: (r) => sum(r.m.offers, "in_use") + " / " + sum(r.m.offers, "capacity") },
      { title: "Cheapest per output", num: true, value: (r) => {
        const best = cheapest(r.m);
        return best ? [LP.wei(best), r.p.output_label ? " per " + r.p.output_label : ""] : LP.wei("");
      } },
    ];
    if (data.measured) {
      columns.push(
        { title: "Best latency", num: true, value: (r) => bestLatency(r.m.offers) },
        { title: "Success", num: true, value: (r) => overallRate(r.m.offers) },
      );
    }
    return h("section", { class: "card overview", "aria-label": "overview" }, h("h2", {}, "Overview"), LP.table(columns, rows, "overview"));
  }

  function build() {
    const data = latest;
    const text = search.value.trim().toLowerCase();
    const onlyPipeline = pipelineSelect.value;
    const nodes = [];
    let models = 0;
    let offers = 0;
    const shownPipelines = [];
    for (const pipeline of data.pipelines) {
      if (onlyPipeline && pipeline.pipeline !== onlyPipeline) continue;
      const modelNodes = [];
      const shownModels = new Set();
      for (const model of pipeline.models) {
        let shown = model.offers.filter((o) => !warmOnly.checked || o.warm === true);
        if (!matches(text, pipeline.pipeline, model.model_id)) shown = shown.filter((o) => matches(text, o.orchestrator, o.url, o.address));
        if (!shown.length) continue;
        models += 1;
        offers += shown.length;
        shownModels.add(model);
        const key = pipeline.pipeline + "\u0000" + model.model_id;
        const cap = model.max_price_wei ? [" · gateway pays at most ", LP.wei(model.max_price_wei), " per unit"] : null;
        modelNodes.push(h("details", { open: true, dataset: { key: "d:" + key } },
          h("summary", { dataset: { key: "s:" + key } }, model.model_id, " ",
            h("span", { class: "sub" }, "Warm: " + model.warm + " · Cold: " + model.cold, cap)),
          LP.table(offerColumns(data, pipeline), shown, model.model_id)));
      }
      if (!modelNodes.length) continue;
      shownPipelines.push({ ...pipeline, models: pipeline.models.filter((m) => shownModels.has(m)) });
      nodes.push(h("section", { class: "card", id: "p-" + pipeline.pipeline, "aria-label": pipeline.pipeline },
        h("h2", {}, pipeline.pipeline, " ", h("span", { class: "sub" }, modelNodes.length + " model(s)")), modelNodes));
    }
    for (const orch of data.unreachable || []) {
      if (!matches(text, orch.url)) continue;
      nodes.push(h("section", { class: "card", "aria-label": "unreachable orchestrator" },
        h("h2", {}, LP.badge("Unreachable", "bad"), " ", orch.url), h("p", { class: "bad" }, orch.problem || "no answer yet")));
    }
    if (shownPipelines.length) nodes.unshift(overview(data, shownPipelines));
    if (data.problem) nodes.unshift(h("p", { class: "note" }, "Source " + data.source + ": " + data.problem));
    if (!nodes.length) nodes.push(h("p", { class: "empty" }, data.pipelines.length ? "Nothing matches the filters." : "No orchestrator offers anything yet."));
    if (data.payments) nodes.unshift(payments(data.payments));
    summary.textContent = data.orchestrators + " orchestrator(s) · " + models + " model(s) · " + offers + " offer(s) shown" +
      (data.source && data.source !== "gateway" ? " · from " + data.source : "");
    return nodes;
  }

  function render(data) {
    latest = data;
    const chosen = pipelineSelect.value || wantedPipeline;
    wantedPipeline = "";
    const names = data.pipelines.map((p) => p.pipeline);
    if (chosen && !names.includes(chosen)) names.push(chosen);
    pipelineSelect.replaceChildren(h("option", { value: "" }, "All pipelines"),
      ...names.map((n) => h("option", { value: n }, n)));
    pipelineSelect.value = chosen;
    document.getElementById("usage-link").hidden = !data.usage_page;
    LP.rerender(container, build);
  }

  const redraw = () => latest && LP.rerender(container, build);
  search.addEventListener("input", redraw);
  pipelineSelect.addEventListener("change", redraw);
  warmOnly.addEventListener("change", redraw);
  document.getElementById("filters").addEventListener("submit", (event) => event.preventDefault());
  const params = new URLSearchParams(location.search);
  if (params.get("q")) search.value = params.get("q");
  let wantedPipeline = params.get("pipeline") || "";
  LP.poll("/dashboard/data.json", render, 5000, document.getElementById("status"));
})();
