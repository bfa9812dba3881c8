// Translations: i18n/zh-CN.json (the default) and i18n/en.json, flat maps
// from key to text with {name} placeholders. Static text in index.html
// names its key in data-i18n (textContent) or data-i18n-placeholder,
// data-i18n-aria-label, data-i18n-title (attributes). The choice is
// remembered in localStorage.

const LANGS = ["zh-CN", "en"];
const STORAGE_KEY = "icpgate.console.lang";
const dicts = {};
let lang = "zh-CN";
const listeners = [];

/** initI18n loads both dictionaries and picks the remembered language. */
export async function initI18n() {
  let saved = null;
  try {
    saved = localStorage.getItem(STORAGE_KEY);
  } catch {
    // Storage can be disabled; the default language is fine then.
  }
  if (LANGS.includes(saved)) lang = saved;
  await Promise.all(LANGS.map(load));
}

async function load(l) {
  const resp = await fetch(`i18n/${l}.json`, { cache: "no-cache", credentials: "same-origin" });
  if (!resp.ok) throw new Error(`loading i18n/${l}.json: HTTP ${resp.status}`);
  dicts[l] = await resp.json();
}

/** lang returns the current language tag ("zh-CN" or "en"). */
export function currentLang() {
  return lang;
}

/** otherLang returns the language the switch button goes to. */
export function otherLang() {
  return lang === "en" ? "zh-CN" : "en";
}

/**
 * t returns the text for key in the current language with {name}
 * placeholders filled from vars. A missing key falls back to Chinese, then
 * to the key itself (a test keeps the tables complete).
 */
export function t(key, vars) {
  let s = dicts[lang]?.[key] ?? dicts["zh-CN"]?.[key] ?? key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
  return s;
}

/** has reports whether key has a text (for codes the server may add). */
export function has(key) {
  return key in (dicts[lang] || {});
}

/** applyI18n sets every data-i18n* text under root. */
export function applyI18n(root = document) {
  for (const e of root.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
  for (const attr of ["placeholder", "aria-label", "title"]) {
    const data = "data-i18n-" + attr;
    for (const e of root.querySelectorAll(`[${data}]`)) e.setAttribute(attr, t(e.getAttribute(data)));
  }
  document.documentElement.lang = lang;
  document.title = t("app.title");
}

/** setLang switches language, remembers it and re-renders. */
export function setLang(l) {
  if (!LANGS.includes(l)) return;
  lang = l;
  try {
    localStorage.setItem(STORAGE_KEY, l);
  } catch {
    // Not remembered; still switched for this page.
  }
  applyI18n();
  for (const f of listeners) f();
}

/** onLangChange registers f to run after every language switch. */
export function onLangChange(f) {
  listeners.push(f);
}

// zone is the gateway's display zone (the session's time_zone, set from
// policy.time_zone): every person sees the same clock, whatever zone their
// browser is in, and the offset says which clock it is.
let zone = "Asia/Shanghai";

/** setTimeZone sets the IANA zone times are shown in; an unknown name is ignored. */
export function setTimeZone(z) {
  try {
    new Intl.DateTimeFormat("en", { timeZone: z });
    zone = z;
  } catch {
    // Keep the default: a wrong zone must not hide every time.
  }
}

/** fmtTime formats an RFC 3339 time as "2026-12-08 12:30 +08:00" in the display zone. */
export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const parts = {};
  for (const p of new Intl.DateTimeFormat("en-US", {
    timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", timeZoneName: "longOffset",
  }).formatToParts(d)) parts[p.type] = p.value;
  // longOffset reads "GMT+08:00", or "GMT" for UTC itself.
  const off = parts.timeZoneName === "GMT" ? "+00:00" : parts.timeZoneName.replace("GMT", "");
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute} ${off}`;
}

/** fmtRelative says how far iso is from now ("in 45 days", "2 hours ago"). */
export function fmtRelative(iso, now = Date.now()) {
  const d = new Date(iso).getTime();
  if (Number.isNaN(d)) return "";
  const secs = Math.round((d - now) / 1000);
  const units = [
    ["day", 86400],
    ["hour", 3600],
    ["minute", 60],
  ];
  const rtf = new Intl.RelativeTimeFormat(lang, { numeric: "auto" });
  for (const [unit, size] of units) {
    if (Math.abs(secs) >= size) return rtf.format(Math.trunc(secs / size), unit);
  }
  return rtf.format(secs, "second");
}

/** fmtNumber formats an integer with the language's grouping. */
export function fmtNumber(n) {
  return new Intl.NumberFormat(lang).format(n);
}
