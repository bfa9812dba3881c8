// Top blocked domains (GET /v1/report/unfiled): what this gateway blocked
// most, with the CSV download the filing team asks for.

import { api, query } from "./api.js";
import { el, $, append, show as showEl } from "./dom.js";
import { t, has, fmtNumber } from "./i18n.js";
import { clearErrors, showError, timeNode } from "./ui.js";
import { reasonTitle } from "./explain.js";

let go = () => {};
let rows = [];
let loaded = false;

/** init wires the filter form. */
export function init(ctx) {
  go = ctx.go;
  $("report-filter").addEventListener("submit", (ev) => {
    ev.preventDefault();
    load();
  });
  $("report-reason").addEventListener("change", updateCSV);
  updateCSV();
}

/** onSession forgets the previous report. */
export function onSession() {
  loaded = false;
  rows = [];
}

/** show refreshes the report on entering the tab. */
export function show(params, first) {
  if (first || !loaded) load();
}

/** rerender draws the rows again (after a language switch). */
export function rerender() {
  renderRows();
}

// updateCSV points the download at the CSV with a byte order mark: Excel
// on Chinese Windows reads a CSV without one as GBK and garbles it.
function updateCSV() {
  $("report-csv").setAttribute("href", "/v1/report/unfiled" + query({ format: "csv", reason: $("report-reason").value, bom: "1" }));
}

// seq numbers the requests; only the latest one's answer is shown.
let seq = 0;

async function load() {
  const my = ++seq;
  const msg = $("report-msg");
  clearErrors(null, msg);
  updateCSV();
  $("report-table").setAttribute("aria-busy", "true");
  let data, err;
  try {
    ({ data } = await api("GET", "/v1/report/unfiled" + query({ n: $("report-n").value, reason: $("report-reason").value })));
  } catch (e) {
    err = e;
  }
  if (my !== seq) return; // superseded
  $("report-table").removeAttribute("aria-busy");
  if (err) {
    rows = [];
    showError(msg, err);
  } else {
    rows = data.rows || [];
    loaded = true;
  }
  renderRows();
}

function renderRows() {
  const tbody = $("report-table").tBodies[0];
  tbody.replaceChildren();
  rows.forEach((r, i) => {
    append(
      tbody,
      el(
        "tr",
        { dataset: { domain: r.domain } },
        el("td", { class: "num", text: String(i + 1) }),
        el("td", {}, el("code", { class: "host", text: r.domain })),
        el("td", {}, el("span", { text: reasonTitle(r.reason) }), has(`reason.${r.reason}.title`) ? el("div", { class: "sub" }, el("code", { text: r.reason })) : null),
        el("td", { class: "num" }, fmtNumber(r.hits), r.hits_error ? el("div", { class: "sub", text: t("report.hits_error", { n: fmtNumber(r.hits_error) }) }) : null),
        el("td", {}, timeNode(r.first_seen), el("div", { class: "sub" }, timeNode(r.last_seen, { relative: true }))),
        el("td", {}, (r.destinations || []).map((d) => el("div", {}, el("code", { text: d })))),
        el("td", {}, el("button", { type: "button", class: "secondary small", text: t("report.explain"), "aria-label": t("ov.explain_label", { host: r.domain }), onclick: () => go("explain", { host: r.domain }) })),
      ),
    );
  });
  showEl($("report-empty"), loaded && rows.length === 0);
}
