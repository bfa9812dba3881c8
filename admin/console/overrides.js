// The whitelist: add an allow override (TTL presets, ticket and reason
// required), list overrides with filters and pages, extend (PATCH with
// If-Match) and remove (DELETE with If-Match). The server is the judge:
// the checks here only save a round trip, and whatever it answers is shown.

import { api, can, query, ApiError } from "./api.js";
import { el, $, append, show as showEl } from "./dom.js";
import { t, has, fmtTime } from "./i18n.js";
import { clearErrors, clearMessages, showError, showOK, markField, busy, timeNode, dialog, status, ttlRadios, Pager } from "./ui.js";

const PAGE_SIZE = 50;

let go = () => {};
let rows = []; // the page shown
let pager; // position in the cursor-paged list
let loaded = false;
let focusTicket = false; // set by prefill: the next show focuses the ticket field

/** init wires the forms and buttons. */
export function init(ctx) {
  go = ctx.go;
  $("ov-form").addEventListener("submit", onCreate);
  $("ov-filter").addEventListener("submit", (ev) => {
    ev.preventDefault();
    clearMessages($("view-overrides"));
    reload();
  });
  pager = new Pager("ov", load);
}

/** onSession shows the form only to roles that may use it. */
export function onSession() {
  const ok = can("support");
  showEl($("ov-form"), ok);
  showEl($("ov-readonly"), !ok);
  loaded = false;
  rows = [];
  clearErrors($("ov-form"), $("ov-msg"));
}

/** show loads the list; #overrides?q=HOST&action=allow filters it. */
export function show(params, first) {
  const q = params.get("q");
  if (q !== null) {
    $("ov-q").value = q;
    const a = params.get("action");
    if (a !== null) $("ov-action").value = a;
    reload();
  } else if (first || !loaded) reload();
  if (focusTicket) {
    focusTicket = false;
    $("ov-ticket").focus();
  } else if (first && can("support") && $("ov-host").value === "") $("ov-host").focus();
}

/** rerender draws the rows again (after a language switch). */
export function rerender() {
  renderRows();
}

/** prefill puts a host into the form (from the explain view). */
export function prefill({ host, scope }) {
  const form = $("ov-form");
  clearErrors(form, $("ov-msg"));
  form.elements.host.value = host;
  form.elements.scope.value = scope || "";
  focusTicket = true;
}

// checkCreate mirrors the server's validation (docs/admin-api.md) and
// returns [field, message] pairs.
function checkCreate(b) {
  const errs = [];
  const h = b.host;
  if (h === "") errs.push(["host", t("check.host_required")]);
  else if (/\s/.test(h)) errs.push(["host", t("check.host_space")]);
  else if (/[/@%\\?#]/.test(h) || /^[a-z][a-z0-9+.-]*:/i.test(h)) errs.push(["host", t("check.host_url")]);
  else if (h.includes("*")) errs.push(["host", t("check.host_wildcard")]);
  else if (/^\d{1,3}(\.\d{1,3}){3}$/.test(h) || h.includes(":") || h.startsWith("[")) errs.push(["host", t("check.host_ip")]);
  else if (new TextEncoder().encode(h).length > 253) errs.push(["host", t("check.host_long")]);
  checkText(errs, "ticket", b.ticket, 100);
  checkText(errs, "reason", b.reason, 500);
  return errs;
}

function checkText(errs, field, v, max) {
  const n = [...v].length;
  if (n === 0) errs.push([field, t(`check.${field}_required`)]);
  else if (n > max) errs.push([field, t("check.too_long", { max })]);
  // eslint-disable-next-line no-control-regex
  else if (/[\u0000-\u001f\u007f-\u009f]/.test(v)) errs.push([field, t("check.control")]);
}

async function onCreate(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const msg = $("ov-msg");
  clearMessages($("view-overrides"));
  clearErrors(form, msg);
  const f = form.elements;
  const checked = form.querySelector('input[name="ttl"]:checked');
  const body = { host: f.host.value.trim(), action: "allow", reason: f.reason.value.trim(), ticket: f.ticket.value.trim(), ttl: checked ? checked.value : "1080h" };
  if (f.scope.value) body.scope = f.scope.value;
  const errs = checkCreate(body);
  if (errs.length) {
    for (const [field, text] of errs.reverse()) markField(form, field, text); // reversed: the first ends focused
    return;
  }
  await busy(form, () => send(form, msg, body));
}

async function send(form, msg, body) {
  try {
    const { data } = await api("POST", "/v1/overrides", { body });
    form.reset();
    showOK(
      msg,
      t("ov.created", { host: data.host, expires: fmtTime(data.expires) }),
      " ",
      el("button", { type: "button", class: "link-button", id: "ov-verify", text: t("ov.verify"), onclick: () => go("explain", { host: data.host }) }),
    );
    status(t("ov.created", { host: data.host, expires: fmtTime(data.expires) }));
    $("ov-q").value = "";
    $("ov-action").value = "allow";
    $("ov-active").value = "true";
    reload();
  } catch (e) {
    if (e instanceof ApiError && e.status === 409 && e.code === "confirmation_required" && !body.confirm) {
      const state = has("state." + e.state) ? t("state." + e.state) : e.state;
      const ok = await dialog({
        title: t("ov.confirm_title"),
        body: [
          el("p", { text: t("ov.confirm_body", { host: body.host, state }) }),
          has(`reason.${e.state}.whitelist`) ? el("p", { class: "note", text: t(`reason.${e.state}.whitelist`) }) : null,
          e.serverMessage ? el("p", { class: "err-server" }, el("span", { class: "label", text: t("err.server_said") }), " ", el("q", { class: "verbatim", text: e.serverMessage })) : null,
        ],
        ok: t("ov.confirm_ok"),
        danger: true,
      });
      if (ok) return send(form, msg, { ...body, confirm: true });
      msg.hidden = false;
      msg.className = "msg msg-info";
      msg.textContent = t("ov.not_added");
      return;
    }
    showError(msg, e, form);
  }
}

function reload() {
  pager.reset();
  return load();
}

// seq numbers the list requests; only the latest one's answer is shown,
// so a slow earlier page cannot overwrite a newer filter or reload.
let seq = 0;

async function load() {
  const my = ++seq;
  const msg = $("ov-list-msg");
  clearErrors(null, msg);
  const params = {
    q: $("ov-q").value.trim(),
    action: $("ov-action").value,
    active: $("ov-active").value,
    after: pager.cursor,
    limit: PAGE_SIZE,
  };
  $("ov-table").setAttribute("aria-busy", "true");
  let data, err;
  try {
    ({ data } = await api("GET", "/v1/overrides" + query(params)));
  } catch (e) {
    err = e;
  }
  if (my !== seq) return; // superseded
  $("ov-table").removeAttribute("aria-busy");
  if (err) {
    rows = [];
    pager.next = "";
    showError(msg, err);
  } else {
    rows = data.overrides || [];
    pager.next = data.next || "";
    loaded = true;
  }
  renderRows();
}

function renderRows() {
  const tbody = $("ov-table").tBodies[0];
  tbody.replaceChildren();
  for (const o of rows) append(tbody, rowNode(o));
  showEl($("ov-empty"), loaded && rows.length === 0);
  pager.render(loaded);
}

function rowNode(o) {
  const editable = o.action === "allow" ? can("support") : can("admin");
  const ops = el("div", { class: "row-actions" });
  append(ops, el("button", { type: "button", class: "secondary small", text: t("ov.explain"), "aria-label": t("ov.explain_label", { host: o.host }), onclick: () => go("explain", { host: o.host }) }));
  if (editable) {
    append(
      ops,
      el("button", { type: "button", class: "secondary small", text: t("ov.extend"), "aria-label": t("ov.extend_label", { host: o.host }), dataset: { op: "extend", host: o.host }, onclick: () => extend(o) }),
      el("button", { type: "button", class: "danger small", text: t("ov.remove"), "aria-label": t("ov.remove_label", { host: o.host }), dataset: { op: "remove", host: o.host }, onclick: () => remove(o) }),
    );
  }
  return el(
    "tr",
    { dataset: { id: o.id, host: o.host }, class: o.active ? "" : "inactive" },
    el("td", {}, el("code", { class: "host", text: o.host }), el("div", { class: "sub", text: t("ov.scope_short_" + o.scope) })),
    el("td", {}, el("span", { class: "badge badge-" + o.action, text: t("ov.action_" + o.action) })),
    el("td", {}, timeNode(o.expires, { relative: true }), expiryBadge(o)),
    el("td", {}, el("div", { class: "ticket", text: o.ticket || "—" }), el("div", { class: "sub", text: o.reason })),
    el("td", {}, el("div", { text: o.created_by }), el("div", { class: "sub" }, timeNode(o.created))),
    el("td", {}, ops),
  );
}

// SOON is how close an expiry must be for the list to flag it.
const SOON = 7 * 24 * 3600 * 1000;

function expiryBadge(o) {
  if (!o.active) return el("div", { class: "sub" }, el("span", { class: "badge badge-expired", text: t("ov.expired") }));
  if (o.expires && new Date(o.expires).getTime() - Date.now() < SOON) {
    return el("div", { class: "sub" }, el("span", { class: "badge badge-soon", text: t("ov.expiring_soon") }));
  }
  return null;
}

async function extend(o) {
  const ok = await dialog({
    title: t("ov.extend_title", { host: o.host }),
    body: [
      el("p", {}, t("ov.extend_current"), " ", timeNode(o.expires, { relative: true })),
      el("fieldset", { class: "presets", id: "ext-presets" }, el("legend", { text: t("ov.extend_new") }), ttlRadios("ext", 45)),
      el("p", { class: "hint", text: t("ov.extend_hint") }),
    ],
    ok: t("ov.extend"),
  });
  if (!ok) return;
  const checked = document.querySelector("#ext-presets input:checked");
  await mutate("PATCH", o, { ttl: checked ? checked.value : "1080h" }, (d) => t("ov.extended", { host: d.host, expires: fmtTime(d.expires) }));
}

async function remove(o) {
  const ok = await dialog({
    title: t("ov.remove_title", { host: o.host }),
    body: [el("p", { text: t(o.action === "allow" ? "ov.remove_body_allow" : "ov.remove_body_deny", { host: o.host }) })],
    ok: t("ov.remove"),
    danger: true,
  });
  if (!ok) return;
  await mutate("DELETE", o, undefined, (d) => t("ov.removed", { host: d.host || o.host }));
}

// mutate sends a PATCH or DELETE for o with its version in If-Match. A
// 412 (someone else changed it) or 404 (someone removed it) reloads the
// list so what is shown is what is stored.
async function mutate(method, o, body, okText) {
  const msg = $("ov-list-msg");
  clearMessages($("view-overrides"));
  try {
    const { data } = await api(method, "/v1/overrides/" + encodeURIComponent(o.id), { body, ifMatch: o.version });
    const text = okText(data || {});
    await load();
    showOK(msg, text);
    status(text);
  } catch (e) {
    showError(msg, e);
    if (e instanceof ApiError && (e.status === 412 || e.status === 404)) {
      await load();
      showError(msg, e); // load() cleared it; keep the explanation visible
    }
  }
}
