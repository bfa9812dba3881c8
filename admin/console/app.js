// The support console: sign-in, a tab per task (explain a host, the
// whitelist, the audit log, top blocked domains) and the language switch.
// Plain ES modules, no framework, no build step; the admin listener serves
// these files as they are, under a CSP that forbids anything inline.

import { api, session, setUnauthenticatedHandler } from "./api.js";
import { $, show } from "./dom.js";
import { initI18n, applyI18n, t, setLang, otherLang, onLangChange, setTimeZone } from "./i18n.js";
import { clearErrors, showError, markField, busy, roleName, status } from "./ui.js";
import * as explain from "./explain.js";
import * as overrides from "./overrides.js";
import * as audit from "./audit.js";
import * as report from "./report.js";

const VIEWS = { explain, overrides, audit, report };
let current = ""; // the view shown, "" before sign-in
let returnTo = ""; // the hash to go back to after signing in again

async function boot() {
  try {
    await initI18n();
  } catch (e) {
    $("loading").textContent = "控制台加载失败 / The console failed to load: " + e.message;
    return;
  }
  applyI18n();
  $("lang-switch").addEventListener("click", () => setLang(otherLang()));
  onLangChange(() => {
    $("status").hidden = true; // it was said in the other language
    updateLangButton();
    updateWhoami();
    if (current) VIEWS[current].rerender();
  });
  updateLangButton();
  $("signin-form").addEventListener("submit", onSignIn);
  $("signout").addEventListener("click", onSignOut);
  setUnauthenticatedHandler(() => signedOut(t("signin.expired")));
  for (const v of Object.values(VIEWS)) v.init({ go });
  window.addEventListener("hashchange", route);

  try {
    const { data } = await api("GET", "/v1/session", { quiet401: true });
    signedIn(data);
  } catch (e) {
    signedOut(e.status === 401 ? "" : null, e);
  }
  $("loading").hidden = true;
}

function updateLangButton() {
  const b = $("lang-switch");
  b.setAttribute("lang", otherLang());
}

function updateWhoami() {
  if (!session.name) return;
  $("whoami").textContent = t("signin.whoami", { name: session.name, role: roleName(session.role) });
}

function signedIn(s) {
  session.name = s.name;
  session.role = s.role;
  session.csrf = s.csrf;
  if (s.time_zone) setTimeZone(s.time_zone);
  updateWhoami();
  show($("whoami"), true);
  show($("signout"), true);
  show($("tabs"), true);
  show($("view-signin"), false);
  for (const v of Object.values(VIEWS)) v.onSession();
  current = "";
  if (returnTo && returnTo !== location.hash) location.hash = returnTo;
  returnTo = "";
  route();
}

// signedOut shows the sign-in form; note is a message to show above it
// ("" none), err an error from checking the session.
function signedOut(note, err) {
  if (current) returnTo = location.hash;
  session.name = session.role = session.csrf = "";
  current = "";
  show($("whoami"), false);
  show($("signout"), false);
  show($("tabs"), false);
  for (const id of Object.keys(VIEWS)) show($("view-" + id), false);
  show($("view-signin"), true);
  const msg = $("signin-msg");
  clearErrors($("signin-form"), msg);
  if (err && err.status !== 401) showError(msg, err);
  else if (note) {
    msg.hidden = false;
    msg.className = "msg msg-info";
    msg.textContent = note;
  }
  $("signin-token").focus();
}

async function onSignIn(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const msg = $("signin-msg");
  clearErrors(form, msg);
  const token = form.elements.token.value.trim();
  if (token === "") return void markField(form, "token", t("signin.token_required"));
  if (!token.startsWith("icpg_")) return void markField(form, "token", t("signin.token_format"));
  await busy(form, async () => {
    try {
      const { data } = await api("POST", "/v1/session", { body: { token }, quiet401: true });
      form.reset();
      signedIn(data);
      status(t("signin.welcome", { name: data.name }));
    } catch (e) {
      if (e.status === 401) {
        showError(msg, e, form);
        markField(form, "token", t("signin.token_rejected"));
      } else showError(msg, e, form);
    }
  });
}

async function onSignOut() {
  try {
    await api("DELETE", "/v1/session", { quiet401: true });
  } catch {
    // Signed out locally either way; the cookie expires on its own.
  }
  returnTo = "";
  signedOut(t("signin.signed_out"));
}

// route shows the view named in the hash: #explain?host=example.cn.
function route() {
  if (!session.name) return;
  const h = location.hash.replace(/^#/, "");
  const i = h.indexOf("?");
  let name = i < 0 ? h : h.slice(0, i);
  const params = new URLSearchParams(i < 0 ? "" : h.slice(i + 1));
  if (!(name in VIEWS)) name = "explain";
  for (const id of Object.keys(VIEWS)) {
    show($("view-" + id), id === name);
    const tab = $("tab-" + id);
    if (id === name) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  const first = current !== name;
  current = name;
  VIEWS[name].show(params, first);
}

/** go switches to a view, with params in the hash. */
function go(name, params) {
  const q = params ? new URLSearchParams(params).toString() : "";
  const h = "#" + name + (q ? "?" + q : "");
  if (location.hash === h) route();
  else location.hash = h;
}

boot();
