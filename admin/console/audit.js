// The audit log (GET /v1/audit): who did what, when, from where, with what
// outcome; newest first, filtered and paged with the "before" cursor.

import { api, query } from "./api.js";
import { el, $, append, show as showEl } from "./dom.js";
import { t, has } from "./i18n.js";
import { clearErrors, clearMessages, showError, markField, timeNode, Pager } from "./ui.js";

const PAGE_SIZE = 50;

let entries = [];
let pager; // position in the cursor-paged list
let loaded = false;
const open = new Set(); // IDs of entries whose details are shown

/** init wires the filter form and pager. */
export function init() {
  $("audit-filter").addEventListener("submit", (ev) => {
    ev.preventDefault();
    clearMessages($("view-audit"));
    reload();
  });
  pager = new Pager("audit", load);
}

/** onSession forgets the previous person's view. */
export function onSession() {
  loaded = false;
  entries = [];
}

/** show loads the newest entries; #audit?target=X&who=Y&action=Z filters. */
export function show(params, first) {
  let filtered = false;
  for (const k of ["who", "action", "target"]) {
    const v = params.get(k);
    if (v !== null) {
      $("audit-" + k).value = v;
      filtered = true;
    }
  }
  // Always fetch on entering the tab: the log is the thing that changes.
  if (first || filtered || !loaded) reload();
}

/** rerender draws the rows again (after a language switch). */
export function rerender() {
  renderRows();
}

// dayStart turns a yyyy-mm-dd date input into the RFC 3339 instant of that
// local midnight (plus days).
function dayStart(v, plusDays = 0) {
  const [y, m, d] = v.split("-").map(Number);
  return new Date(y, m - 1, d + plusDays).toISOString();
}

function reload() {
  pager.reset();
  return load();
}

// seq numbers the requests; only the latest one's answer is shown, so a
// slow first page cannot overwrite a filter applied after it.
let seq = 0;

async function load() {
  const my = ++seq;
  const form = $("audit-filter");
  const msg = $("audit-msg");
  clearErrors(form, msg);
  const since = form.elements.since.value;
  const until = form.elements.until.value;
  if (since && until && until < since) {
    markField(form, "until", t("audit.until_before_since"));
    return;
  }
  const params = {
    who: form.elements.who.value.trim(),
    action: form.elements.action.value,
    target: form.elements.target.value.trim(),
    since: since ? dayStart(since) : "",
    until: until ? dayStart(until, 1) : "",
    before: pager.cursor,
    limit: PAGE_SIZE,
  };
  $("audit-table").setAttribute("aria-busy", "true");
  let data, err;
  try {
    ({ data } = await api("GET", "/v1/audit" + query(params)));
  } catch (e) {
    err = e;
  }
  if (my !== seq) return; // superseded
  $("audit-table").removeAttribute("aria-busy");
  if (err) {
    entries = [];
    pager.next = "";
    showError(msg, err, form);
  } else {
    entries = data.entries || [];
    pager.next = data.next ? String(data.next) : "";
    loaded = true;
  }
  renderRows();
}

function label(prefix, code) {
  return has(prefix + code) ? t(prefix + code) : code;
}

function renderRows() {
  const tbody = $("audit-table").tBodies[0];
  tbody.replaceChildren();
  for (const e of entries) append(tbody, rowNodes(e));
  showEl($("audit-empty"), loaded && entries.length === 0);
  pager.render(loaded);
}

function rowNodes(e) {
  const detailID = "audit-detail-" + e.id;
  const isOpen = open.has(e.id);
  const toggle = el("button", {
    type: "button",
    class: "secondary small",
    "aria-expanded": isOpen ? "true" : "false",
    "aria-controls": detailID,
    text: t(isOpen ? "common.hide" : "common.show"),
    onclick: () => {
      if (open.has(e.id)) open.delete(e.id);
      else open.add(e.id);
      renderRows();
      const again = document.querySelector(`[aria-controls="${detailID}"]`);
      if (again) again.focus();
    },
  });
  const row = el(
    "tr",
    { dataset: { id: String(e.id), action: e.action, who: e.who || "", target: e.target || "", host: e.normalized || e.target || "", outcome: e.outcome } },
    el("td", {}, timeNode(e.at)),
    el("td", {}, e.who ? el("span", { class: "who", text: e.who }) : el("span", { class: "muted", text: t("audit.who_unknown") }), e.role ? el("div", { class: "sub", text: label("role.", e.role) }) : null),
    el("td", {}, el("span", { text: label("audit.action.", e.action) }), el("div", { class: "sub" }, el("code", { text: e.action }))),
    el("td", {}, targetNode(e)),
    el("td", { class: "ticket" }, ticketReason(e).ticket || el("span", { class: "muted", text: "—" })),
    el("td", { class: "reason" }, ticketReason(e).reason || el("span", { class: "muted", text: "—" })),
    el("td", {}, el("span", { class: "badge badge-outcome-" + e.outcome, text: label("audit.outcome.", e.outcome) }), e.detail ? el("div", { class: "sub verbatim", text: e.detail }) : null),
    el("td", {}, toggle),
  );
  const detail = el("tr", { id: detailID, class: "detail", hidden: !isOpen }, el("td", { colspan: "8" }, detailNode(e)));
  return [row, detail];
}

/**
 * ticketReason returns the ticket and reason an entry is about: what the
 * request sent (an attempt, refused or not, says what it tried), else the
 * override after the change, else before it (a removal).
 */
export function ticketReason(e) {
  const obj = (v) => (v && typeof v === "object" && !Array.isArray(v) ? v : {});
  const input = obj(e.input);
  const o = { ...obj(e.before), ...obj(e.after) };
  const pick = (k) => (typeof input[k] === "string" && input[k] !== "" ? input[k] : typeof o[k] === "string" ? o[k] : "");
  return { ticket: pick("ticket"), reason: pick("reason") };
}

// targetNode shows the host acted on first (what support staff search
// for) and the override ID under it.
function targetNode(e) {
  const host = e.normalized || e.target;
  if (!host) return "—";
  return [el("code", { class: "host", text: host }), e.target && e.target !== host ? el("div", { class: "sub", text: t("audit.entry_id", { id: e.target }) }) : null];
}

function detailNode(e) {
  const dl = el("dl", { class: "facts" });
  const add = (k, v) => append(dl, [el("dt", { text: t(k) }), el("dd", {}, v)]);
  add("audit.d_id", String(e.id));
  add("audit.d_remote", el("code", { text: e.remote || "—" }));
  if (e.input !== undefined) add("audit.d_input", pre(e.input));
  if (e.normalized) add("audit.d_normalized", el("code", { text: e.normalized }));
  if (e.before !== undefined) add("audit.d_before", pre(e.before));
  if (e.after !== undefined) add("audit.d_after", pre(e.after));
  return dl;
}

function pre(v) {
  return el("pre", { class: "json", text: JSON.stringify(v, null, 2) });
}
