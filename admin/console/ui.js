// Shared pieces of the interface: error messages (with the field the
// server named highlighted), the status line, the modal dialog and small
// formatting helpers.

import { ApiError } from "./api.js";
import { el, $, append } from "./dom.js";
import { t, has, fmtTime, fmtRelative, currentLang } from "./i18n.js";

/** roleName is the translated name of a role code. */
export function roleName(role) {
  return has("role." + role) ? t("role." + role) : role;
}

/** errorSummary explains an error in plain words (the server's own message is shown beside it). */
export function errorSummary(err) {
  if (!(err instanceof ApiError)) return t("err.unexpected");
  switch (err.status) {
    case 0:
      return t("err.network");
    case 400:
      return t("err.invalid");
    case 401:
      return t("err.unauthenticated");
    case 403:
      if (err.code === "csrf") return t("err.csrf");
      return err.needRole ? t("err.forbidden", { role: roleName(err.needRole) }) : t("err.forbidden_any");
    case 404:
      return t("err.not_found");
    case 409:
      return t("err.confirmation_required");
    case 412:
      return t("err.conflict");
    case 421:
      return t("err.misdirected");
    case 422:
      return t("err.not_allowed");
    case 428:
      return t("err.if_match_required");
    case 429:
      return err.retryAfter ? t("err.rate_limited", { seconds: err.retryAfter }) : t("err.rate_limited_now");
    case 503:
      return t("err.unavailable");
  }
  return t("err.http", { status: err.status });
}

/** clearErrors removes the message and every field highlight of a form. */
export function clearErrors(form, msg) {
  if (msg) {
    msg.replaceChildren();
    msg.hidden = true;
  }
  if (!form) return;
  for (const f of form.querySelectorAll(".field.invalid")) f.classList.remove("invalid");
  for (const e of form.querySelectorAll("[aria-invalid]")) e.removeAttribute("aria-invalid");
  for (const e of form.querySelectorAll(".field-err")) {
    e.textContent = "";
    e.hidden = true;
  }
}

/**
 * markField highlights the field named name in form (its wrapper carries
 * data-field=name), shows text under it and focuses it. It returns false
 * when the form has no such field.
 */
export function markField(form, name, text) {
  const wrap = form && name ? form.querySelector(`[data-field="${CSS.escape(name)}"]`) : null;
  if (!wrap) return false;
  wrap.classList.add("invalid");
  const inputs = wrap.querySelectorAll("input, select, textarea");
  for (const i of inputs) i.setAttribute("aria-invalid", "true");
  const slot = wrap.querySelector(".field-err");
  if (slot && text) {
    slot.textContent = text;
    slot.hidden = false;
  }
  const first = wrap.querySelector("input:checked, input, select, textarea");
  if (first) first.focus();
  return true;
}

// FIELD_NAMES are the fields the API names in a 400, as the forms label
// them; others are shown as sent.
const FIELD_NAMES = new Set(["host", "ticket", "reason", "ttl", "expires", "scope", "action", "token", "filing_number", "subject"]);

/** fieldName is the translated name of a field the server named. */
export function fieldName(f) {
  return FIELD_NAMES.has(f) ? t("field." + f) : f;
}

// PLAIN_CODES are error codes whose summary (errorSummary) says all there
// is: the server's English adds nothing a support engineer needs.
const PLAIN_CODES = new Set([
  "unauthenticated",
  "forbidden",
  "csrf",
  "not_found",
  "confirmation_required",
  "conflict",
  "too_large",
  "misdirected",
  "not_allowed",
  "if_match_required",
  "rate_limited",
  "unavailable",
  "network",
]);

/**
 * errorDetail says what the server found wrong in the user's language:
 * the text of its problem code (err.problem, with err.args), or "" when
 * the code's summary says it all. null means the console has no words
 * for it, and the server's own (English) message has to be shown.
 */
export function errorDetail(err) {
  if (!(err instanceof ApiError)) return null;
  if (err.problem && has("problem." + err.problem)) return t("problem." + err.problem, { ...err.args, field: fieldName(err.field) });
  if (!err.problem && PLAIN_CODES.has(err.code)) return "";
  return null;
}

/**
 * showError puts err into msg: a plain-language summary and what the
 * server found wrong, translated by its code; the server's own message
 * is shown verbatim only in English or for a code the console does not
 * know. A 400's field is highlighted in form. An error replaces whatever
 * msg said before (a success included).
 */
export function showError(msg, err, form) {
  msg.replaceChildren();
  msg.hidden = false;
  msg.className = "msg msg-error";
  const detail = errorDetail(err);
  if (err instanceof ApiError) msg.dataset.code = err.problem ? err.code + "/" + err.problem : err.code;
  append(msg, el("p", { class: "err-summary", text: errorSummary(err) }));
  if (detail) append(msg, el("p", { class: "err-detail", text: detail }));
  if (err instanceof ApiError && err.serverMessage && (detail === null || currentLang() === "en")) {
    append(
      msg,
      el("p", { class: "err-server" }, el("span", { class: "label", text: t("err.server_said") }), " ", el("q", { class: "verbatim", text: err.serverMessage })),
    );
  } else if (!(err instanceof ApiError)) {
    append(msg, el("p", { class: "err-server verbatim", text: String(err && err.message ? err.message : err) }));
  }
  if (err instanceof ApiError && err.field && form) markField(form, err.field, detail || err.serverMessage);
}

/**
 * clearMessages hides every message in a view (#view-NAME) and the status
 * line: a new action starts with nothing left over from the last one, so
 * an old success never stands above a new error.
 */
export function clearMessages(view) {
  for (const m of view.querySelectorAll(".msg")) {
    m.replaceChildren();
    m.hidden = true;
    delete m.dataset.code;
  }
  clearStatus();
}

/** showOK puts a success message (text and optional extra nodes) into msg. */
export function showOK(msg, text, ...extra) {
  msg.replaceChildren();
  msg.hidden = false;
  msg.className = "msg msg-ok";
  append(msg, el("p", { text }, ...extra));
}

let statusTimer = 0;

/** clearStatus hides the status line. */
export function clearStatus() {
  const s = $("status");
  clearTimeout(statusTimer);
  s.hidden = true;
  s.textContent = "";
}

/** status announces a short message in the status line (screen readers hear it). */
export function status(text) {
  const s = $("status");
  s.textContent = text;
  s.hidden = false;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => {
    s.hidden = true;
    s.textContent = "";
  }, 8000);
}

/**
 * dialog opens the modal dialog with a title, body nodes and two buttons,
 * and resolves to true when OK is pressed, false on Cancel or Esc. The
 * focus returns to where it was.
 */
export function dialog({ title, body, ok, danger = false }) {
  const d = $("dlg");
  const back = document.activeElement;
  $("dlg-title").textContent = title;
  const b = $("dlg-body");
  b.replaceChildren();
  append(b, body);
  const okBtn = $("dlg-ok");
  okBtn.textContent = ok || t("dlg.ok");
  okBtn.classList.toggle("danger", danger);
  return new Promise((resolve) => {
    const done = (v) => {
      okBtn.removeEventListener("click", onOK);
      $("dlg-cancel").removeEventListener("click", onCancel);
      d.removeEventListener("close", onClose);
      if (d.open) d.close();
      if (back && back.focus) back.focus();
      resolve(v);
    };
    const onOK = () => done(true);
    const onCancel = () => done(false);
    const onClose = () => done(false);
    okBtn.addEventListener("click", onOK);
    $("dlg-cancel").addEventListener("click", onCancel);
    d.addEventListener("close", onClose);
    d.showModal();
    const first = b.querySelector("input:checked, input, select, textarea");
    (first || $("dlg-cancel")).focus();
  });
}

/** timeNode is a <time> showing a time and, when relative, how far it is from now. */
export function timeNode(iso, { relative = false } = {}) {
  if (!iso) return el("span", { class: "muted", text: t("common.never") });
  return el("time", { datetime: iso }, fmtTime(iso), relative ? el("span", { class: "rel", text: ` (${fmtRelative(iso)})` }) : null);
}

/** busy disables a form's controls while a request runs. */
export async function busy(form, f) {
  const controls = [...form.querySelectorAll("button, input, select, textarea")].filter((c) => !c.disabled);
  for (const c of controls) c.disabled = true;
  form.setAttribute("aria-busy", "true");
  try {
    return await f();
  } finally {
    for (const c of controls) c.disabled = false;
    form.removeAttribute("aria-busy");
  }
}

/** TTL_PRESETS are the whitelist durations offered, in days; 45 is the server's default. */
export const TTL_PRESETS = [7, 30, 45, 90];

/** ttlRadios builds a radio group of TTL presets (name idPrefix + "-ttl", values like "1080h"). */
export function ttlRadios(idPrefix, checkedDays = 45) {
  return TTL_PRESETS.map((days) => {
    const id = `${idPrefix}-${days}`;
    return el(
      "label",
      { class: "preset", for: id },
      el("input", { type: "radio", name: idPrefix + "-ttl", id, value: `${days * 24}h`, checked: days === checkedDays }),
      " ",
      el("span", { text: t(`ttl.d${days}`) }),
    );
  });
}

/**
 * Pager keeps a cursor-paged list's position: the cursor of each page
 * seen (the API's "next" of the page before), and wires the
 * PREFIX-prev / PREFIX-next buttons to load.
 */
export class Pager {
  constructor(prefix, load) {
    this.prefix = prefix;
    this.reset();
    $(prefix + "-prev").addEventListener("click", () => {
      if (this.page > 0) {
        this.page--;
        load();
      }
    });
    $(prefix + "-next").addEventListener("click", () => {
      if (this.next) {
        this.cursors[this.page + 1] = this.next;
        this.page++;
        load();
      }
    });
  }

  /** reset goes back to the first page. */
  reset() {
    this.cursors = [""];
    this.page = 0;
    this.next = "";
  }

  /** cursor is the cursor of the page to load. */
  get cursor() {
    return this.cursors[this.page];
  }

  /** render updates the buttons and the page number. */
  render(loaded) {
    $(this.prefix + "-prev").disabled = this.page === 0;
    $(this.prefix + "-next").disabled = !this.next;
    $(this.prefix + "-page").textContent = loaded ? t("common.page", { n: this.page + 1 }) : "";
  }
}
