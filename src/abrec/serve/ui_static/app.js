// abrec live experiment dashboard: reads GET v1/experiments and
// GET v1/experiments/{id}/results with the read token and redraws every few seconds.
// Everything is built with DOM calls (textContent, never innerHTML), so nothing the
// service returns is interpreted as markup. No admin route is called.
"use strict";

(() => {
  const POLL_MS = 3000;
  const LIST_EVERY = 5; // refresh the list and every experiment's badges every 5th poll
  const TOKEN_KEY = "abrec.readToken";
  const SVG_NS = "http://www.w3.org/2000/svg";

  const state = {
    token: null,
    experiments: null, // specs from v1/experiments
    results: new Map(), // id -> {data} | {error}
    selected: null,
    tick: 0,
    timer: null,
  };

  const $ = (id) => document.getElementById(id);

  class AuthError extends Error {}
  class ApiError extends Error {
    constructor(status, detail) {
      super(`HTTP ${status}${detail ? `: ${detail}` : ""}`);
      this.status = status;
      this.detail = detail;
    }
  }

  // ------------------------------------------------------------------ DOM helpers
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = String(v);
      else if (k === "class") node.setAttribute("class", v);
      else node.setAttribute(k, String(v));
    }
  }

  function append(node, children) {
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  // ------------------------------------------------------------------ formatting
  const isNum = (x) => typeof x === "number" && Number.isFinite(x);
  function num(x, digits = 4) {
    if (!isNum(x)) return "—";
    if (x !== 0 && Math.abs(x) < 1e-3) return x.toExponential(2);
    return Number(x.toPrecision(digits)).toString();
  }
  const int = (x) => (isNum(x) ? Math.round(x).toLocaleString("en-US") : "—");
  const pct = (x, digits = 2) => (isNum(x) ? `${(100 * x).toFixed(digits)}%` : "—");
  const pval = (p) => (!isNum(p) ? "—" : p < 1e-4 ? "< 0.0001" : p.toFixed(4));
  const peq = (p) => (isNum(p) && p < 1e-4 ? "p < 0.0001" : `p = ${pval(p)}`);
  const interval = (lo, hi, f = num) => `[${isNum(lo) ? f(lo) : "−∞"}, ${isNum(hi) ? f(hi) : "+∞"}]`;

  function badge(kind, label, title) {
    return el("span", { class: `badge ${kind}`, title, text: label });
  }

  // ------------------------------------------------------------------ token
  function tokenFromHash() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const token = params.get("token");
    if (token === null) return null;
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
    return token.trim() || null;
  }

  function selectedFromHash() {
    return new URLSearchParams(location.hash.replace(/^#/, "")).get("exp");
  }

  function showLogin(message) {
    stopPolling();
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $("app").hidden = true;
    $("forget").hidden = true;
    $("login").hidden = false;
    if (message) $("login-msg").textContent = message;
    setStatus("no token: nothing is shown", "warn");
    $("token-input").focus();
  }

  function useToken(token) {
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("login").hidden = true;
    $("forget").hidden = false;
    $("app").hidden = false;
    state.tick = 0;
    state.experiments = null;
    state.results.clear();
    poll();
  }

  // ------------------------------------------------------------------ API
  async function api(path) {
    const resp = await fetch(path, {
      headers: { Authorization: `Bearer ${state.token}`, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
    });
    if (resp.status === 401) throw new AuthError("the token was refused");
    if (!resp.ok) {
      let detail = "";
      try {
        const body = await resp.json();
        detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      } catch (_) {
        detail = resp.statusText;
      }
      throw new ApiError(resp.status, detail);
    }
    return resp.json();
  }

  async function loadResults(id) {
    try {
      state.results.set(id, { data: await api(`v1/experiments/${encodeURIComponent(id)}/results`) });
    } catch (exc) {
      if (exc instanceof AuthError) throw exc;
      state.results.set(id, { error: exc.message, status: exc.status });
    }
  }

  // ------------------------------------------------------------------ polling
  function stopPolling() {
    if (state.timer !== null) clearTimeout(state.timer);
    state.timer = null;
  }

  async function poll() {
    stopPolling();
    try {
      if (state.experiments === null || state.tick % LIST_EVERY === 0) {
        state.experiments = await api("v1/experiments");
        const ids = new Set(state.experiments.map((e) => e.id));
        for (const id of [...state.results.keys()]) if (!ids.has(id)) state.results.delete(id);
        await Promise.all(state.experiments.filter((e) => e.status !== "draft").map((e) => loadResults(e.id)));
      } else if (state.selected !== null) {
        await loadResults(state.selected);
      }
      chooseSelected();
      render();
      $("error").hidden = true;
      setStatus(`live · updated ${new Date().toLocaleTimeString()}`, "ok");
    } catch (exc) {
      if (exc instanceof AuthError) {
        showLogin("The service refused that token (401). Enter the read token (ABREC_READ_TOKEN) or the admin token.");
        return;
      }
      const banner = $("error");
      banner.textContent = `Could not read from the service: ${exc.message}. Retrying every ${POLL_MS / 1000} s.`;
      banner.hidden = false;
      setStatus("service unreachable: retrying", "bad");
    }
    state.tick += 1;
    state.timer = setTimeout(poll, POLL_MS);
  }

  function setStatus(text, kind) {
    const s = $("status");
    s.textContent = text;
    s.className = `status ${kind || ""}`;
  }

  function chooseSelected() {
    const ids = (state.experiments || []).map((e) => e.id);
    if (state.selected !== null && ids.includes(state.selected)) return;
    const wanted = selectedFromHash();
    const running = (state.experiments || []).find((e) => e.status === "running");
    state.selected = ids.includes(wanted) ? wanted : running ? running.id : ids[0] ?? null;
  }

  function select(id) {
    state.selected = id;
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    params.set("exp", id);
    history.replaceState(null, "", `${location.pathname}${location.search}#${params}`);
    render();
    loadResults(id).then(render, (exc) => exc instanceof AuthError && showLogin("The service refused that token (401)."));
  }

  // ------------------------------------------------------------------ health
  function health(data) {
    const out = {};
    if (!data) return { srm: ["na", "SRM", "no data yet"], guard: ["na", "guardrails", "no data yet"], drift: ["na", "drift", "not computed"] };
    const srm = data.srm;
    out.srm = !srm
      ? ["na", "SRM", data.type === "bandit" ? "not computed for bandits" : "not computed yet"]
      : srm.mismatch
        ? ["bad", "SRM", `sample-ratio mismatch: ${peq(srm.p_value)} < ${srm.threshold}`]
        : ["ok", "SRM", `split as intended: ${peq(srm.p_value)}`];
    const guards = (data.comparisons || []).flatMap((c) => c.guardrails.map((g) => ({ ...g, treatment: c.treatment })));
    const failed = guards.filter((g) => !g.passed);
    out.guard = !guards.length
      ? ["na", "guardrails", "none judged yet"]
      : failed.length
        ? ["bad", "guardrails", `breached: ${failed.map((g) => `${g.metric} (${g.treatment})`).join(", ")}`]
        : ["ok", "guardrails", `${guards.length} passing`];
    const drift = data.drift;
    out.drift = !Array.isArray(drift)
      ? ["na", "drift", "not computed"]
      : drift.some((d) => d.alarm)
        ? ["bad", "drift", `alarm: ${drift.filter((d) => d.alarm).map((d) => `${d.check} ${d.model}`).join(", ")}`]
        : ["ok", "drift", `${drift.length} checks below the alarm threshold`];
    return out;
  }

  function healthBadges(data) {
    const h = health(data);
    return [h.srm, h.guard, h.drift].map(([kind, label, title]) => badge(kind, label, `${label}: ${title}`));
  }

  // ------------------------------------------------------------------ rendering: list
  function render() {
    renderList();
    renderDetail();
  }

  function renderList() {
    const ul = $("experiments");
    const items = (state.experiments || []).map((spec) => {
      const res = state.results.get(spec.id);
      const button = el(
        "button",
        { type: "button", class: `exp ${spec.id === state.selected ? "selected" : ""}`, "data-exp": spec.id },
        el("span", { class: "exp-id", text: spec.id }),
        el("span", { class: "exp-meta" }, badge(`status ${spec.status}`, spec.status), badge("type", spec.type || "ab")),
        spec.status === "draft" ? null : el("span", { class: "exp-health" }, healthBadges(res && res.data)),
      );
      button.addEventListener("click", () => select(spec.id));
      return el("li", null, button);
    });
    if (!items.length) items.push(el("li", { class: "muted", text: "No experiments yet." }));
    ul.replaceChildren(...items);
  }

  // ------------------------------------------------------------------ rendering: detail
  function renderDetail() {
    const root = $("detail");
    const spec = (state.experiments || []).find((e) => e.id === state.selected);
    if (!spec) {
      root.replaceChildren(el("div", { class: "card muted", text: "Select an experiment." }));
      return;
    }
    const res = state.results.get(spec.id);
    const head = el(
      "div",
      { class: "card head" },
      el("h2", { id: "exp-title", text: spec.id }),
      el("div", { class: "exp-meta" }, badge(`status ${spec.status}`, spec.status), badge("type", spec.type || "ab"), ...(res && res.data ? healthBadges(res.data) : [])),
      spec.description ? el("p", { class: "muted", text: spec.description }) : null,
    );
    const parts = [head];
    if (spec.status === "draft" && !(res && res.data)) {
      parts.push(el("div", { class: "card muted", text: "Draft: not started, so no traffic and no results yet." }));
    } else if (!res) {
      parts.push(el("div", { class: "card muted", text: "Loading results…" }));
    } else if (res.error) {
      parts.push(el("div", { class: "card warn", text: `No results yet: ${res.error}` }));
    } else {
      const d = res.data;
      parts.push(decisionCard(d));
      if (d.type === "interleaving" && d.interleaving) parts.push(interleavingCard(d.interleaving));
      if (d.variants && d.variants.length) parts.push(countsCard(d));
      if (d.bandit) parts.push(banditCard(d.bandit));
      for (const c of d.comparisons || []) parts.push(comparisonCard(d, c));
      if (d.type !== "interleaving") parts.push(healthCard(d));
      parts.push(driftCard(d.drift));
      const notes = [...(d.notes || []), ...(d.comparisons || []).flatMap((c) => c.notes || [])];
      if (d.interleaving) notes.push(...(d.interleaving.notes || []));
      if (notes.length) parts.push(el("div", { class: "card" }, el("h3", { text: "Notes" }), el("ul", { class: "notes" }, notes.map((n) => el("li", { text: n })))));
    }
    root.replaceChildren(...parts);
  }

  // The decision so far, by the rules `abrec.demo.decide` uses: an SRM alarm blocks any
  // decision; only the always-valid sequential test may declare a winner; a breached
  // guardrail blocks shipping the treatment.
  function decisions(d) {
    if (d.type === "interleaving") {
      const p = d.interleaving && d.interleaving.primary;
      if (!p) return [["na", "No decision yet: no interleaved impressions."]];
      const s = p.sequential;
      if (s && s.decision === "reject") {
        const better = isNum(s.win_share.estimate) && s.win_share.estimate > 0.5 ? p.treatment : p.control;
        return [["good", `${better} is preferred (always-valid ${peq(s.p_value)}; win share ${interval(s.win_share.low, s.win_share.high, pct)}).`]];
      }
      return [["na", `No winner yet: ${p.wins} wins, ${p.losses} losses, ${p.ties} ties; always-valid ${peq(s ? s.p_value : p.p_value)}.`]];
    }
    if (d.srm && d.srm.mismatch) return [["bad", `No decision: sample-ratio mismatch (${peq(d.srm.p_value)} < ${d.srm.threshold}); fix assignment or logging first.`]];
    const out = [];
    if (d.bandit) {
      const b = d.bandit;
      const best = b.prob_best.indexOf(Math.max(...b.prob_best));
      out.push(["na", `Bandit: ${b.in_burn_in ? "in burn-in (equal weights)" : `arm ${b.arms[best]} leads with P(best) = ${pct(b.prob_best[best], 1)}`}.`]);
    }
    for (const c of d.comparisons || []) {
      const seq = c.sequential_ctr;
      const failed = c.guardrails.filter((g) => !g.passed).map((g) => g.metric);
      const who = `${c.treatment} vs ${c.control}`;
      if (!seq) {
        out.push(["na", `${who}: no winner yet, not enough data for the sequential test.`]);
      } else if (seq.decision === "reject") {
        const better = isNum(seq.ci.low) && seq.ci.low > 0 ? c.treatment : c.control;
        if (better === c.treatment && failed.length) out.push(["bad", `${who}: higher CTR, but guardrails breached (${failed.join(", ")}): do not ship.`]);
        else out.push(["good", `${who}: ${better} wins on CTR; always-valid CI ${interval(seq.ci.low, seq.ci.high)} excludes 0 (${peq(seq.p_value)}).`]);
      } else {
        out.push([failed.length ? "bad" : "na", `${who}: no winner yet; always-valid CI for the CTR difference ${interval(seq.ci.low, seq.ci.high)} contains 0 (${peq(seq.p_value)})${failed.length ? `; guardrails breached: ${failed.join(", ")}` : ""}.`]);
      }
    }
    if (!out.length) out.push(["na", "No decision yet."]);
    return out;
  }

  function decisionCard(d) {
    return el(
      "div",
      { class: "card decision", id: "decision" },
      el("h3", { text: d.status === "stopped" ? "Decision (experiment stopped)" : "Decision so far" }),
      decisions(d).map(([kind, text]) => el("p", { class: `verdict ${kind}`, text })),
    );
  }

  function table(headers, rows, attrs) {
    return el(
      "table",
      attrs,
      el("thead", null, el("tr", null, headers.map((h) => el("th", { text: h })))),
      el("tbody", null, rows),
    );
  }

  function countsCard(d) {
    const rows = d.variants.map((v) => {
      const cell = (field, text) => el("td", { class: "num", "data-variant": v.variant, "data-field": field, text });
      return el(
        "tr",
        null,
        el("td", { text: v.variant + (v.variant === d.control && v.variant !== "control" ? " (control)" : "") }),
        el("td", { text: v.model || "—" }),
        el("td", { class: "num", text: isNum(v.weight) ? pct(v.weight, 1) : "—" }),
        cell("units", int(v.n)),
        cell("exposures", int(v.totals.exposures)),
        cell("clicks", int(v.totals.clicks)),
        cell("conversions", int(v.totals.conversions)),
        cell("ctr", pct(v.means.ctr)),
      );
    });
    const total = d.variants.reduce((s, v) => s + v.n, 0);
    return el(
      "div",
      { class: "card" },
      el("h3", { text: `Assignment and counts · ${int(total)} units` }),
      table(["variant", "model", "weight", "units", "exposures", "clicks", "conversions", "CTR"], rows, { id: "counts" }),
    );
  }

  // A horizontal CI bar for one row (shared scale per table, 0 marked).
  function ciBar(lo, est, hi, scale) {
    const w = 90;
    const h = 18;
    const x = (v) => Math.max(2, Math.min(w - 2, ((v - scale.min) / (scale.max - scale.min)) * w));
    const g = svg("svg", { class: "cibar", viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: "img", "aria-label": `CI ${interval(lo, hi)}` });
    g.append(svg("line", { x1: x(0), x2: x(0), y1: 0, y2: h, class: "zero" }));
    if (isNum(est)) {
      const l = isNum(lo) ? x(lo) : 2;
      const r = isNum(hi) ? x(hi) : w - 2;
      const kind = isNum(lo) && lo > 0 ? "pos" : isNum(hi) && hi < 0 ? "neg" : "neutral";
      g.append(svg("line", { x1: l, x2: r, y1: h / 2, y2: h / 2, class: `ci ${kind}` }));
      g.append(svg("circle", { cx: x(est), cy: h / 2, r: 3.5, class: `est ${kind}` }));
    }
    return g;
  }

  function scaleOf(values) {
    const fin = values.filter(isNum);
    let lo = Math.min(0, ...fin);
    let hi = Math.max(0, ...fin);
    if (hi - lo < 1e-12) { lo -= 1; hi += 1; }
    const pad = 0.08 * (hi - lo);
    return { min: lo - pad, max: hi + pad };
  }

  function comparisonCard(d, c) {
    const tests = c.tests || [];
    const rel = (t) => t.result && t.result.relative;
    const scale = scaleOf(tests.flatMap((t) => (rel(t) ? [rel(t).low, rel(t).high, rel(t).estimate] : [])));
    const rows = tests.map((t) => {
      const r = t.result || {};
      const primary = t.metric === d.primary_metric;
      return el(
        "tr",
        { class: primary ? "primary" : null },
        el("td", { text: `${t.metric}${primary ? " (primary)" : ""}` }),
        el("td", { class: "num", text: num(r.control_mean) }),
        el("td", { class: "num", text: num(r.treatment_mean) }),
        el("td", { class: "num", text: r.absolute ? `${num(r.absolute.estimate, 3)} ${interval(r.absolute.low, r.absolute.high, (x) => num(x, 3))}` : "—" }),
        el("td", { class: "num", text: r.relative ? `${pct(r.relative.estimate, 1)} ${interval(r.relative.low, r.relative.high, (x) => pct(x, 1))}` : "—" }),
        el("td", null, r.relative ? ciBar(r.relative.low, r.relative.estimate, r.relative.high, scale) : null),
        el("td", { class: "num", text: pval(t.p_value_holm) }),
        el("td", { text: t.significant ? "yes" : "no", class: t.significant ? "sig" : "muted" }),
      );
    });
    const seq = c.sequential_ctr;
    const cuped = c.cuped_clicks_per_unit;
    return el(
      "div",
      { class: "card comparison", "data-treatment": c.treatment },
      el("h3", { text: `${c.treatment} vs ${c.control}` }),
      tests.length
        ? table(["metric", "control", "treatment", "difference [95% CI]", "relative [95% CI]", "", "Holm p", "sig."], rows, { class: "metrics" })
        : el("p", { class: "muted", text: "No metric could be tested yet." }),
      el("p", { class: "muted small", text: `Fixed-horizon tests (Welch / delta method, Holm-corrected) are valid only at a sample size fixed in advance; decide on the always-valid sequence below.${cuped ? ` CUPED clicks per unit: ${num(cuped.absolute.estimate)} ${interval(cuped.absolute.low, cuped.absolute.high)}, ${peq(cuped.p_value)}.` : ""}` }),
      el("h4", { text: "Always-valid confidence sequence: CTR(treatment) − CTR(control)" }),
      seq && seq.history && seq.history.length
        ? sequenceChart(seq, c)
        : el("p", { class: "muted", text: "No look has enough data for the sequential test yet." }),
      seq
        ? el("p", { class: "small", text: `Now: ${num(seq.estimate)}, always-valid ${pct(1 - seq.alpha, 0)} CI ${interval(seq.ci.low, seq.ci.high)}, ${peq(seq.p_value)}; ${seq.looks_tested} of ${seq.looks} looks tested (one every ${seq.look_every} units); decision: ${seq.decision}.` })
        : null,
    );
  }

  // Line chart of the sequential test's history: running CI band, each look's own CS
  // (dashed), the estimate and zero. x = units entered, y = CTR difference.
  function sequenceChart(seq, c) {
    const hist = seq.history;
    const W = 720;
    const H = 260;
    const m = { l: 64, r: 16, t: 12, b: 36 };
    const xs = hist.map((p) => p.units);
    const finite = hist.flatMap((p) => [p.estimate, p.low, p.high, p.look_low, p.look_high]).filter(isNum);
    let ylo = Math.min(0, ...finite);
    let yhi = Math.max(0, ...finite);
    // keep the chart readable: early looks can be very wide; clip to 4x the last width
    const lastW = isNum(seq.ci.high) && isNum(seq.ci.low) ? seq.ci.high - seq.ci.low : 0;
    if (lastW > 0) {
      const mid = (seq.ci.high + seq.ci.low) / 2;
      ylo = Math.max(ylo, Math.min(0, mid - 2.5 * lastW));
      yhi = Math.min(yhi, Math.max(0, mid + 2.5 * lastW));
    }
    if (yhi - ylo < 1e-12) { ylo -= 0.01; yhi += 0.01; }
    const pad = 0.06 * (yhi - ylo);
    ylo -= pad;
    yhi += pad;
    const xmin = xs.length > 1 ? Math.min(...xs) : 0;
    const xmax = Math.max(...xs, xmin + 1);
    const X = (v) => m.l + ((v - xmin) / (xmax - xmin)) * (W - m.l - m.r);
    // values outside the range (and infinite bounds) are drawn at the chart's edge
    const Y = (v) => m.t + ((yhi - Math.max(ylo, Math.min(yhi, v))) / (yhi - ylo)) * (H - m.t - m.b);
    const yOr = (v, inf) => (isNum(v) ? Y(v) : Y(inf));
    const root = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `confidence sequence of ${c.treatment} vs ${c.control}`, "data-looks": hist.length });
    // grid and axes
    for (const t of ticks(ylo, yhi, 5)) {
      root.append(svg("line", { x1: m.l, x2: W - m.r, y1: Y(t), y2: Y(t), class: "grid" }));
      root.append(svg("text", { x: m.l - 6, y: Y(t) + 4, class: "tick", "text-anchor": "end", text: num(t, 3) }));
    }
    for (const t of ticks(xmin, xmax, 6)) {
      root.append(svg("text", { x: X(t), y: H - m.b + 16, class: "tick", "text-anchor": "middle", text: int(t) }));
    }
    root.append(svg("text", { x: (m.l + W - m.r) / 2, y: H - 4, class: "axis", "text-anchor": "middle", text: "units entered" }));
    // running intersection band
    if (hist.length > 1) {
      const top = hist.map((p) => `${X(p.units)},${yOr(p.high, yhi)}`);
      const bottom = hist.map((p) => `${X(p.units)},${yOr(p.low, ylo)}`).reverse();
      root.append(svg("polygon", { points: [...top, ...bottom].join(" "), class: "band" }));
      const line = (key, cls, inf) => svg("polyline", { points: hist.map((p) => `${X(p.units)},${yOr(p[key], inf)}`).join(" "), class: cls });
      root.append(line("look_low", "look", ylo), line("look_high", "look", yhi));
      root.append(line("low", "edge", ylo), line("high", "edge", yhi));
      root.append(line("estimate", "estimate", 0));
    }
    root.append(svg("line", { x1: m.l, x2: W - m.r, y1: Y(0), y2: Y(0), class: "zero" }));
    for (const p of hist.filter((q) => isNum(q.estimate))) {
      const dot = svg("circle", { cx: X(p.units), cy: Y(p.estimate), r: hist.length > 60 ? 1.5 : 3, class: "point" });
      dot.append(svg("title", { text: `${int(p.units)} units${p.at ? ` (${p.at})` : ""}: estimate ${num(p.estimate)}, running CI ${interval(p.low, p.high)}, this look ${interval(p.look_low, p.look_high)}, ${peq(p.p_value)}` }));
      root.append(dot);
    }
    const legend = el(
      "div",
      { class: "legend small" },
      el("span", { class: "key band-key", text: "running always-valid CI" }),
      el("span", { class: "key look-key", text: "each look's own interval" }),
      el("span", { class: "key est-key", text: "estimate" }),
    );
    return el("figure", { class: "chart-box" }, root, legend);
  }

  function ticks(lo, hi, n) {
    const span = hi - lo;
    if (!(span > 0)) return [lo];
    const raw = span / n;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => span / s <= n) || 10 * mag;
    const out = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-12; t += step) out.push(Math.abs(t) < step * 1e-9 ? 0 : t);
    return out;
  }

  function healthCard(d) {
    const parts = [el("h3", { text: "Health" })];
    const srm = d.srm;
    parts.push(
      el(
        "p",
        { id: "srm" },
        srm
          ? `Sample-ratio check: observed ${srm.observed.map(int).join(" / ")} vs expected ${srm.expected.map((x) => num(x, 5)).join(" / ")}, χ² = ${num(srm.chi2)}, ${peq(srm.p_value)} (alarm below ${srm.threshold}): ${srm.mismatch ? "MISMATCH" : "ok"}.`
          : "Sample-ratio check: not computed.",
      ),
    );
    const guards = (d.comparisons || []).flatMap((c) => c.guardrails.map((g) => ({ ...g, treatment: c.treatment })));
    if (guards.length) {
      parts.push(
        table(
          ["guardrail", "treatment", "difference", "always-valid CI", "relative", "p", "status"],
          guards.map((g) =>
            el(
              "tr",
              null,
              el("td", { text: g.metric }),
              el("td", { text: g.treatment }),
              el("td", { class: "num", text: num(g.estimate) }),
              el("td", { class: "num", text: interval(g.low, g.high) }),
              el("td", { class: "num", text: pct(g.relative, 1) }),
              el("td", { class: "num", text: pval(g.p_value) }),
              el("td", null, badge(g.passed ? "ok" : "bad", g.passed ? "passing" : "breached")),
            ),
          ),
          { class: "guardrails" },
        ),
      );
    } else {
      parts.push(el("p", { class: "muted", text: "No guardrail judged yet." }));
    }
    return el("div", { class: "card" }, parts);
  }

  function driftCard(drift) {
    const parts = [el("h3", { text: "Drift" })];
    if (!Array.isArray(drift)) {
      parts.push(el("p", { class: "muted", id: "drift-none", text: "Drift: not computed for this experiment." }));
    } else if (!drift.length) {
      parts.push(el("p", { class: "muted", text: "Drift: no check has run yet." }));
    } else {
      parts.push(
        table(
          ["check", "model", "PSI", "KS statistic", "KS p", "reference n", "serving n", "status"],
          drift.map((r) =>
            el(
              "tr",
              null,
              el("td", { text: r.check }),
              el("td", { text: r.model ?? "—" }),
              el("td", { class: "num", text: num(r.psi) }),
              el("td", { class: "num", text: num(r.ks_statistic) }),
              el("td", { class: "num", text: pval(r.ks_pvalue) }),
              el("td", { class: "num", text: int(r.n_reference) }),
              el("td", { class: "num", text: int(r.n_serving) }),
              el("td", null, badge(r.alarm ? "bad" : "ok", r.alarm ? "alarm" : "ok")),
            ),
          ),
          { class: "drift" },
        ),
      );
    }
    return el("div", { class: "card" }, parts);
  }

  function interleavingCard(il) {
    const pairs = il.pairs || [];
    const scale = { min: -1.05, max: 1.05 };
    const rows = pairs.map((p) =>
      el(
        "tr",
        null,
        el("td", { text: `${p.treatment} vs ${p.control}` }),
        el("td", { class: "num", "data-field": "wins", text: int(p.wins) }),
        el("td", { class: "num", "data-field": "losses", text: int(p.losses) }),
        el("td", { class: "num", "data-field": "ties", text: int(p.ties) }),
        el("td", { class: "num", text: `${num(p.preference.estimate, 3)} ${interval(p.preference.low, p.preference.high, (x) => num(x, 3))}` }),
        el("td", null, ciBar(p.preference.low, p.preference.estimate, p.preference.high, scale)),
        el("td", { class: "num", text: pval(p.p_adjusted) }),
        el("td", { class: "num", text: p.sequential ? `${pval(p.sequential.p_value)} (${p.sequential.decision})` : "—" }),
      ),
    );
    return el(
      "div",
      { class: "card", id: "interleaving" },
      el("h3", { text: `Interleaving (${il.method}) · ${int(il.n_units)} units, ${int(il.n_impressions)} impressions` }),
      table(["pair", "wins", "losses", "ties", "preference [95% CI]", "", "p (sign test, adj.)", "always-valid p"], rows, { class: "metrics" }),
      el("p", { class: "muted small", text: "A win is a unit whose clicks favoured the treatment's ranker; preference = (wins − losses) / units, in [−1, 1]." }),
    );
  }

  function banditCard(b) {
    const w = 120;
    const rows = b.arms.map((arm, i) => {
      const v = b.values.find((x) => x.arm === arm) || {};
      const bar = svg("svg", { class: "weightbar", viewBox: `0 0 ${w} 12`, width: w, height: 12 });
      bar.append(svg("rect", { x: 0, y: 0, width: w, height: 12, class: "track" }));
      bar.append(svg("rect", { x: 0, y: 0, width: Math.max(0, Math.min(1, b.weights[i])) * w, height: 12, class: "fill" }));
      const ci = (x) => (x ? `${pct(x.estimate)} ${interval(x.low, x.high, pct)}` : "—");
      return el(
        "tr",
        null,
        el("td", { text: arm }),
        el("td", { class: "num", "data-field": "weight", text: pct(b.weights[i], 1) }),
        el("td", null, bar),
        el("td", { class: "num", text: pct(b.prob_best[i], 1) }),
        el("td", { class: "num", text: int(b.n_units[i]) }),
        el("td", { class: "num", "data-field": "ips", text: ci(v.ips) }),
        el("td", { class: "num", text: ci(v.hajek) }),
        el("td", { class: "num muted", text: ci(v.naive) }),
      );
    });
    return el(
      "div",
      { class: "card", id: "bandit" },
      el("h3", { text: `Bandit (Thompson sampling)${b.in_burn_in ? " · burn-in" : ""}` }),
      table(["arm", "weight now", "", "P(best)", "units", "IPS [CI]", "Hájek [CI]", "naive (biased)"], rows, { class: "metrics" }),
      el("p", { class: "muted small", text: b.note }),
    );
  }

  // ------------------------------------------------------------------ start
  function start() {
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const t = $("token-input").value.trim();
      $("token-input").value = "";
      if (t) useToken(t);
    });
    $("forget").addEventListener("click", () => showLogin("Token forgotten. Enter a token to continue."));
    window.addEventListener("hashchange", () => {
      const fresh = tokenFromHash();
      if (fresh) useToken(fresh);
    });
    const token = tokenFromHash() || sessionStorage.getItem(TOKEN_KEY);
    if (token) useToken(token);
    else showLogin(null);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
