// The admin API client (docs/admin-api.md). The console signs in with
// POST /v1/session, which sets an HttpOnly cookie and returns a CSRF
// token; every mutation sends it in X-CSRF-Token.

/** session is the signed-in person: {name, role, csrf}, or empty. */
export const session = { name: "", role: "", csrf: "" };

const ROLE_RANK = { viewer: 1, support: 2, admin: 3 };

/** can reports whether the signed-in role includes role. */
export function can(role) {
  return (ROLE_RANK[session.role] || 0) >= (ROLE_RANK[role] || 99);
}

/** ApiError is a non-2xx answer, with the API's error body fields. */
export class ApiError extends Error {
  constructor(status, body, headers) {
    super(body.message || body.error || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status; // 0: the request did not reach the server
    this.code = body.error || ""; // "invalid", "forbidden", "conflict", ...
    this.serverMessage = body.message || ""; // shown verbatim
    this.field = body.field || ""; // the field a 400 is about
    this.needRole = body.need_role || ""; // the role a 403 asks for
    this.state = body.state || ""; // the record state a 409 is about
    this.problem = body.problem || ""; // a 400's finer code ("unsafe_char", "too_long", ...)
    this.args = body.args && typeof body.args === "object" ? body.args : {}; // its values
    const ra = headers ? parseInt(headers.get("Retry-After") || "", 10) : NaN;
    this.retryAfter = Number.isFinite(ra) ? ra : 0;
  }
}

let onUnauthenticated = () => {};

/**
 * setUnauthenticatedHandler sets what happens when a request that needs
 * the session answers 401 (the session expired or the token was revoked).
 */
export function setUnauthenticatedHandler(f) {
  onUnauthenticated = f;
}

/**
 * api sends one request and returns {status, data, etag, location}, or
 * throws ApiError. opts: body (sent as JSON), ifMatch (an override
 * version), quiet401 (do not call the unauthenticated handler).
 */
export async function api(method, path, opts = {}) {
  const headers = { Accept: "application/json" };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD" && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  if (opts.ifMatch !== undefined) headers["If-Match"] = `"${opts.ifMatch}"`;
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      credentials: "same-origin",
      cache: "no-store",
      redirect: "error",
    });
  } catch (e) {
    throw new ApiError(0, { error: "network", message: String(e && e.message ? e.message : e) }, null);
  }
  let data = null;
  const text = await resp.text();
  if (text !== "") {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!resp.ok) {
    const body = data && typeof data === "object" ? data : { error: "http", message: text.trim().slice(0, 300) };
    const err = new ApiError(resp.status, body, resp.headers);
    if (resp.status === 401 && !opts.quiet401) onUnauthenticated(err);
    throw err;
  }
  return { status: resp.status, data, etag: resp.headers.get("ETag"), location: resp.headers.get("Location") };
}

/** query builds "?a=b&c=d" from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? "?" + s : "";
}
