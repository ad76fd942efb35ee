// Labels of the console in English and Chinese; the chosen language is remembered in
// localStorage and mirrored in <html lang>. Every visible label of the console comes from here.
// A label with a count is an object of plural forms: "=N" for exactly N, then the language's
// plural categories (Intl.PluralRules: English "one"/"other", Chinese only "other"), so that
// English says "1 checkpoint" and "2 checkpoints" and Chinese its counter words.

const STORAGE_KEY = "jl-console-lang";

const MESSAGES = {
  en: {
    "app.title": "JointLedger console",
    "app.subtitle": "Regulator node",
    "skip": "Skip to content",
    "lang.toggle": "中文",
    "lang.toggle.label": "切换到中文",
    "role.auditor": "Auditor view (read-only)",
    "role.regulator": "Regulator view: {name}",
    "logout": "Log out",
    "nav.label": "Console sections",
    "nav.timeline": "Timeline",
    "nav.charts": "Charts",
    "nav.verify": "Verify",
    "nav.disclosures": "Disclosures",
    "nav.alerts": "Alerts",
    "nav.trace": "Trace",
    "loading": "Loading…",
    "error.title": "Something went wrong",
    "error.network": "The node did not answer: {message}",
    "error.http": "The node answered {status} {title}",
    "error.login": "Login failed: {detail}",
    "error.notfound": "No such page: {route}",
    "login.ok": "Logged in as regulator {name}.",
    "logout.ok": "Logged out.",
    "none": "none",
    "yes": "yes",
    "no": "no",
    "timeline.title": "Checkpoint timeline",
    "timeline.intro": "Signed checkpoints of each platform's log, as anchored on the chain. Latency is the time from the platform signing a checkpoint to the block that holds it.",
    "clock.ahead": "The chain's block times run {seconds} s ahead of this node's clock (a chain that mines more than one block a second moves each block a second past its parent), so the latencies read from them overstate the real anchoring latency.",
    "clock.behind": {
      one: "{count} checkpoint was anchored in a block stamped {seconds} s before the platform signed it: the chain's clock and the platform's disagree, so its latency cannot be read from them and is shown as “clocks disagree”.",
      other: "{count} checkpoints were anchored in blocks stamped up to {seconds} s before the platform signed them: the chain's clock and the platform's disagree, so their latencies cannot be read from them and are shown as “clocks disagree”.",
    },
    "time.zone": "{time} (UTC+8)",
    "time.range": "{start} – {end} (UTC+8)",
    "time.utc": "{time} UTC",
    "dur.s": "{s} s",
    "dur.min": "{m} min {s} s",
    "dur.h": "{h} h {m} min",
    "bucket.s": "{n} s",
    "bucket.min": "{n} min",
    "bucket.h": "{n} h",
    "bucket.d": "{n} d",
    "overview.regulator": "Regulator",
    "overview.chain": "Chain id",
    "overview.head": "Head block",
    "overview.records": "Records indexed",
    "overview.faults": "Faults",
    "log.id": "Log id",
    "log.shard": "Shard",
    "log.anchored": "Anchored size",
    "log.verified": "Verified size",
    "log.checkpoints": "Checkpoints",
    "log.last": "Last anchored",
    "log.empty": "No checkpoints anchored yet.",
    "log.shown": {
      one: "Newest {count} checkpoint.",
      other: "Newest {count} checkpoints, newest first.",
    },
    "log.older": "Show older checkpoints",
    "log.older.label": "Show older checkpoints of {log}",
    "cp.size": "Tree size",
    "cp.root": "Root",
    "cp.signed": "Signed at",
    "cp.block": "Block",
    "cp.blocktime": "Block time",
    "cp.latency": "Latency",
    "cp.latency.clocks": "clocks disagree",
    "cp.latency.clocks.title": "The block is stamped {seconds} s before the platform signed the checkpoint: the chain's clock and the platform's disagree.",
    "cp.verified": "Verified",
    "cp.tx": "Transaction",
    "cp.verified.yes": "verified",
    "cp.verified.no": "not yet",
    "logs.none": "No platform logs on the chain yet.",
    "charts.title": "Charts",
    "charts.volume": "Records anchored per platform",
    "charts.volume.y": "Records per {bucket}",
    "charts.latency": "Checkpoint anchoring latency",
    "charts.latency.y": "Latency (s)",
    "charts.alerts": "Alerts by rule",
    "charts.alerts.x": "Alerts",
    "charts.alerts.auditor": "Alert counts are shown in the regulator view only.",
    "charts.time": "Time (UTC+8)",
    "charts.empty": "No data yet.",
    "charts.table": "Data of the chart “{title}”",
    "charts.series": "Series",
    "charts.rule": "Rule",
    "verify.title": "Verify a proof bundle or case file",
    "verify.intro": "Drop a file here, choose one, or paste its JSON. It is checked against the chain, not against this node's store.",
    "verify.drop": "Drop a proof bundle or case file here",
    "verify.file": "Choose a file",
    "verify.paste": "Or paste the JSON document",
    "verify.submit": "Verify",
    "verify.busy": "Verifying…",
    "verify.empty": "Paste a document or choose a file first.",
    "verify.badjson": "This is not valid JSON: {message}",
    "verify.readerror": "The file could not be read: {message}",
    "verify.loaded": { one: "Loaded {name} ({count} byte).", other: "Loaded {name} ({count} bytes)." },
    "verdict.valid": "Valid",
    "verdict.failed": "Failed",
    "verdict.kind.bundle": "Proof bundle",
    "verdict.kind.case_file": "Case file",
    "verdict.announce.valid": "Verdict: valid. {summary}",
    "verdict.announce.failed": "Verdict: failed. {summary}",
    "check.passed": "passed",
    "check.failed": "failed",
    "check.not_run": "not run",
    "check.not_checked": "not checked",
    "disclosures.title": "Disclosure log",
    "disclosures.intro": "Disclosure requests as logged on the chain, newest first.",
    "disclosures.none": "No disclosure requests on the chain.",
    "disclosures.shown": {
      one: "{shown} shown of the {count} request ever made.",
      other: "{shown} shown of {count} requests ever made.",
    },
    "ds.id": "Request",
    "ds.platform": "Platform",
    "ds.commitment": "Commitment",
    "ds.case": "Case reference",
    "ds.requested": "Requested in block",
    "ds.status": "Status",
    "ds.fulfilled": "Answered in block {block}",
    "ds.pending": "Pending",
    "ds.digest": "Response digest",
    "ds.collected": "Opening collected",
    "alerts.title": "AML alerts",
    "alerts.none": "No alerts.",
    "al.id": "Alert",
    "al.rule": "Rule",
    "al.identity": "Identity",
    "al.direction": "Direction",
    "dir.payer": "payer",
    "dir.payee": "payee",
    "al.total": "Total",
    "al.window": "Window",
    "al.platforms": "Platforms",
    "al.records": "Records",
    "al.open": "Alert {id}",
    "alert.title": "Alert {id}",
    "alert.back": "All alerts",
    "alert.records": "Linked records",
    "alert.detail": "Detail",
    "alert.finding": "{label}: {finding}",
    "alert.trace": "Trace this identity on every platform",
    "alert.large_value": {
      one: "A single {category} payment {side} of {total} on the natural day {day} ({zone}) reached the large-value threshold of {threshold} {where}.",
      other: "{count} {category} payments {side} on the natural day {day} ({zone}) came to {total} {where}, reaching the large-value threshold of {threshold}.",
    },
    "alert.structuring": {
      one: "{count} {category} payment {side}, under the threshold of {threshold}, came to {total} on {platforms} within {window}, reaching the threshold.",
      other: "{count} {category} payments {side}, each under the threshold of {threshold}, came to {total} on {platforms} within {window}, reaching the threshold.",
    },
    "alert.where.platform": "on {platform}",
    "alert.where.all": "across platforms",
    "alert.side.payer": "as payer",
    "alert.side.payee": "as payee",
    "alert.list.sep": ", ",
    "category.cash": "cash",
    "category.institution": "institutional",
    "category.person_domestic": "domestic personal",
    "category.person_cross_border": "cross-border personal",
    "records.none": "No records.",
    "rec.index": "Leaf index",
    "rec.payer": "Payer",
    "rec.payee": "Payee",
    "rec.channel": "Channel",
    "rec.commitment": "Commitment",
    "rec.log": "Log id",
    "rec.ref": "Reference",
    "rec.nopayment": "Not decrypted by this regulator.",
    "rec.proof": "Proof: leaf {index} of {size} at the checkpoint anchored in block {block}.",
    "rec.verify": "Verify",
    "rec.verify.label": "Verify the proof of record {ref}",
    "rec.download": "Download proof bundle",
    "rec.open": "Open record",
    "record.title": "Record {ref}",
    "trace.title": "Trace an identity",
    "trace.intro": "Every record across all platforms where this identity pays or is paid.",
    "trace.identity": "Identity (account, card or wallet id)",
    "trace.submit": "Trace",
    "trace.found": { one: "{count} record found.", other: "{count} records found." },
    "trace.empty": "Enter an identity first.",
    "trace.key.title": "Records of one identity",
    "faults.title": "Faults",
    "faults.none": "No faults recorded.",
    "fault.platform": "Platform",
    "fault.range": "Leaves",
    "fault.kind": "Kind",
    "fault.detail": "Detail",
    "fault.at": "At",
    "footer": "Data comes from this regulator node and the chain it follows.",
  },
  zh: {
    "app.title": "联合账本控制台",
    "app.subtitle": "监管节点",
    "skip": "跳到正文",
    "lang.toggle": "English",
    "lang.toggle.label": "Switch to English",
    "role.auditor": "审计视图（只读）",
    "role.regulator": "监管视图：{name}",
    "logout": "退出登录",
    "nav.label": "控制台栏目",
    "nav.timeline": "时间线",
    "nav.charts": "图表",
    "nav.verify": "验证",
    "nav.disclosures": "披露记录",
    "nav.alerts": "预警",
    "nav.trace": "追踪",
    "loading": "加载中…",
    "error.title": "出错了",
    "error.network": "节点没有响应：{message}",
    "error.http": "节点返回 {status} {title}",
    "error.login": "登录失败：{detail}",
    "error.notfound": "没有这个页面：{route}",
    "login.ok": "已作为监管方 {name} 登录。",
    "logout.ok": "已退出登录。",
    "none": "无",
    "yes": "是",
    "no": "否",
    "timeline.title": "检查点时间线",
    "timeline.intro": "各平台日志的签名检查点，以链上锚定为准。延迟指平台签署检查点到包含它的区块之间的时间。",
    "clock.ahead": "链上区块时间比本节点时钟快 {seconds} 秒（每秒出块多于一个的链，每个区块的时间都比父区块晚一秒），因此据此计算的延迟高于实际锚定延迟。",
    "clock.behind": {
      "=1": "有 1 个检查点所在区块的时间比平台签署它的时间早 {seconds} 秒：链上时钟与平台时钟不一致，无法据此得出其延迟，显示为“时钟不一致”。",
      other: "有 {count} 个检查点所在区块的时间比平台签署它们的时间早（最多 {seconds} 秒）：链上时钟与平台时钟不一致，无法据此得出其延迟，显示为“时钟不一致”。",
    },
    "time.zone": "{time}（北京时间）",
    "time.range": "{start} – {end}（北京时间）",
    "time.utc": "UTC 时间 {time}",
    "dur.s": "{s} 秒",
    "dur.min": "{m} 分 {s} 秒",
    "dur.h": "{h} 小时 {m} 分",
    "bucket.s": "{n} 秒",
    "bucket.min": "{n} 分钟",
    "bucket.h": "{n} 小时",
    "bucket.d": "{n} 天",
    "overview.regulator": "监管方",
    "overview.chain": "链 ID",
    "overview.head": "最新区块",
    "overview.records": "已索引记录",
    "overview.faults": "故障",
    "log.id": "日志 ID",
    "log.shard": "分片",
    "log.anchored": "已锚定大小",
    "log.verified": "已验证大小",
    "log.checkpoints": "检查点数",
    "log.last": "最近锚定",
    "log.empty": "尚未锚定任何检查点。",
    "log.shown": {
      "=1": "最新的 1 个检查点。",
      other: "最新的 {count} 个检查点，最新的在前。",
    },
    "log.older": "显示更早的检查点",
    "log.older.label": "显示 {log} 更早的检查点",
    "cp.size": "树大小",
    "cp.root": "根哈希",
    "cp.signed": "签署时间",
    "cp.block": "区块",
    "cp.blocktime": "出块时间",
    "cp.latency": "延迟",
    "cp.latency.clocks": "时钟不一致",
    "cp.latency.clocks.title": "区块时间比平台签署检查点的时间早 {seconds} 秒：链上时钟与平台时钟不一致。",
    "cp.verified": "已验证",
    "cp.tx": "交易",
    "cp.verified.yes": "已验证",
    "cp.verified.no": "尚未验证",
    "logs.none": "链上还没有平台日志。",
    "charts.title": "图表",
    "charts.volume": "各平台锚定记录数",
    "charts.volume.y": "每 {bucket} 记录数",
    "charts.latency": "检查点锚定延迟",
    "charts.latency.y": "延迟（秒）",
    "charts.alerts": "按规则统计的预警",
    "charts.alerts.x": "预警数",
    "charts.alerts.auditor": "预警统计仅在监管视图中显示。",
    "charts.time": "时间（北京时间）",
    "charts.empty": "暂无数据。",
    "charts.table": "图表“{title}”的数据",
    "charts.series": "序列",
    "charts.rule": "规则",
    "verify.title": "验证证明包或案卷",
    "verify.intro": "把文件拖到这里、选择文件或粘贴其 JSON。验证以链上数据为准，而不是本节点的存储。",
    "verify.drop": "把证明包或案卷文件拖到这里",
    "verify.file": "选择文件",
    "verify.paste": "或粘贴 JSON 文档",
    "verify.submit": "验证",
    "verify.busy": "验证中…",
    "verify.empty": "请先粘贴文档或选择文件。",
    "verify.badjson": "这不是有效的 JSON：{message}",
    "verify.readerror": "无法读取文件：{message}",
    "verify.loaded": { other: "已载入 {name}（{count} 字节）。" },
    "verdict.valid": "有效",
    "verdict.failed": "未通过",
    "verdict.kind.bundle": "证明包",
    "verdict.kind.case_file": "案卷",
    "verdict.announce.valid": "结论：有效。{summary}",
    "verdict.announce.failed": "结论：未通过。{summary}",
    "check.passed": "通过",
    "check.failed": "失败",
    "check.not_run": "未执行",
    "check.not_checked": "未检查",
    "disclosures.title": "披露记录",
    "disclosures.intro": "链上记录的披露请求，最新的在前。",
    "disclosures.none": "链上没有披露请求。",
    "disclosures.shown": { other: "显示 {shown} 条，链上共 {count} 条请求。" },
    "ds.id": "请求",
    "ds.platform": "平台",
    "ds.commitment": "承诺值",
    "ds.case": "案件编号",
    "ds.requested": "请求区块",
    "ds.status": "状态",
    "ds.fulfilled": "已在区块 {block} 答复",
    "ds.pending": "待答复",
    "ds.digest": "答复摘要",
    "ds.collected": "已取得打开值",
    "alerts.title": "反洗钱预警",
    "alerts.none": "没有预警。",
    "al.id": "预警",
    "al.rule": "规则",
    "al.identity": "身份",
    "al.direction": "方向",
    "dir.payer": "付款方",
    "dir.payee": "收款方",
    "al.total": "总额",
    "al.window": "时间窗口",
    "al.platforms": "平台",
    "al.records": "记录",
    "al.open": "预警 {id}",
    "alert.title": "预警 {id}",
    "alert.back": "全部预警",
    "alert.records": "关联记录",
    "alert.detail": "说明",
    "alert.finding": "{label}：{finding}",
    "alert.trace": "在所有平台上追踪此身份",
    "alert.large_value": {
      "=1": "单笔{category}（{side}）{total}，自然日 {day}（{zone}），{where}达到大额交易报告标准 {threshold}。",
      other: "{count} 笔{category}（{side}）于自然日 {day}（{zone}）{where}累计 {total}，达到大额交易报告标准 {threshold}。",
    },
    "alert.structuring": {
      other: "{window}内 {count} 笔{category}（{side}），每笔低于 {threshold}，在 {platforms} 合计 {total}，达到报告标准。",
    },
    "alert.where.platform": "在 {platform} ",
    "alert.where.all": "跨平台",
    "alert.side.payer": "付款",
    "alert.side.payee": "收款",
    "alert.list.sep": "、",
    "category.cash": "现金交易",
    "category.institution": "非自然人客户转账",
    "category.person_domestic": "自然人境内转账",
    "category.person_cross_border": "自然人跨境转账",
    "records.none": "没有记录。",
    "rec.index": "叶子序号",
    "rec.payer": "付款方",
    "rec.payee": "收款方",
    "rec.channel": "渠道",
    "rec.commitment": "承诺值",
    "rec.log": "日志 ID",
    "rec.ref": "编号",
    "rec.nopayment": "本监管方未解密此记录。",
    "rec.proof": "证明：区块 {block} 中锚定的检查点（共 {size} 个叶子）中的第 {index} 个叶子。",
    "rec.verify": "验证",
    "rec.verify.label": "验证记录 {ref} 的证明",
    "rec.download": "下载证明包",
    "rec.open": "打开记录",
    "record.title": "记录 {ref}",
    "trace.title": "追踪身份",
    "trace.intro": "该身份在所有平台上作为付款方或收款方的全部记录。",
    "trace.identity": "身份（账户、卡号或钱包 ID）",
    "trace.submit": "追踪",
    "trace.found": { other: "找到 {count} 条记录。" },
    "trace.empty": "请先输入身份。",
    "trace.key.title": "同一身份的记录",
    "faults.title": "故障",
    "faults.none": "没有故障记录。",
    "fault.platform": "平台",
    "fault.range": "叶子",
    "fault.kind": "类型",
    "fault.detail": "说明",
    "fault.at": "时间",
    "footer": "数据来自本监管节点及其跟随的区块链。",
  },
};

export const LANGUAGES = Object.freeze(Object.keys(MESSAGES));

let current = initialLanguage();

/** The language chosen before (localStorage), else the browser's, else English. */
function initialLanguage() {
  let stored = null;
  try {
    stored = window.localStorage.getItem(STORAGE_KEY);
  } catch {
    stored = null;
  }
  if (stored && MESSAGES[stored]) {
    return stored;
  }
  const preferred = (navigator.language || "en").toLowerCase();
  return preferred.startsWith("zh") ? "zh" : "en";
}

/** The current language code ("en" or "zh"). */
export function language() {
  return current;
}

/** Switch to `lang`, remember it and update <html lang>. */
export function setLanguage(lang) {
  if (!MESSAGES[lang]) {
    throw new RangeError(`unknown language ${lang}`);
  }
  current = lang;
  try {
    window.localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // Private windows may refuse storage; the choice then lasts for this page only.
  }
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
}

/** The form of the plural label `forms` for `count` in the current language. */
function pluralForm(forms, count) {
  const exact = forms[`=${count}`];
  if (exact !== undefined) {
    return exact;
  }
  const category = new Intl.PluralRules(current === "zh" ? "zh-CN" : "en").select(Number(count));
  return forms[category] ?? forms.other;
}

/** The template of label `key` for `params` (its plural form by `params.count`), or null. */
function template(key, params) {
  const found = MESSAGES[current][key] ?? MESSAGES.en[key];
  if (found === undefined) {
    return null;
  }
  if (typeof found === "object") {
    if (params.count === undefined) {
      throw new TypeError(`the label ${key} has plural forms: give it a count`);
    }
    return pluralForm(found, params.count);
  }
  return found;
}

/**
 * The label `key` in the current language with `{name}` placeholders filled from `params`;
 * a label with plural forms takes its form from `params.count` (a TypeError without one).
 */
export function t(key, params = {}) {
  const text = template(key, params);
  if (text === null) {
    return key;
  }
  return text.replace(/\{(\w+)\}/g, (_, name) =>
    params[name] === undefined ? `{${name}}` : String(params[name]),
  );
}

/**
 * The label `key` as a list of parts: its text between placeholders, and each placeholder's
 * value from `params` as given (a DOM node stays a node), for labels that hold elements.
 */
export function parts(key, params = {}) {
  const text = template(key, params);
  if (text === null) {
    return [key];
  }
  const out = [];
  let last = 0;
  for (const match of text.matchAll(/\{(\w+)\}/g)) {
    out.push(text.slice(last, match.index));
    const value = params[match[1]];
    out.push(value === undefined ? match[0] : value);
    last = match.index + match[0].length;
  }
  out.push(text.slice(last));
  return out.filter((part) => part !== "");
}

/** Every key defined for `lang` (used by the tests to check both languages are complete). */
export function keys(lang) {
  return Object.keys(MESSAGES[lang]);
}

/** The keys of `lang` whose label has plural forms but no "other" form (the tests: none). */
export function pluralsWithoutOther(lang) {
  return Object.entries(MESSAGES[lang])
    .filter(([, value]) => typeof value === "object" && typeof value.other !== "string")
    .map(([key]) => key);
}

/** Fill every element carrying data-i18n (text) or data-i18n-label (aria-label) in `root`. */
export function translateStatic(root = document) {
  for (const element of root.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const element of root.querySelectorAll("[data-i18n-label]")) {
    element.setAttribute("aria-label", t(element.dataset.i18nLabel));
  }
  document.title = t("app.title");
}
