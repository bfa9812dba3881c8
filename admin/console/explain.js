// Explain: why is this host blocked (or passed)? Shows the verdict, what
// the reason means, what to tell the customer, whether a whitelist entry is
// appropriate, and every step of the decision (GET /v1/explain). The same
// box takes a filing number (备案号) or a subject (主体) name, and lists
// the registry's records for it (GET /v1/records), each a link to its
// explanation. It also takes the request ID a visitor read off a block
// page (GET /v1/requests/{id}): when, which gateway, why, and which
// address, verified when support types the one the visitor names.

import { api, can, query } from "./api.js";
import { el, $, append } from "./dom.js";
import { t, has, fmtNumber } from "./i18n.js";
import { clearErrors, clearMessages, showError, markField, busy, timeNode, status } from "./ui.js";
import * as overrides from "./overrides.js";

// Reasons for which a whitelist entry can make sense; filing_pending and
// cancelled need the server's extra confirmation, blacklisted is refused
// by the server whatever the input and so is not offered.
const WHITELISTABLE = new Set(["unfiled", "no_access", "rectification_overdue", "access_revoked", "filing_pending", "cancelled"]);

let go = () => {};
let last = null; // the explanation or search answer shown, re-rendered on a language switch
let lastKind = ""; // "host", "filing_number" or "subject": what last is
let lastQuery = ""; // kind + ":" + value asked for
let note = ""; // the host extracted from a pasted URL, when different
let lastID = ""; // the request ID shown, for its verify form

/** init wires the form. */
export function init(ctx) {
  go = ctx.go;
  $("explain-form").addEventListener("submit", onSubmit);
}

/** onSession forgets what the previous person looked up. */
export function onSession() {
  last = null;
  lastQuery = "";
  $("explain-result").replaceChildren();
  clearErrors($("explain-form"), $("explain-msg"));
}

/**
 * show runs the lookup named in the hash: #explain?host=...,
 * #explain?filing_number=..., #explain?subject=... or
 * #explain?request_id=...[&id_host=...].
 */
export function show(params, first) {
  for (const kind of KINDS) {
    const v = params.get(kind);
    const idHost = kind === "request_id" ? params.get("id_host") || "" : "";
    if (v && kind + ":" + v + "|" + idHost !== lastQuery) {
      if (kind !== "host" || note !== v) {
        // Not the host just taken out of a pasted URL: a link or the hash.
        note = "";
        $("explain-host").value = v;
      }
      lookup(kind, v, idHost);
      return;
    }
  }
  if (first) $("explain-host").focus();
}

/** rerender draws the last result again (after a language switch). */
export function rerender() {
  if (!last) return;
  if (lastKind === "host") render(last);
  else if (lastKind === "request_id") renderRequest(last);
  else renderSearch(lastKind, last);
}

const KINDS = ["host", "filing_number", "subject", "request_id"];

/** halfWidth folds full-width letters, digits and punctuation to ASCII. */
function halfWidth(s) {
  return s.replace(/[\uff01-\uff5e]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 0xfee0)).replace(/\u3000/g, " ");
}

/**
 * classify says what support staff typed: a filing or licence number
 * ("京ICP备10206937号-1", "浙B2-20040180", with a 备案号 label or in
 * full-width), a URL or domain (no spaces and a dot, or a scheme), or
 * else a subject name. The server normalises and validates.
 */
export function classify(raw) {
  const s = halfWidth(raw.trim());
  if (isRequestID(s)) return "request_id";
  if (/ICP\s*[备證证]/i.test(s) || /^备案号/.test(s) || /^[\u4e00-\u9fff]\s*[AB][12](\.[AB][12])*\s*-\s*\d/i.test(s)) return "filing_number";
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s) || (!/\s/.test(s) && /[.。．｡:]/.test(s))) return "host";
  return "subject";
}

/**
 * isRequestID says whether s looks like a block page's request ID: 21
 * letters and digits (with any hyphens and spaces) mixing both, or an
 * old 16-hex one. The server checks the check character.
 */
export function isRequestID(s) {
  const c = s.replace(/[\s-]/g, "");
  return /^[0-9a-f]{16}$/i.test(c) || (/^[0-9a-z]{21}$/i.test(c) && /[0-9]/.test(c) && /[a-z]/i.test(c));
}

/**
 * hostFromInput takes what support staff paste (a URL, "host:port/path",
 * an e-mail address) and returns the host part; the server does the real
 * normalisation and validation.
 */
export function hostFromInput(s) {
  let h = s.trim();
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(h);
  if (scheme) h = h.slice(scheme[0].length);
  else if (h.startsWith("//")) h = h.slice(2);
  const end = h.search(/[/?#\\]/);
  if (end >= 0) h = h.slice(0, end);
  const at = h.lastIndexOf("@");
  if (at >= 0) h = h.slice(at + 1);
  return h;
}

function onSubmit(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  clearErrors(form, $("explain-msg"));
  clearMessages($("view-explain"));
  const raw = form.elements.host.value;
  if (raw.trim() === "") return void markField(form, "host", t("explain.host_required"));
  lastQuery = ""; // look up again even if it is the same
  const kind = classify(raw);
  if (kind !== "host") {
    note = "";
    return void go("explain", { [kind]: kind === "request_id" ? halfWidth(raw.trim()) : raw.trim() });
  }
  const host = hostFromInput(raw);
  if (host === "") return void markField(form, "host", t("explain.host_unparsable"));
  note = host !== raw.trim() ? host : "";
  go("explain", { host });
}

// seq numbers the lookups; only the latest one's answer is shown (the
// hash can change while one is in flight).
let seq = 0;

async function lookup(kind, value, idHost = "") {
  const my = ++seq;
  lastQuery = kind + ":" + value + "|" + idHost;
  const form = $("explain-form");
  clearErrors(form, $("explain-msg"));
  await busy(form, async () => {
    let data, err;
    try {
      let path = (kind === "host" ? "/v1/explain" : "/v1/records") + query({ [kind]: value });
      if (kind === "request_id") path = "/v1/requests/" + encodeURIComponent(value) + query({ host: idHost });
      ({ data } = await api("GET", path));
    } catch (e) {
      err = e;
    }
    if (my !== seq) return; // superseded
    if (err) {
      last = null;
      $("explain-result").replaceChildren();
      if (err.field === "filing_number" || err.field === "subject" || err.field === "id") err.field = "host"; // the one box
      showError($("explain-msg"), err, form);
      return;
    }
    last = data;
    lastKind = kind;
    if (kind === "host") render(data);
    else if (kind === "request_id") {
      lastID = value;
      renderRequest(data);
    } else renderSearch(kind, data);
  });
}

// renderSearch shows the records found for a filing number or subject:
// a table of domains with their filing, state and the gateway's verdict,
// each a link to its explanation.
function renderSearch(kind, d) {
  const out = $("explain-result");
  out.replaceChildren();
  const records = d.records || [];
  const asked = kind === "filing_number" ? d.filing_number : d.subject;
  const card = el("section", { class: "card", id: "search-result", dataset: { kind, count: String(records.length) } });
  append(card, el("h2", { text: t(kind === "filing_number" ? "search.heading_number" : "search.heading_subject", { q: asked, n: records.length }) }));
  if (records.length === 0) {
    append(card, el("p", { class: "muted", id: "search-empty", text: t(kind === "filing_number" ? "search.none_number" : "search.none_subject") }));
  } else {
    const tbody = el("tbody");
    for (const r of records) {
      const pass = r.verdict === "pass";
      const state = has("state." + r.state) ? t("state." + r.state) : r.state;
      append(
        tbody,
        el(
          "tr",
          { dataset: { domain: r.domain, verdict: r.verdict, reason: r.reason } },
          el("td", {}, el("a", { href: "#explain?" + new URLSearchParams({ host: r.domain }), class: "host" }, el("code", { text: r.domain }))),
          el("td", { text: r.filing_number || "—" }),
          el("td", { text: r.subject || "—" }),
          el("td", {}, el("span", { class: "state state-" + r.state, text: state })),
          el("td", {}, el("span", { class: "badge " + (pass ? "badge-allow" : "badge-deny"), text: t(pass ? "verdict.pass" : "verdict.block") }), el("div", { class: "sub", text: reasonTitle(r.reason) })),
        ),
      );
    }
    const head = el(
      "tr",
      {},
      ["search.col_domain", "record.filing_number", "record.subject", "record.state", "search.col_verdict"].map((k) => el("th", { scope: "col", text: t(k) })),
    );
    append(card, el("div", { class: "table-wrap", role: "region", tabindex: "0", "aria-label": t("search.table_label") }, el("table", { class: "data", id: "search-table" }, el("thead", {}, head), tbody)));
  }
  if (d.more) append(card, el("p", { class: "note", id: "search-more", text: t("search.more", { n: records.length }) }));
  if (d.incomplete) append(card, el("p", { class: "note", id: "search-incomplete", text: t("search.incomplete", { n: fmtNumber(d.scanned || 0) }) }));
  const site = kind === "filing_number" ? /^(.*号)-\d+$/.exec(d.filing_number || "") : null;
  if (site) {
    append(
      card,
      el("p", {}, el("button", { type: "button", class: "secondary", id: "search-subject-number", text: t("search.all_sites", { q: site[1] }), onclick: () => go("explain", { filing_number: site[1] }) })),
    );
  }
  append(out, card);
}

// renderRequest shows what a request ID says: when, which gateway, why
// (with what to tell the visitor) and which address, with a form to
// verify the address the visitor names.
function renderRequest(d) {
  const out = $("explain-result");
  out.replaceChildren();
  const h = d.host || {};
  const card = el("section", { class: "card", id: "rid-result", dataset: { legacy: String(!!d.legacy), host: h.status || "" } });
  append(card, el("h2", { text: t("rid.heading", { id: d.id }) }));
  if (d.legacy) {
    append(card, el("p", { id: "rid-legacy", text: t("rid.legacy") }));
    append(out, card);
    return;
  }
  const dl = el("dl", { class: "facts" });
  append(dl, dlRow(t("rid.time"), el("span", { id: "rid-time" }, timeNode(d.time, { relative: true }))));
  append(dl, dlRow(t("rid.node"), el("span", { id: "rid-node", dataset: { thisNode: String(d.node.this_node) }, text: d.node.this_node ? t("rid.this_node", { name: d.node.name }) : t("rid.other_node", { tag: d.node.tag }) })));
  const rc = d.reason.code;
  append(dl, dlRow(t("rid.reason"), rc ? el("span", { id: "rid-reason", dataset: { reason: rc } }, reasonTitle(rc), " ", code(rc)) : el("span", { id: "rid-reason", text: t("rid.reason_unknown", { tag: d.reason.tag }) })));
  append(dl, dlRow(t("rid.host"), hostNode(h)));
  append(card, dl);

  const input = el("input", { id: "rid-host", name: "id_host", type: "text", autocomplete: "off", spellcheck: "false", maxlength: "2048", placeholder: "www.example.cn", value: h.given || "" });
  const verify = el(
    "form",
    {
      id: "rid-verify",
      class: "searchbar",
      novalidate: true,
      onsubmit: (ev) => {
        ev.preventDefault();
        const host = hostFromInput(input.value);
        if (host) go("explain", { request_id: lastID, id_host: host });
      },
    },
    el("label", { for: "rid-host", text: t("rid.verify_label") }),
    input,
    el("button", { type: "submit", id: "rid-verify-submit", text: t("rid.verify") }),
  );
  append(card, verify);
  append(out, card);
  if (rc) {
    append(
      out,
      el(
        "div",
        { class: "guidance" },
        el("section", {}, el("h2", { text: t("explain.meaning") }), el("p", { text: t(reasonKey(rc, "meaning")) })),
        el("section", {}, el("h2", { text: t("explain.tell") }), el("blockquote", { class: "tell", id: "rid-tell", text: t(reasonKey(rc, "tell")) })),
      ),
    );
  }
}

// hostNode says what is known of a request ID's address.
function hostNode(h) {
  const explainLink = (host) => el("a", { href: "#explain?" + new URLSearchParams({ host }), class: "host" }, code(host));
  const box = el("div", { id: "rid-host-answer", dataset: { status: h.status || "" } });
  switch (h.status) {
    case "verified":
      append(box, el("p", {}, explainLink(h.host), " ", el("span", { class: "badge badge-allow", text: t("rid.verified") })));
      break;
    case "same_domain":
      append(box, el("p", { text: t("rid.host_same_domain", { domain: h.domain, given: h.given }) }));
      break;
    case "mismatch":
      append(box, el("p", { text: t("rid.host_mismatch", { given: h.given }) }));
      break;
    case "candidates": {
      append(box, el("p", { text: t("rid.host_candidates") }));
      const ul = el("ul", { id: "rid-candidates" });
      for (const c of h.candidates || []) {
        append(
          ul,
          el(
            "li",
            { dataset: { domain: c.domain } },
            c.host ? explainLink(c.host) : el("span", { text: t("rid.under", { domain: c.domain }) }),
            " · ",
            reasonTitle(c.reason),
            " · ",
            t("rid.seen", { n: fmtNumber(c.hits) }),
            " ",
            timeNode(c.first_seen),
            " – ",
            timeNode(c.last_seen),
          ),
        );
      }
      append(box, ul);
      break;
    }
    default:
      append(box, el("p", { text: t("rid.host_unknown") }));
  }
  return box;
}

function reasonKey(code, part) {
  return has(`reason.${code}.${part}`) ? `reason.${code}.${part}` : `reason.unknown.${part}`;
}

/** reasonTitle is the plain-language name of a reason code. */
export function reasonTitle(code) {
  return has(`reason.${code}.title`) ? t(`reason.${code}.title`) : code;
}

function dlRow(label, value) {
  return [el("dt", { text: label }), el("dd", {}, value === "" || value == null ? el("span", { class: "muted", text: "—" }) : value)];
}

function code(s) {
  return el("code", { text: s });
}

function render(d) {
  const out = $("explain-result");
  out.replaceChildren();
  const pass = d.verdict === "pass";
  const shownHost = d.normalized || d.host;

  if (note && note === d.host) append(out, el("p", { class: "note", text: t("explain.extracted", { host: note }) }));

  append(
    out,
    el(
      "div",
      { class: "verdict " + (pass ? "verdict-pass" : "verdict-block"), id: "explain-verdict", dataset: { verdict: d.verdict, reason: d.reason } },
      el("p", { class: "verdict-word", text: t(pass ? "verdict.pass" : "verdict.block") }),
      el("p", { class: "verdict-reason" }, reasonTitle(d.reason), " ", el("code", { class: "reason-code", text: d.reason })),
      el("p", { class: "verdict-host", text: shownHost }),
    ),
  );

  // What it means, what to say, what to do.
  const tell = t(reasonKey(d.reason, "tell"));
  const copy = navigator.clipboard
    ? el("button", {
        type: "button",
        class: "link-button",
        text: t("explain.copy"),
        onclick: async () => {
          try {
            await navigator.clipboard.writeText(tell);
            status(t("explain.copied"));
          } catch {
            status(t("explain.copy_failed"));
          }
        },
      })
    : null;
  append(
    out,
    el(
      "div",
      { class: "guidance" },
      el("section", {}, el("h2", { text: t("explain.meaning") }), el("p", { text: t(reasonKey(d.reason, "meaning")) })),
      el("section", {}, el("h2", { text: t("explain.tell") }), el("blockquote", { class: "tell", id: "explain-tell", text: tell }), copy),
      el("section", {}, el("h2", { text: t("explain.whitelist") }), el("p", { text: t(reasonKey(d.reason, "whitelist")) })),
    ),
  );

  // Next steps.
  const actions = el("div", { class: "actions" });
  const target = d.domain || d.normalized;
  if (!pass && WHITELISTABLE.has(d.reason) && target) {
    if (can("support")) {
      append(
        actions,
        el("button", {
          type: "button",
          id: "explain-allow",
          text: t("explain.allow", { host: target }),
          onclick: () => {
            overrides.prefill({ host: target, scope: d.domain ? "domain" : "exact" });
            go("overrides");
          },
        }),
      );
    } else append(actions, el("p", { class: "note", text: t("explain.need_support") }));
  }
  if (d.override) {
    append(
      actions,
      el("button", {
        type: "button",
        class: "secondary",
        text: t("explain.see_override"),
        onclick: () => go("overrides", { q: d.override.host, action: d.override.action }),
      }),
    );
  }
  if (actions.childNodes.length) append(out, actions);

  // The decision step by step.
  const dl = el("dl", { class: "facts" });
  append(dl, dlRow(t("explain.f_input"), code(d.host)));
  if (d.error) append(dl, dlRow(t("explain.f_error"), el("span", { class: "verbatim", text: d.error })));
  append(dl, dlRow(t("explain.f_normalized"), d.normalized ? code(d.normalized) : ""));
  if (d.kind === "ip" || d.kind === "empty") append(dl, dlRow(t("explain.f_kind"), t("explain.kind_" + d.kind)));
  append(dl, dlRow(t("explain.f_domain"), d.domain ? code(d.domain) : ""));
  append(dl, dlRow(t("explain.f_record"), d.record ? recordNode(d.record) : el("span", { class: "muted", text: t(d.domain ? "explain.no_record" : "explain.no_domain") })));
  append(dl, dlRow(t("explain.f_override"), d.override ? overrideNode(d.override) : el("span", { class: "muted", text: t("explain.no_override") })));
  if (d.ignored_override) {
    append(dl, dlRow(t("explain.f_ignored"), el("div", {}, el("p", { text: t("explain.ignored_note") }), overrideNode(d.ignored_override))));
  }
  append(dl, dlRow(t("explain.f_verdict"), el("span", {}, t(pass ? "verdict.pass" : "verdict.block"), " · ", reasonTitle(d.reason), " ", code(d.reason))));
  if (d.valid_until) append(dl, dlRow(t("explain.f_valid_until"), el("span", {}, timeNode(d.valid_until, { relative: true }), " ", t("explain.valid_until_note"))));
  append(out, el("section", { class: "card" }, el("h2", { text: t("explain.details") }), dl));

  if (Array.isArray(d.trace) && d.trace.length) {
    append(out, el("details", { class: "trace" }, el("summary", { text: t("explain.trace") }), el("ol", {}, d.trace.map((line) => el("li", { class: "verbatim", text: line })))));
  }
}

function recordNode(r) {
  const dl = el("dl", { class: "facts inner" });
  const state = has("state." + r.state) ? t("state." + r.state) : r.state;
  append(dl, dlRow(t("record.state"), el("span", {}, el("span", { class: "state state-" + r.state, text: state }), " ", code(r.state))));
  append(dl, dlRow(t("record.filing_number"), r.filing_number || ""));
  append(dl, dlRow(t("record.subject"), r.subject || ""));
  if (r.subject_type) append(dl, dlRow(t("record.subject_type"), has("subject_type." + r.subject_type) ? t("subject_type." + r.subject_type) : r.subject_type));
  if (r.province) append(dl, dlRow(t("record.province"), r.province));
  if (r.rectify_deadline) append(dl, dlRow(t("record.rectify_deadline"), timeNode(r.rectify_deadline, { relative: true })));
  if (r.updated_at) append(dl, dlRow(t("record.updated_at"), timeNode(r.updated_at)));
  return dl;
}

function overrideNode(o) {
  const dl = el("dl", { class: "facts inner" });
  append(dl, dlRow(t("ov.col_action"), t("ov.action_" + o.action)));
  append(dl, dlRow(t("ov.col_host"), el("span", {}, code(o.host), " ", t("ov.scope_short_" + o.scope))));
  append(dl, dlRow(t("ov.col_expires"), timeNode(o.expires, { relative: true })));
  if (o.ticket) append(dl, dlRow(t("ov.ticket"), o.ticket));
  if (o.reason) append(dl, dlRow(t("ov.reason"), o.reason));
  if (o.who) append(dl, dlRow(t("ov.col_created"), o.created ? el("span", {}, o.who, " · ", timeNode(o.created)) : o.who));
  return dl;
}
