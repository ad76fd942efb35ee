// The JointLedger web console: a single page with hash routes over the regulator node's
// /console/api endpoints. DOM is built with createElement only (no innerHTML, no inline
// styles), so the strict Content-Security-Policy holds and no data can inject markup.

import { barChart, lineChart } from "./charts.js";
import { language, parts, setLanguage, t, translateStatic } from "./i18n.js";

const API = "api/";
const CONSOLE_HEADER = { "X-JL-Console": "1", "Content-Type": "application/json" };
/**
 * Seconds two clocks may disagree by before the console says so: the chain running ahead of
 * the node (latencies overstate), or a block stamped before its checkpoint was signed (a
 * latency below zero, never shown as such: within this it reads 0 s, beyond it "clocks
 * disagree"). Times are whole seconds on both sides.
 */
const CLOCK_TOLERANCE_S = 2;
/** Beijing time (China Standard Time, no daylight saving) is UTC+8: the regulator's clock. */
const BEIJING_OFFSET_S = 8 * 3600;
/** Checkpoints per log the timeline shows at first and adds per "Show older checkpoints". */
const TIMELINE_PAGE_SIZE = 25;
const MAX_TIMELINE_PAGE_SIZE = 200;

/** What the session endpoint said: {role, member, name}. */
let session = { role: "auditor", member: null, name: null };
/** State kept across re-renders (a language switch re-renders the current view). */
const verifyState = { text: "", verdict: null, error: null };
const traceState = { identity: "", records: null, error: null };
let renderSerial = 0;

// ---------------------------------------------------------------------------------------------
// Small helpers: DOM building, formatting, the API client.

/**
 * Build an element: `props` may hold class, text, testid, attrs (object), on (event -> handler),
 * hidden, and any other property assigned directly; `children` are nodes or strings, or
 * arrays of them (nested arrays too: a label's parts, see i18n.parts).
 */
function el(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) {
      continue;
    }
    if (key === "class") {
      element.className = value;
    } else if (key === "text") {
      element.textContent = value;
    } else if (key === "testid") {
      element.dataset.testid = value;
    } else if (key === "attrs") {
      for (const [name, attr] of Object.entries(value)) {
        if (attr !== undefined && attr !== null) {
          element.setAttribute(name, String(attr));
        }
      }
    } else if (key === "on") {
      for (const [event, handler] of Object.entries(value)) {
        element.addEventListener(event, handler);
      }
    } else {
      element[key] = value;
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** An amount in fen (integer, possibly beyond 2^53 as a string) as yuan: ¥1,234.56. */
export function formatYuan(fen, currency = "CNY") {
  let digits;
  try {
    digits = BigInt(fen).toString();
  } catch {
    return String(fen);
  }
  const negative = digits.startsWith("-");
  if (negative) {
    digits = digits.slice(1);
  }
  digits = digits.padStart(3, "0");
  const whole = digits.slice(0, -2).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const symbol = currency === "CNY" || !currency ? "¥" : `${currency} `;
  return `${negative ? "-" : ""}${symbol}${whole}.${digits.slice(-2)}`;
}

/** Unix seconds as "YYYY-MM-DD HH:MM:SS" on a clock `offset` seconds ahead of UTC. */
function wallClock(seconds, offset = 0) {
  return new Date((Number(seconds) + offset) * 1000).toISOString().slice(0, 19).replace("T", " ");
}

/** Unix seconds of an ISO 8601 time, or null if it does not parse. */
function isoSeconds(iso) {
  const millis = Date.parse(iso);
  return Number.isNaN(millis) ? null : millis / 1000;
}

/**
 * Unix seconds as a <time> in Beijing time: "2026-12-07 10:15:03 (UTC+8)" (the zone left out
 * with `zone: false`, for a range that names it once), the same moment in UTC on hover.
 */
function timeAt(seconds, { zone = true, testid = null } = {}) {
  if (seconds === null || seconds === undefined) {
    return t("none");
  }
  const date = new Date(Number(seconds) * 1000);
  if (Number.isNaN(date.getTime())) {
    return String(seconds);
  }
  const local = wallClock(seconds, BEIJING_OFFSET_S);
  return el("time", { testid, text: zone ? t("time.zone", { time: local }) : local,
    attrs: { datetime: date.toISOString(), title: t("time.utc", { time: wallClock(seconds) }) } });
}

/** An ISO 8601 time as timeAt shows it. */
function timeAtIso(iso, options = {}) {
  if (!iso) {
    return t("none");
  }
  const seconds = isoSeconds(iso);
  return seconds === null ? String(iso) : timeAt(seconds, options);
}

/** Two ISO times as "start – end (UTC+8)": the zone said once, each end in UTC on hover. */
function timeRange(startIso, endIso) {
  return el("span", { class: "time-range" }, parts("time.range", {
    start: timeAtIso(startIso, { zone: false }), end: timeAtIso(endIso, { zone: false }) }));
}

/** A short clock label for chart axes, in Beijing time: HH:MM:SS, the date for long spans. */
function chartTimeFormatter(span) {
  return (seconds) => {
    const iso = new Date((seconds + BEIJING_OFFSET_S) * 1000).toISOString();
    if (span > 2 * 86400) {
      return iso.slice(5, 10);
    }
    return span > 600 ? iso.slice(11, 16) : iso.slice(11, 19);
  };
}

/** A long hex string shortened for display, the whole value in a tooltip and for copying. */
function hex(value, keep = 10) {
  if (value === null || value === undefined || value === "") {
    return el("span", { class: "tag tag-neutral", text: t("none") });
  }
  const text = String(value);
  const short = text.length > keep * 2 + 1 ? `${text.slice(0, keep)}…${text.slice(-6)}` : text;
  return el("code", { text: short, title: text });
}

/** An alert's direction (payer/payee) in the current language. */
function direction(value) {
  const key = `dir.${value}`;
  return t(key) === key ? String(value) : t(key);
}

/** A record reference "platform/log id/index" with the log id shortened (whole in a tooltip). */
function refLabel(ref) {
  const parts = String(ref).split("/");
  const text = parts.length === 3 && parts[1].length > 12
    ? `${parts[0]}/${parts[1].slice(0, 8)}…/${parts[2]}` : String(ref);
  return el("code", { text, title: String(ref) });
}

/** A duration in seconds as "12 s", "3 min 4 s" or "2 h 5 min" (in the current language). */
function formatSeconds(seconds) {
  const s = Math.round(Number(seconds));
  if (s < 120) {
    return t("dur.s", { s });
  }
  if (s < 7200) {
    return t("dur.min", { m: Math.floor(s / 60), s: s % 60 });
  }
  return t("dur.h", { h: Math.floor(s / 3600), m: Math.floor((s % 3600) / 60) });
}

/** An offset from UTC in seconds as "UTC+8", "UTC+5:30" or "UTC". */
function formatOffset(seconds) {
  const minutes = Math.round(Number(seconds) / 60);
  if (minutes === 0) {
    return "UTC";
  }
  const sign = minutes > 0 ? "+" : "-";
  const whole = Math.floor(Math.abs(minutes) / 60);
  const rest = Math.abs(minutes) % 60;
  return `UTC${sign}${whole}${rest ? `:${String(rest).padStart(2, "0")}` : ""}`;
}

/** An amount in fen as yuan inside <span class="amount"> (for sentences about amounts). */
function amount(fen) {
  return el("span", { class: "amount", text: formatYuan(fen) });
}

/**
 * What an alert found, in the current language with amounts in yuan, from its structured
 * fields and `basis` (the rule's settings); the protocol's own English sentence in fen
 * (`detail`) only for a rule the page does not know.
 */
function alertExplanation(a) {
  const basis = a.basis;
  if (!basis) {
    return a.detail ? String(a.detail) : null;
  }
  const categoryKey = `category.${basis.category}`;
  const sideKey = `alert.side.${a.direction}`;
  const common = {
    count: (a.refs || []).length,
    category: t(categoryKey) === categoryKey ? String(basis.category) : t(categoryKey),
    side: t(sideKey) === sideKey ? String(a.direction) : t(sideKey),
    total: amount(a.total_fen),
    threshold: amount(basis.threshold_fen),
  };
  if (basis.family === "large_value") {
    const start = isoSeconds(a.window_start);
    const platforms = a.platforms || [];
    return parts("alert.large_value", { ...common,
      day: start === null ? String(a.window_start)
        : wallClock(start, Number(basis.day_utc_offset_s)).slice(0, 10),
      zone: formatOffset(basis.day_utc_offset_s),
      where: basis.across_platforms || platforms.length !== 1
        ? t("alert.where.all") : t("alert.where.platform", { platform: platforms[0] }) });
  }
  if (basis.family === "structuring") {
    const window = Number(basis.window_s);
    return parts("alert.structuring", { ...common,
      platforms: (a.platforms || []).join(t("alert.list.sep")),
      window: window % 3600 === 0 ? t("bucket.h", { n: window / 3600 }) : formatSeconds(window) });
  }
  return a.detail ? String(a.detail) : null;
}

/** An answer of the node that is not a success: carries the problem document's detail. */
class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail || title || `HTTP ${status}`);
    this.status = status;
    this.title = title;
    this.detail = detail;
  }
}

/** Call the console API; JSON in, JSON out; problems become ApiError with their detail. */
async function api(path, { method = "GET", json = undefined } = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (method !== "GET") {
    Object.assign(init.headers, CONSOLE_HEADER);
    if (json !== undefined) {
      init.body = JSON.stringify(json);
    }
  }
  let response;
  try {
    response = await fetch(API + path, init);
  } catch (error) {
    throw new ApiError(0, null, t("error.network", { message: error.message }));
  }
  if (response.status === 204) {
    return null;
  }
  const type = response.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await response.json().catch(() => null) : null;
  if (!response.ok) {
    const detail = body && (body.detail || body.title);
    throw new ApiError(response.status, body && body.title,
      detail || t("error.http", { status: response.status, title: response.statusText }));
  }
  return body;
}

/** Announce `message` in the polite live region (verdicts, logins, results). */
function announce(message) {
  const status = document.getElementById("status");
  status.textContent = "";
  // A fresh text node in a new task makes screen readers re-read repeated messages.
  window.setTimeout(() => {
    status.textContent = message;
  }, 30);
}

/** A box with the error's message, announced at once (role=alert). */
function errorBox(error) {
  const message = error instanceof ApiError ? error.message : String(error.message || error);
  const box = el("div", { class: "error-box", testid: "error", attrs: { role: "alert" } },
    el("strong", { text: t("error.title") }), el("span", { text: message }));
  if (error instanceof ApiError && error.status) {
    box.dataset.status = String(error.status);
  }
  return box;
}

/** A key/value list (<dl>) of [label, value] pairs; values may be nodes. */
function facts(pairs) {
  return el("dl", { class: "facts" },
    pairs.filter(Boolean).map(([label, value]) =>
      el("div", {}, el("dt", { text: label }), el("dd", {}, value))));
}

/** A horizontally scrollable table with `headers` (label or [label, className]) and rows. */
function table(headers, rows, caption = null) {
  const head = el("tr", {}, headers.map((h) => {
    const [label, cls] = Array.isArray(h) ? h : [h, null];
    return el("th", { text: label, class: cls, attrs: { scope: "col" } });
  }));
  const wrap = el("div", { class: "table-wrap", attrs: { tabindex: "0", role: "region",
    "aria-label": caption || headers.map((h) => (Array.isArray(h) ? h[0] : h)).join(", ") } },
  el("table", {}, caption ? el("caption", { class: "visually-hidden", text: caption }) : null,
    el("thead", {}, head), el("tbody", {}, rows)));
  return wrap;
}

/** A view heading that receives focus after navigation. */
function heading(text) {
  return el("h1", { text, attrs: { tabindex: "-1" } });
}

// ---------------------------------------------------------------------------------------------
// Verdicts: shared by the verify page and each record's Verify button.

/** The verdict of /console/api/verify as a block with every check and its reason. */
function verdictView(verdict) {
  const valid = Boolean(verdict.valid);
  const kindKey = `verdict.kind.${verdict.kind}`;
  const kind = t(kindKey) === kindKey ? String(verdict.kind || "") : t(kindKey);
  const checks = (verdict.checks || []).map((check) => {
    const status = String(check.status || "not_run");
    const statusKey = `check.${status}`;
    const tagClass = status === "passed" ? "tag-ok" : status === "failed" ? "tag-bad" : "tag-neutral";
    return el("li", { testid: "verdict-check", attrs: { "data-status": status } },
      el("span", { class: "check-name", text: check.name }),
      el("span", {}, el("span", { class: `tag ${tagClass}`,
        text: t(statusKey) === statusKey ? status : t(statusKey) })),
      check.detail ? el("span", { class: "check-detail", text: check.detail }) : null);
  });
  return el("section", { class: "verdict", testid: "verdict",
    attrs: { "data-valid": String(valid), "aria-label": valid ? t("verdict.valid") : t("verdict.failed") } },
  el("div", { class: "verdict-head" },
    el("span", { class: "verdict-word", text: valid ? `✔ ${t("verdict.valid")}` : `✘ ${t("verdict.failed")}` }),
    kind ? el("span", { class: "tag tag-neutral", text: kind }) : null),
  verdict.summary ? el("p", { class: "verdict-summary", text: verdict.summary }) : null,
  el("ul", { class: "checks" }, checks));
}

/** POST `document` to the verify endpoint and announce the verdict. */
async function verifyDocument(payload) {
  const verdict = await api("verify", { method: "POST", json: payload });
  announce(t(verdict.valid ? "verdict.announce.valid" : "verdict.announce.failed",
    { summary: verdict.summary || "" }));
  return verdict;
}

// ---------------------------------------------------------------------------------------------
// Records (alert drill-down, record page, trace).

/** A proof bundle offered as a file download (a Blob URL; nothing leaves the page). */
function downloadBundle(ref, bundle) {
  const blob = new Blob([JSON.stringify(bundle, null, 2)], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: `proof-bundle-${String(ref).replace(/[^\w.-]+/g, "_")}.json` });
  document.body.append(link);
  link.click();
  link.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** One record as a card: platform, amount, time, parties, proof, Verify button. */
function recordCard(record, { linkToRecord = true } = {}) {
  const payment = record.payment;
  const slot = el("div", { class: "verdict-slot" });
  const verifyButton = el("button", { type: "button", testid: "record-verify",
    text: t("rec.verify"), attrs: { "aria-label": t("rec.verify.label", { ref: record.ref }) } });
  verifyButton.addEventListener("click", async () => {
    verifyButton.disabled = true;
    slot.replaceChildren(el("p", { text: t("verify.busy") }));
    try {
      slot.replaceChildren(verdictView(await verifyDocument(record.bundle)));
    } catch (error) {
      slot.replaceChildren(errorBox(error));
    } finally {
      verifyButton.disabled = false;
    }
  });
  const bundle = record.bundle;
  const proof = bundle && bundle.anchor
    ? el("p", { class: "proof-line", text: t("rec.proof", { index: bundle.index,
      size: bundle.tree_size, block: bundle.anchor.block_number }) })
    : null;
  const pairs = [
    payment ? [t("rec.payer"), hex(payment.payer_key)] : null,
    payment ? [t("rec.payee"), hex(payment.payee_key)] : null,
    payment && payment.channel ? [t("rec.channel"), String(payment.channel)] : null,
    [t("rec.index"), String(record.index)],
    [t("rec.commitment"), hex(record.commitment)],
    [t("rec.log"), hex(record.log_id)],
    [t("rec.ref"), refLabel(record.ref)],
  ];
  return el("li", { class: "record", testid: "record-row",
    attrs: { "data-platform": record.platform, "data-ref": record.ref } },
  el("div", { class: "record-head" },
    el("h3", { text: `${record.platform} · #${record.index}` }),
    payment
      ? el("span", { class: "amount", testid: "record-amount",
        text: formatYuan(payment.amount_fen, payment.currency) })
      : el("span", { class: "tag tag-neutral", text: t("rec.nopayment") }),
    payment ? timeAtIso(payment.time, { testid: "record-time" }) : null),
  facts(pairs),
  proof,
  el("div", { class: "actions" },
    bundle ? verifyButton : null,
    bundle ? el("button", { type: "button", class: "button-secondary", text: t("rec.download"),
      on: { click: () => downloadBundle(record.ref, bundle) } }) : null,
    linkToRecord ? el("a", { href: `#/records/${encodeURIComponent(record.ref)}`,
      text: t("rec.open") }) : null),
  slot);
}

/** A list of record cards, or a "no records" line. */
function recordList(records, options) {
  if (!records || records.length === 0) {
    return el("p", { text: t("records.none") });
  }
  return el("ul", { class: "records" }, records.map((r) => recordCard(r, options)));
}

// ---------------------------------------------------------------------------------------------
// Views: each returns the content of <main>.

/** #/timeline: overview, each log's checkpoints with anchoring latency, faults. */
async function timelineView() {
  const pageSize = timelinePageSize();
  const [overview, checkpoints] = await Promise.all([
    api("overview"), api(`checkpoints?limit=${pageSize}`),
  ]);
  const faults = session.role === "regulator" ? await api("faults").catch(() => null) : null;
  const byLog = new Map((checkpoints.logs || []).map((log) => [log.log_id, log]));
  const summary = el("section", { class: "panel", attrs: { "aria-label": t("overview.regulator") } },
    facts([
      [t("overview.regulator"), String(overview.regulator)],
      [t("overview.chain"), String(overview.chain_id)],
      [t("overview.head"), String(overview.head_block)],
      overview.records !== null && overview.records !== undefined
        ? [t("overview.records"), String(overview.records)] : null,
      overview.faults !== null && overview.faults !== undefined
        ? [t("overview.faults"), String(overview.faults)] : null,
    ]));
  const logs = (overview.logs || []).map((log) =>
    logSection(log, byLog.get(log.log_id), pageSize));
  return el("div", {},
    heading(t("timeline.title")),
    el("p", { class: "intro", text: t("timeline.intro") }),
    clockNotice(overview),
    clockBehindNotice((checkpoints.logs || []).flatMap((log) =>
      log.checkpoints.map((c) => Number(c.latency_s)))),
    summary,
    logs.length ? logs : el("p", { text: t("logs.none") }),
    faults ? faultsSection(faults.faults || []) : null);
}

/**
 * Checkpoints per page of the timeline: `?page_size=N` in the page's address (1 to 200), else
 * TIMELINE_PAGE_SIZE. Lets a reader (and the browser tests) page a short log.
 */
function timelinePageSize() {
  const asked = new URLSearchParams(location.search).get("page_size");
  const size = /^\d{1,3}$/.test(asked || "") ? Number(asked) : 0;
  return size >= 1 && size <= MAX_TIMELINE_PAGE_SIZE ? size : TIMELINE_PAGE_SIZE;
}

/** Whether a latency (block time minus signing time) says the two clocks disagree. */
function clocksDisagree(latency) {
  return Number(latency) < -CLOCK_TOLERANCE_S;
}

/** A latency as shown: never below zero (within the tolerance it reads 0). */
function shownLatency(latency) {
  return Math.max(0, Number(latency) || 0);
}

/**
 * A checkpoint's anchoring latency with its bar: "12 s", or "clocks disagree" (the exact
 * disagreement on hover) for a block stamped before the checkpoint was signed.
 */
function latencyCell(c, bar) {
  if (clocksDisagree(c.latency_s)) {
    return el("span", { class: "latency-cell", testid: "latency-clocks",
      title: t("cp.latency.clocks.title", { seconds: -Number(c.latency_s) }) },
    bar, t("cp.latency.clocks"));
  }
  return el("span", { class: "latency-cell", testid: "latency" },
    bar, formatSeconds(shownLatency(c.latency_s)));
}

/** One checkpoint as a row of its log's table; `bar` is its latency bar (scaled later). */
function checkpointRow(c, bar) {
  return el("tr", { attrs: { "data-tree-size": c.tree_size } },
    el("th", { class: "num", text: String(c.tree_size), attrs: { scope: "row" } }),
    el("td", {}, latencyCell(c, bar)),
    el("td", {}, c.verified
      ? el("span", { class: "tag tag-ok", text: t("cp.verified.yes") })
      : el("span", { class: "tag tag-wait", text: t("cp.verified.no") })),
    el("td", { class: "num" }, String(c.block_number)),
    el("td", {}, timeAt(c.block_time)),
    el("td", {}, timeAt(c.timestamp)),
    el("td", {}, hex(c.root, 8)),
    el("td", {}, hex(c.tx_hash, 8)));
}

/**
 * One platform log: its figures and a table of its newest checkpoints, newest first, with a
 * "Show older checkpoints" button that appends the next older page while there is one.
 */
function logSection(log, checkpointLog, pageSize) {
  const title = log.shard === null || log.shard === undefined
    ? log.platform : `${log.platform} · ${t("log.shard")} ${log.shard}`;
  const shown = [];
  const bars = [];
  const body = el("tbody");
  const shownLine = el("p", { class: "intro" });
  /** Add `checkpoints` (oldest first, as the API gives them) below the rows shown. */
  const append = (checkpoints) => {
    for (const c of [...checkpoints].reverse()) {
      const bar = el("span", { class: "latency-bar", attrs: { "aria-hidden": "true" } });
      bar.dataset.latency = String(clocksDisagree(c.latency_s) ? 0 : shownLatency(c.latency_s));
      bars.push(bar);
      shown.push(c);
      body.append(checkpointRow(c, bar));
    }
    const maxLatency = Math.max(1, ...bars.map((b) => Number(b.dataset.latency)));
    for (const bar of bars) {
      bar.style.width = `${Math.round((Number(bar.dataset.latency) / maxLatency) * 80)}px`;
    }
    shownLine.textContent = t("log.shown", { count: shown.length });
  };
  append(checkpointLog ? checkpointLog.checkpoints : []);
  const tableBox = table([[t("cp.size"), "num"], t("cp.latency"), t("cp.verified"),
    [t("cp.block"), "num"], t("cp.blocktime"), t("cp.signed"), t("cp.root"), t("cp.tx")],
  [], title);
  tableBox.querySelector("tbody").replaceWith(body);
  const slot = el("div", { class: "older-slot" });
  const older = el("button", { type: "button", class: "button-secondary older-checkpoints",
    testid: "older-checkpoints", text: t("log.older"),
    attrs: { "aria-label": t("log.older.label", { log: title }) } });
  older.hidden = !(checkpointLog && checkpointLog.older && shown.length);
  older.addEventListener("click", async () => {
    if (older.getAttribute("aria-disabled") === "true") {
      return; // a page is on its way
    }
    // aria-disabled, not disabled: a disabled button would lose the keyboard focus
    older.setAttribute("aria-disabled", "true");
    tableBox.setAttribute("aria-busy", "true");
    try {
      const before = Math.min(...shown.map((c) => Number(c.tree_size)));
      const answer = await api(`checkpoints?log_id=${encodeURIComponent(log.log_id)}`
        + `&before=${before}&limit=${pageSize}`);
      const page = (answer.logs || [])[0];
      slot.replaceChildren();
      append(page ? page.checkpoints : []);
      if (!page || !page.older || !page.checkpoints.length) {
        older.hidden = true;
        tableBox.focus(); // the button is gone: the keyboard stays in this log's table
      }
    } catch (error) {
      slot.replaceChildren(errorBox(error));
    } finally {
      older.removeAttribute("aria-disabled");
      tableBox.removeAttribute("aria-busy");
    }
  });
  return el("section", { class: "panel", testid: "timeline-log",
    attrs: { "data-platform": log.platform, "aria-label": title } },
  el("h2", { text: title }),
  facts([
    [t("log.id"), hex(log.log_id)],
    [t("log.anchored"), String(log.anchored_size)],
    [t("log.verified"), String(log.verified_size)],
    [t("log.checkpoints"), String(log.checkpoints)],
    [t("log.last"), timeAt(log.last_block_time)],
  ]),
  shown.length ? [shownLine, tableBox, older, slot] : el("p", { text: t("log.empty") }));
}

/** The regulator's fault list (leaves that did not reproduce an anchored root, and so on). */
function faultsSection(faults) {
  const rows = faults.map((f) => el("tr", {},
    el("td", { text: String(f.platform) }),
    el("td", { class: "num", text: `${f.start}–${f.end}` }),
    el("td", { text: String(f.kind) }),
    el("td", { text: String(f.detail) }),
    el("td", {}, typeof f.at === "number" ? timeAt(f.at) : timeAtIso(f.at))));
  return el("section", { class: "panel", attrs: { "aria-label": t("faults.title") } },
    el("h2", { text: t("faults.title") }),
    faults.length
      ? table([t("fault.platform"), [t("fault.range"), "num"], t("fault.kind"), t("fault.detail"),
        t("fault.at")], rows, t("faults.title"))
      : el("p", { text: t("faults.none") }));
}

/** The bucket width that gives about 30 points over `span` seconds. */
function bucketFor(span) {
  const choices = [1, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400];
  return choices.find((c) => span / c <= 40) || 86400;
}

/** "60 s", "5 min", "1 h", "1 d" for a bucket width (in the current language). */
function bucketLabel(seconds) {
  if (seconds % 86400 === 0) return t("bucket.d", { n: seconds / 86400 });
  if (seconds % 3600 === 0) return t("bucket.h", { n: seconds / 3600 });
  if (seconds % 60 === 0) return t("bucket.min", { n: seconds / 60 });
  return t("bucket.s", { n: seconds });
}

/** The drawing width of a chart: its panel's width, so that 1 SVG unit is about 1 CSS pixel. */
function chartWidth() {
  const available = Math.min(window.innerWidth, 1200) - (window.innerWidth <= 640 ? 50 : 100);
  const columns = window.innerWidth >= 1100 ? 2 : 1;
  return Math.max(300, Math.min(640, Math.round(available / columns)));
}

/** A note when the chain's block times run ahead of the node's clock (latencies overstate). */
function clockNotice(overview) {
  const ahead = Number(overview.chain_clock_ahead_s) || 0;
  if (ahead <= CLOCK_TOLERANCE_S) return null;
  return el("p", { class: "notice", attrs: { "data-testid": "clock-ahead" },
    text: t("clock.ahead", { seconds: String(ahead) }) });
}

/**
 * A note when some of `latencies` say a block was stamped before its checkpoint was signed
 * beyond the tolerance: the chain's clock and the platform's disagree, so those latencies
 * cannot be read (the rows say "clocks disagree", the latency chart leaves them out).
 */
function clockBehindNotice(latencies) {
  const behind = latencies.filter(clocksDisagree);
  if (!behind.length) return null;
  return el("p", { class: "notice", attrs: { "data-testid": "clock-behind" },
    text: t("clock.behind", { count: behind.length, seconds: -Math.min(...behind) }) });
}

/** #/charts: volume per platform, anchoring latency, alerts by rule. */
async function chartsView() {
  const overview = await api("overview");
  let charts = await api("charts?bucket_s=60");
  const times = (charts.latency || []).flatMap((s) => s.points.map((p) => p.t));
  const span = times.length ? Math.max(...times) - Math.min(...times) : 0;
  const bucket = bucketFor(span);
  if (bucket !== charts.bucket_s) {
    charts = await api(`charts?bucket_s=${bucket}`);
  }
  const allTimes = [
    ...(charts.volume || []).flatMap((s) => s.points.map((p) => p.t)),
    ...(charts.latency || []).flatMap((s) => s.points.map((p) => p.t)),
  ];
  const fullSpan = allTimes.length ? Math.max(...allTimes) - Math.min(...allTimes) : 0;
  const formatX = chartTimeFormatter(fullSpan);
  const width = chartWidth();
  const common = { xLabel: t("charts.time"), formatX, seriesHeader: t("charts.series"),
    emptyText: t("charts.empty"), width };
  const volume = lineChart({
    ...common, testid: "chart-volume", title: t("charts.volume"),
    yLabel: t("charts.volume.y", { bucket: bucketLabel(charts.bucket_s) }),
    tableCaption: t("charts.table", { title: t("charts.volume") }),
    series: (charts.volume || []).map((s) => ({ name: s.platform,
      points: s.points.map((p) => [p.t, p.records]) })),
    formatY: (v) => String(Math.round(v * 100) / 100),
    integer: true,
  });
  const latencies = (charts.latency || []).flatMap((s) => s.points.map((p) => p.latency_s));
  const latency = lineChart({
    ...common, testid: "chart-latency", title: t("charts.latency"), yLabel: t("charts.latency.y"),
    tableCaption: t("charts.table", { title: t("charts.latency") }),
    series: (charts.latency || []).map((s) => ({ name: s.platform,
      points: s.points.filter((p) => !clocksDisagree(p.latency_s))
        .map((p) => [p.t, shownLatency(p.latency_s)]) })),
    formatY: (v) => String(Math.round(v * 10) / 10),
  });
  let alerts;
  if (charts.alerts_by_rule === null || charts.alerts_by_rule === undefined) {
    alerts = el("p", { class: "intro", text: t("charts.alerts.auditor") });
  } else {
    const bars = Object.entries(charts.alerts_by_rule)
      .map(([label, value]) => ({ label, value: Number(value) }))
      .sort((a, b) => b.value - a.value || a.label.localeCompare(b.label));
    alerts = barChart({
      testid: "chart-alerts", title: t("charts.alerts"), bars, valueLabel: t("charts.alerts.x"),
      categoryLabel: t("charts.rule"), emptyText: t("alerts.none"), width,
      tableCaption: t("charts.table", { title: t("charts.alerts") }),
    });
  }
  return el("div", {},
    heading(t("charts.title")),
    clockNotice(overview),
    clockBehindNotice(latencies),
    el("div", { class: "chart-grid" },
      el("section", { class: "panel" }, volume),
      el("section", { class: "panel" }, latency),
      el("section", { class: "panel" }, alerts)));
}

/** #/verify: drop zone, file picker and paste box; the verdict with every check. */
function verifyView() {
  const output = el("div", { class: "verify-output" });
  const showState = () => {
    output.replaceChildren(
      verifyState.error ? errorBox(verifyState.error) : "",
      verifyState.verdict ? verdictView(verifyState.verdict) : "");
  };
  const textarea = el("textarea", { id: "verify-paste", testid: "verify-paste", spellcheck: false,
    value: verifyState.text, attrs: { rows: "10", autocomplete: "off" } });
  textarea.addEventListener("input", () => {
    verifyState.text = textarea.value;
  });
  const submit = el("button", { type: "submit", testid: "verify-submit", text: t("verify.submit") });

  const run = async () => {
    verifyState.text = textarea.value;
    verifyState.verdict = null;
    verifyState.error = null;
    if (!textarea.value.trim()) {
      verifyState.error = new Error(t("verify.empty"));
      showState();
      announce(t("verify.empty"));
      return;
    }
    let parsed;
    try {
      parsed = JSON.parse(textarea.value);
    } catch (error) {
      verifyState.error = new Error(t("verify.badjson", { message: error.message }));
      showState();
      return;
    }
    submit.disabled = true;
    output.replaceChildren(el("p", { text: t("verify.busy") }));
    try {
      verifyState.verdict = await verifyDocument(parsed);
    } catch (error) {
      verifyState.error = error;
    } finally {
      submit.disabled = false;
    }
    showState();
  };

  const loadFile = (file) => {
    file.text().then((text) => {
      textarea.value = text;
      announce(t("verify.loaded", { name: file.name, count: file.size }));
      return run();
    }, (error) => {
      verifyState.error = new Error(t("verify.readerror", { message: error.message }));
      showState();
    });
  };
  verifyDrop = (transfer) => {
    if (transfer.files && transfer.files.length) {
      loadFile(transfer.files[0]);
    } else if (transfer.getData("text")) {
      textarea.value = transfer.getData("text");
      run();
    }
  };

  const fileInput = el("input", { type: "file", id: "verify-file", testid: "verify-input",
    accept: ".json,application/json" });
  fileInput.addEventListener("change", () => {
    if (fileInput.files.length) {
      loadFile(fileInput.files[0]);
    }
  });
  const zone = el("div", { class: "drop-zone", testid: "drop-zone" },
    el("p", { text: t("verify.drop") }),
    el("div", { class: "file-label" },
      el("label", { htmlFor: "verify-file", text: t("verify.file") }), fileInput));
  zone.addEventListener("dragenter", () => zone.classList.add("drag-over"));
  zone.addEventListener("dragleave", () => zone.classList.remove("drag-over"));
  zone.addEventListener("drop", () => zone.classList.remove("drag-over"));

  const form = el("form", { class: "panel", noValidate: true },
    zone,
    el("div", { class: "form-row" },
      el("label", { htmlFor: "verify-paste", text: t("verify.paste") }), textarea),
    el("div", { class: "actions" }, submit));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run();
  });
  showState();
  return el("div", {},
    heading(t("verify.title")),
    el("p", { class: "intro", text: t("verify.intro") }),
    form,
    el("div", { attrs: { "aria-live": "polite" } }, output));
}

/** The drop handler of the verify page while it is shown (drops elsewhere are ignored). */
let verifyDrop = null;

/** #/disclosures: the on-chain disclosure log, newest first. */
async function disclosuresView() {
  const data = await api("disclosures");
  const requests = data.requests || [];
  const showCollected = requests.some((r) => r.collected !== null && r.collected !== undefined);
  const rows = requests.map((r) => el("tr", { testid: "disclosure-row",
    attrs: { "data-fulfilled": String(Boolean(r.fulfilled)) } },
  el("th", { class: "num", text: String(r.id), attrs: { scope: "row" } }),
  el("td", { text: String(r.platform) }),
  el("td", {}, r.fulfilled
    ? el("span", { class: "tag tag-ok", text: t("ds.fulfilled", { block: r.fulfilled_block }) })
    : el("span", { class: "tag tag-wait", text: t("ds.pending") })),
  el("td", { class: "num", text: String(r.requested_block) }),
  el("td", {}, hex(r.case_reference)),
  el("td", {}, hex(r.commitment)),
  el("td", {}, hex(r.response_digest)),
  showCollected ? el("td", { text: r.collected ? t("yes") : t("no") }) : null));
  const headers = [[t("ds.id"), "num"], t("ds.platform"), t("ds.status"),
    [t("ds.requested"), "num"], t("ds.case"), t("ds.commitment"), t("ds.digest")];
  if (showCollected) {
    headers.push(t("ds.collected"));
  }
  const total = Number.isInteger(data.total) ? data.total : requests.length;
  return el("div", {},
    heading(t("disclosures.title")),
    el("p", { class: "intro", text: t("disclosures.intro") }),
    requests.length ? el("p", { testid: "disclosure-count",
      text: t("disclosures.shown", { shown: requests.length, count: total }) }) : null,
    requests.length ? table(headers, rows, t("disclosures.title"))
      : el("p", { text: t("disclosures.none") }));
}

/** #/alerts: the AML alerts, each linking to its records. */
async function alertsView() {
  const data = await api("alerts");
  const alerts = data.alerts || [];
  const rows = alerts.map((a) => el("tr", { testid: "alert-row", attrs: { "data-alert-id": a.id } },
    el("th", { attrs: { scope: "row" } },
      el("a", { href: `#/alerts/${a.id}`, text: t("al.open", { id: a.id }) })),
    el("td", { text: String(a.rule) }),
    el("td", {}, hex(a.identity)),
    el("td", { text: direction(a.direction) }),
    el("td", { class: "num", text: formatYuan(a.total_fen) }),
    el("td", {}, timeRange(a.window_start, a.window_end)),
    el("td", { text: (a.platforms || []).join(", ") }),
    el("td", { class: "num", text: String((a.refs || []).length) })));
  return el("div", {},
    heading(t("alerts.title")),
    alerts.length
      ? table([t("al.id"), t("al.rule"), t("al.identity"), t("al.direction"), [t("al.total"), "num"],
        t("al.window"), t("al.platforms"), [t("al.records"), "num"]], rows, t("alerts.title"))
      : el("p", { text: t("alerts.none") }));
}

/** #/alerts/<id>: one alert and its linked records across platforms. */
async function alertView(id) {
  const data = await api(`alerts/${encodeURIComponent(id)}`);
  const a = data.alert;
  const explanation = alertExplanation(a);
  return el("div", {},
    el("p", {}, el("a", { href: "#/alerts", text: `← ${t("alert.back")}` })),
    heading(t("alert.title", { id: a.id })),
    el("section", { class: "panel", testid: "alert-detail" },
      facts([
        [t("al.rule"), String(a.rule)],
        [t("al.identity"), hex(a.identity)],
        [t("al.direction"), direction(a.direction)],
        [t("al.total"), el("span", { class: "amount", text: formatYuan(a.total_fen) })],
        [t("al.window"), timeRange(a.window_start, a.window_end)],
        [t("al.platforms"), (a.platforms || []).join(", ")],
      ]),
      explanation ? el("p", { class: "finding", testid: "alert-explanation" },
        parts("alert.finding", { label: el("strong", { text: t("alert.detail") }),
          finding: explanation })) : null,
      /^[0-9a-fA-F]{64}$/.test(String(a.identity))
        ? el("p", {}, el("a", { href: `#/trace/${a.identity}`, testid: "alert-trace",
          text: t("alert.trace") }))
        : null),
    el("h2", { text: t("alert.records") }),
    recordList(data.records));
}

/** #/records/<ref>: one record with its proof. */
async function recordView(ref) {
  const data = await api(`records/${encodeURIComponent(ref)}`);
  return el("div", {},
    heading(t("record.title", { ref })),
    recordList([data.record], { linkToRecord: false }));
}

/** #/trace/<identity key>: every record of an identity key (an alert's identity). */
async function traceKeyView(key) {
  const data = await api("trace", { method: "POST", json: { identity_key: key } });
  const records = data.records || [];
  return el("div", {},
    heading(t("trace.key.title")),
    el("p", { class: "intro", text: t("trace.intro") }),
    el("section", { class: "panel" }, facts([[t("al.identity"), el("code", { text: key })]])),
    el("p", { text: t("trace.found", { count: records.length }) }),
    recordList(records));
}

/** #/trace: every record of one identity across platforms. */
function traceView() {
  const output = el("div", { attrs: { "aria-live": "polite" } });
  const show = () => {
    output.replaceChildren(
      traceState.error ? errorBox(traceState.error) : "",
      ...(traceState.records
        ? [el("p", { text: t("trace.found", { count: traceState.records.length }) }),
          recordList(traceState.records)]
        : []));
  };
  const input = el("input", { type: "text", id: "trace-identity", testid: "trace-identity",
    value: traceState.identity, autocomplete: "off", spellcheck: false });
  const submit = el("button", { type: "submit", testid: "trace-submit", text: t("trace.submit") });
  const form = el("form", { class: "panel", attrs: { role: "search" } },
    el("div", { class: "form-row" },
      el("label", { htmlFor: "trace-identity", text: t("trace.identity") }), input),
    el("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    traceState.identity = input.value.trim();
    traceState.records = null;
    traceState.error = null;
    if (!traceState.identity) {
      traceState.error = new Error(t("trace.empty"));
      show();
      return;
    }
    submit.disabled = true;
    try {
      const data = await api("trace", { method: "POST", json: { identity: traceState.identity } });
      traceState.records = data.records || [];
      announce(t("trace.found", { count: traceState.records.length }));
    } catch (error) {
      traceState.error = error;
    } finally {
      submit.disabled = false;
    }
    show();
  });
  show();
  return el("div", {},
    heading(t("trace.title")),
    el("p", { class: "intro", text: t("trace.intro") }),
    form,
    output);
}

// ---------------------------------------------------------------------------------------------
// Routing and the page chrome.

const ROUTES = [
  { pattern: /^\/?$/, nav: "timeline", view: timelineView, title: "timeline.title" },
  { pattern: /^\/timeline$/, nav: "timeline", view: timelineView, title: "timeline.title" },
  { pattern: /^\/charts$/, nav: "charts", view: chartsView, title: "charts.title" },
  { pattern: /^\/verify$/, nav: "verify", view: verifyView, title: "verify.title" },
  { pattern: /^\/disclosures$/, nav: "disclosures", view: disclosuresView, title: "disclosures.title" },
  { pattern: /^\/alerts$/, nav: "alerts", view: alertsView, title: "alerts.title" },
  { pattern: /^\/alerts\/([^/]+)$/, nav: "alerts", view: alertView, title: "alerts.title" },
  { pattern: /^\/records\/(.+)$/, nav: null, view: recordView, title: "rec.ref" },
  { pattern: /^\/trace$/, nav: "trace", view: traceView, title: "trace.title" },
  { pattern: /^\/trace\/([0-9a-fA-F]{64})$/, nav: "trace", view: traceKeyView,
    title: "trace.title" },
];

/** The route part of location.hash ("#/alerts/3" -> "/alerts/3"). */
function currentPath() {
  return location.hash.replace(/^#/, "");
}

/** Render the view of the current hash into <main>; `focus` moves focus to its heading. */
async function render({ focus = false } = {}) {
  const serial = ++renderSerial;
  const main = document.getElementById("main");
  const path = currentPath();
  let route = null;
  let params = [];
  for (const candidate of ROUTES) {
    const match = candidate.pattern.exec(path);
    if (match) {
      route = candidate;
      params = match.slice(1).map((p) => decodeURIComponent(p));
      break;
    }
  }
  verifyDrop = null;
  for (const link of document.querySelectorAll(".site-nav a[data-route]")) {
    if (route && link.dataset.route === route.nav) {
      link.setAttribute("aria-current", "page");
    } else {
      link.removeAttribute("aria-current");
    }
  }
  let content;
  if (!route) {
    content = el("div", {}, heading(t("error.title")),
      errorBox(new Error(t("error.notfound", { route: path }))));
  } else {
    main.setAttribute("aria-busy", "true");
    main.replaceChildren(el("p", { class: "loading", text: t("loading") }));
    try {
      content = await route.view(...params);
    } catch (error) {
      content = el("div", {}, heading(t(route.title)), errorBox(error));
      if (error instanceof ApiError && error.status === 401 && session.role === "regulator") {
        await loadSession(); // the session expired or was closed elsewhere
        updateChrome();
      }
    }
  }
  if (serial !== renderSerial) {
    return; // A later navigation won.
  }
  main.removeAttribute("aria-busy");
  main.replaceChildren(content);
  document.title = `${main.querySelector("h1")?.textContent || ""} · ${t("app.title")}`;
  if (focus) {
    (main.querySelector("h1") || main).focus();
  }
}

/** Show the session's role in the banner and the regulator-only navigation. */
function updateChrome() {
  const regulator = session.role === "regulator";
  const banner = document.getElementById("role-banner");
  banner.dataset.role = regulator ? "regulator" : "auditor";
  banner.dataset.i18n = regulator ? "role.regulator" : "role.auditor";
  banner.textContent = regulator
    ? t("role.regulator", { name: session.name || session.member || "" })
    : t("role.auditor");
  const toggle = document.getElementById("lang-toggle");
  toggle.lang = language() === "zh" ? "en" : "zh-CN"; // the toggle names the other language
  for (const item of document.querySelectorAll(".regulator-only")) {
    item.hidden = !regulator;
  }
  document.getElementById("logout").hidden = !regulator;
}

/** Translate the static chrome and re-render the view after a language switch. */
function applyLanguage() {
  translateStatic();
  updateChrome();
}

/** Exchange a one-time #login=<token> for a session cookie; the token leaves the URL first. */
async function loginFromHash() {
  const match = /^#login=([A-Za-z0-9_-]+={0,2})$/.exec(location.hash);
  if (!location.hash.startsWith("#login=")) {
    return;
  }
  history.replaceState(null, "", `${location.pathname}${location.search}#/timeline`);
  try {
    if (!match) {
      throw new ApiError(401, null, "malformed login token");
    }
    const answer = await api("session", { method: "POST", json: { token: match[1] } });
    announce(t("login.ok", { name: answer.name || answer.member || "" }));
  } catch (error) {
    announce(t("error.login", { detail: error.message }));
    document.getElementById("main").before(errorBox(
      new Error(t("error.login", { detail: error.message }))));
  }
}

/** Ask the node who we are (auditor unless a regulator session cookie is held). */
async function loadSession() {
  try {
    session = await api("session");
  } catch (error) {
    session = { role: "auditor", member: null, name: null };
    announce(error.message);
  }
}

async function start() {
  document.documentElement.lang = language() === "zh" ? "zh-CN" : "en";
  translateStatic();
  document.getElementById("lang-toggle").addEventListener("click", () => {
    setLanguage(language() === "zh" ? "en" : "zh");
    applyLanguage();
    render({ focus: false });
  });
  document.getElementById("logout").addEventListener("click", async () => {
    try {
      await api("session", { method: "DELETE" });
      announce(t("logout.ok"));
    } catch (error) {
      announce(error.message);
    }
    await loadSession();
    updateChrome();
    location.hash = "#/timeline";
    render({ focus: true });
  });
  // The skip link must not change the hash: the hash is the route.
  document.getElementById("skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    const main = document.getElementById("main");
    main.focus();
    main.scrollIntoView();
  });
  // Files dropped anywhere would make the browser navigate away; the verify page takes them.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => {
    event.preventDefault();
    if (verifyDrop && event.dataTransfer) {
      verifyDrop(event.dataTransfer);
    }
  });
  await loginFromHash();
  await loadSession();
  updateChrome();
  window.addEventListener("hashchange", async () => {
    document.getElementById("status").textContent = "";
    if (location.hash.startsWith("#login=")) {
      // A login link opened in a tab that already shows the console.
      document.body.dataset.ready = "false";
      await loginFromHash();
      await loadSession();
      updateChrome();
      await render({ focus: false });
      document.body.dataset.ready = "true";
      return;
    }
    render({ focus: true });
  });
  await render({ focus: false });
  document.body.dataset.ready = "true";
}

start();
