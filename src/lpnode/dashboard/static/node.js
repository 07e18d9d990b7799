// The node page: the orchestrator's runners, models, runner apps, BYOC capabilities and remote workers, from /status; on
// chain its wallet, tickets and earnings first (and the senders' balances, which only the admin API serves).
"use strict";

(function () {
  const { h } = LP;
  const container = document.getElementById("node");
  const STATE_CLASS = { IDLE: "ok", OK: "ok", LOADING: "warn", STARTING: "warn", ERROR: "bad", UNHEALTHY: "bad", FAILED: "bad" };
  const APP_STATUS_CLASS = { ready: "ok", loading: "warn", unavailable: "bad", error: "bad" };

  function state(text) {
    return LP.badge(text || "?", STATE_CLASS[text] || "muted");
  }

  function seconds(value) {
    return value === null || value === undefined ? "" : Number(value).toFixed(1) + " s";
  }

  // Any list of objects (BYOC capabilities, remote workers): one column per key seen.
  function generic(list, label) {
    const keys = [];
    for (const row of list) for (const key of Object.keys(row || {})) if (!keys.includes(key)) keys.push(key);
    const show = (value) => {
      if (value === null || value === undefined || value === "") return "";
      if (typeof value === "boolean") return LP.badge(value ? "yes" : "no", value ? "ok" : "bad");
      if (Array.isArray(value)) return value.map((v) => (typeof v === "object" ? JSON.stringify(v) : String(v))).join(", ");
      if (typeof value === "object") return JSON.stringify(value);
      return String(value);
    };
    const columns = keys.map((key) => ({
      title: key.replace(/_/g, " "),
      num: list.every((row) => row == null || typeof row[key] === "number" || row[key] == null),
      value: (row) => show(row ? row[key] : null),
    }));
    return LP.table(columns, list, label);
  }

  function payments(p) {
    const chain = p.chain || {};
    const tickets = p.tickets || {};
    const facts = h("p", {},
      "Wallet ", h("code", {}, p.address || "?"), " on ", h("strong", {}, p.network || "?"),
      " · active ", LP.yesNo(p.active, true), " · ticket EV ", LP.eth(p.ticket_ev),
      chain.last_initialized_round !== undefined ? " · round " + chain.last_initialized_round + ", block " + chain.block : "");
    const counts = ["received", "won", "queued", "redeemed", "failed", "expired"];
    const ticketColumns = [
      ...counts.map((c) => ({ title: c[0].toUpperCase() + c.slice(1), num: true, value: (t) => t[c] || 0 })),
      { title: "Earned", num: true, value: () => LP.eth(p.earned_wei !== undefined ? p.earned_wei : tickets.earned_wei) },
      { title: "Credited", num: true, value: () => LP.eth(p.credited_wei) },
      { title: "Debited (fees)", num: true, value: () => LP.eth(p.debited_wei) },
    ];
    const parts = [facts, chain.last_error ? h("p", { class: "bad" }, "Chain: " + chain.last_error) : null,
      tickets.holding ? h("p", { class: "warn" }, "Redemption held: " + tickets.holding) : null,
      LP.table(ticketColumns, [tickets], "tickets")];
    if (Array.isArray(p.balances)) {  // the admin API's /status only
      const balanceColumns = [
        { title: "Sender", cls: "url", value: (b) => b.sender },
        { title: "Manifest", cls: "url", value: (b) => b.manifest },
        { title: "Balance", num: true, value: (b) => LP.eth(b.balance) },
        { title: "Price per unit", num: true, value: (b) => (b.fixed_price ? LP.wei(b.fixed_price) : "") },
      ];
      parts.push(h("h3", {}, "Balances per sender"),
        p.balances.length ? LP.table(balanceColumns, p.balances, "balances") : h("p", { class: "empty" }, "No sender's balance held."));
    }
    if (p.refused && typeof p.refused === "object" && Object.keys(p.refused).length) {
      parts.push(h("p", { class: "muted" }, "Refused: " + Object.entries(p.refused).map(([k, v]) => k + " ×" + v).join(", ")));
    }
    return h("section", { class: "card", "aria-label": "payments" }, h("h2", {}, "Payments ", h("span", { class: "sub" }, "tickets on chain")), parts);
  }

  // Live Runner apps (-useLiveRunners / -liveRunnerConfig). The runner's own URL and ID are in the admin API's
  // /status only: clients reach an app through this node's URLs, never directly.
  function runnerApps(apps) {
    const admin = apps.some((a) => a.runner_url !== undefined);
    const columns = [
      { title: "App", cls: "url", value: (a) => a.app },
      { title: "Mode", value: (a) => a.mode },
      { title: "Status", value: (a) => LP.badge(a.status || "?", APP_STATUS_CLASS[a.status] || "muted") },
      { title: "Sessions / capacity", num: true, value: (a) => a.capacity_used + " / " + a.capacity },
      { title: "Registered", value: (a) => a.kind },
      { title: "GPU", value: (a) => (a.gpu && a.gpu.name) || "" },
      { title: "Version", value: (a) => a.version },
      ...(admin ? [{ title: "Runner ID", cls: "url", value: (a) => a.runner_id }, { title: "Runner URL", cls: "url", value: (a) => a.runner_url }] : []),
    ];
    return h("section", { class: "card", "aria-label": "runner apps" }, h("h2", {}, "Runner apps ", h("span", { class: "sub" }, apps.length + " registered")),
      apps.length ? LP.table(columns, apps, "runner apps") : h("p", { class: "empty" }, "None registered."));
  }

  function build(data) {
    const models = data.models || [];
    const nodes = [];
    if (data.payments && typeof data.payments === "object") nodes.push(payments(data.payments));
    const modelColumns = [
      { title: "Pipeline", value: (m) => m.pipeline },
      { title: "Model", cls: "url", value: (m) => m.model_id },
      { title: "Mode", value: (m) => (m.runner_app ? LP.badge("Runner app", "warm") : LP.badge(m.warm ? "Warm" : "Cold", m.warm ? "warm" : "cold")) },
      { title: "In use / capacity", num: true, value: (m) => m.in_use + " / " + m.capacity },
      { title: "Idle", num: true, value: (m) => m.idle },
      { title: "Runners", num: true, value: (m) => (m.runners || []).length },
      { title: "Restarts", num: true, value: (m) => m.restarts || 0 },
      { title: "Last error", value: (m) => (m.last_error ? h("span", { class: "bad" }, LP.ago(m.last_error_at) + ": " + m.last_error) : "") },
    ];
    nodes.push(h("section", { class: "card", "aria-label": "models" }, h("h2", {}, "Models ", h("span", { class: "sub" }, models.length + " served")),
      models.length ? LP.table(modelColumns, models, "models") : h("p", { class: "empty" }, "No models in aiModels.json.")));

    const runners = [];
    for (const m of models) for (const r of m.runners || []) runners.push({ ...r, pipeline: m.pipeline, model_id: m.model_id });
    const runnerColumns = [
      { title: "Runner", cls: "url", value: (r) => h("span", { title: r.pipeline + " " + r.model_id + (r.url ? " at " + r.url : "") }, r.name) },
      { title: "State", value: (r) => state(r.state) },
      { title: "Mode", value: (r) => LP.badge(r.warm ? "Warm" : "Cold", r.warm ? "warm" : "cold") },
      { title: "Slot / device", value: (r) => (r.slot === null || r.slot === undefined ? "" : "slot " + r.slot + " · ") + (r.device || "") },
      { title: "In flight / capacity", num: true, value: (r) => r.in_use + " / " + r.capacity },
      { title: "Load time", num: true, value: (r) => seconds(r.load_seconds) },
      // PIDs are on the admin API's /status only (--cli-addr); the public port leaves them out.
      ...(runners.some((r) => r.pid !== undefined) ? [{ title: "PID", num: true, value: (r) => r.pid }] : []),
      { title: "Version", value: (r) => r.version },
      { title: "Problem", value: (r) => (r.problem ? h("span", { class: "bad" }, r.problem) : "") },
    ];
    nodes.push(h("section", { class: "card", "aria-label": "runners" }, h("h2", {}, "Runners ", h("span", { class: "sub" }, runners.length + " running or starting")),
      runners.length ? LP.table(runnerColumns, runners, "runners") : h("p", { class: "empty" }, "No runner is running (cold models start on their first request).")));

    if (Array.isArray(data.runner_apps)) nodes.push(runnerApps(data.runner_apps));
    if (Array.isArray(data.byoc)) {
      nodes.push(h("section", { class: "card", "aria-label": "BYOC capabilities" }, h("h2", {}, "BYOC capabilities"),
        data.byoc.length ? generic(data.byoc, "BYOC capabilities") : h("p", { class: "empty" }, "None registered.")));
    }
    if (Array.isArray(data.workers)) {
      nodes.push(h("section", { class: "card", "aria-label": "remote workers" }, h("h2", {}, "Remote AI workers"),
        data.workers.length ? generic(data.workers, "remote workers") : h("p", { class: "empty" }, "None connected.")));
    }
    return nodes;
  }

  function render(data) {
    document.getElementById("service").textContent = (data.service_url || "") + (data.version ? " · lpnode " + data.version : "");
    LP.rerender(container, () => build(data));
  }

  LP.poll("/status", render, 3000, document.getElementById("status"));
})();
