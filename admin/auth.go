package admin

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// checkHost is the DNS-rebinding guard of /v1/ and the console: a page on
// an attacker's name that resolves to this listener must not be able to
// talk to it with the victim's browser. A Host that is a DNS name must be
// localhost or one of Config.Hosts; IP literals, and requests without a
// Host (HTTP/1.0, which no browser sends), are accepted. Else 421. (API
// endpoints check it in dispatch, so a refused mutation is audited.)
func (s *Server) checkHost(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e := s.hostError(r); e != nil {
			if wantsHTML(r) {
				writeHostPage(w, r) // a person at a browser (hostpage.go)
				return
			}
			writeError(w, e)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// hostError is the 421 of a request whose Host is not accepted, or nil.
func (s *Server) hostError(r *http.Request) *apiError {
	if s.hostAccepted(r.Host) {
		return nil
	}
	return &apiError{Status: http.StatusMisdirectedRequest, Code: "misdirected",
		Message: "Host " + quoteHost(r.Host) + " is not a name of this admin listener (admin.hosts)"}
}

// quoteHost quotes a Host for a message, cut to a sane length.
func quoteHost(h string) string {
	if len(h) > 100 {
		h = h[:100] + "..."
	}
	b, _ := json.Marshal(h)
	return string(b)
}

// hostAccepted reports whether a Host header value passes checkHost.
func (s *Server) hostAccepted(host string) bool {
	if host == "" {
		return true
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	name = strings.TrimPrefix(strings.TrimSuffix(name, "]"), "[")
	if _, err := netip.ParseAddr(name); err == nil {
		return true
	}
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	return name == "localhost" || s.hosts[name]
}

// authenticate finds the caller's token: a Bearer token in Authorization,
// else the console session in the cookie. A client that has run out of
// failed attempts gets 429 whatever it sends, until its bucket refills;
// a valid session is not an attempt, so it keeps working.
func (s *Server) authenticate(c *call) *apiError {
	if s.cfg.Tokens == nil {
		return unauthenticated("no token store is configured on this gateway: no one can sign in")
	}
	r := c.r
	if auth := r.Header.Get("Authorization"); auth != "" {
		key := clientKey(r.RemoteAddr)
		if wait := s.failures.empty(key, c.now); wait > 0 {
			return rateLimited("failed sign-ins from this address", wait)
		}
		scheme, secret, _ := strings.Cut(auth, " ")
		secret = strings.TrimSpace(secret)
		if !strings.EqualFold(scheme, "Bearer") || secret == "" {
			s.failed(key, c.now)
			return unauthenticated(`Authorization must be "Bearer <token>"`)
		}
		return s.lookupToken(c, HashToken(secret), key)
	}
	if ck, err := r.Cookie(sessionCookie); err == nil {
		sess, ok := s.sessions.get(ck.Value, c.now)
		if !ok {
			// Session IDs carry 256 random bits: a stale cookie after a
			// restart or sign-out is not a guess, so it is not counted.
			http.SetCookie(c.w, sessionCookieFor(r, "", -1))
			return unauthenticated("session expired or signed out; sign in again")
		}
		c.sess = &sess
		if e := s.lookupToken(c, sess.tokenHash, ""); e != nil {
			if e.Status == http.StatusUnauthorized {
				s.sessions.removeToken(sess.tokenHash)
				http.SetCookie(c.w, sessionCookieFor(r, "", -1))
			}
			c.sess = nil
			return e
		}
		return nil
	}
	return unauthenticated("no token: send Authorization: Bearer <token>, or sign in")
}

// lookupToken authenticates the token with this hash; a miss counts
// against the client's failed-authentication budget (key; "" counts
// nothing).
func (s *Server) lookupToken(c *call, hash [32]byte, key string) *apiError {
	tok, err := s.cfg.Tokens.Lookup(c.r.Context(), hash)
	if err == nil && tok.Revoked {
		err = ErrNotFound // a store must not return one; never trust it
	}
	if errors.Is(err, ErrNotFound) {
		if key != "" {
			s.failed(key, c.now)
		}
		return unauthenticated("unknown or revoked token")
	}
	if err != nil {
		s.log.Error("looking up a token", "error", err)
		return unavailable("the token store is unavailable")
	}
	c.tok, c.authed = tok, true
	return nil
}

// failed counts a failed authentication from a client.
func (s *Server) failed(key string, now time.Time) {
	if ok, _ := s.failures.take(key, now); !ok {
		s.log.Debug("client over its failed sign-in budget", "client", key)
	}
}

// checkCSRF guards a cookie-authenticated mutation: the browser sends the
// cookie on its own, so the request must also prove it came from the
// console (X-CSRF-Token, which only a page of this origin can read) and,
// when the browser says where it came from, that it is this origin.
func checkCSRF(r *http.Request, sess *session) *apiError {
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		return csrfError("missing X-CSRF-Token header (the csrf value from POST /v1/session)")
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(sess.csrf)) != 1 {
		return csrfError("X-CSRF-Token does not match this session")
	}
	return checkOrigin(r)
}

// checkOrigin refuses a request whose Origin (or Sec-Fetch-Site) says it
// was started by another site.
func checkOrigin(r *http.Request) *apiError {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return csrfError("request started by another site (Sec-Fetch-Site: cross-site)")
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	if own := ownOrigin(r); !strings.EqualFold(origin, own) {
		return csrfError("Origin " + quoteHost(origin) + " is not this listener's origin " + quoteHost(own))
	}
	return nil
}

// ownOrigin is the origin a browser sends for pages of this listener.
func ownOrigin(r *http.Request) string {
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// sessionBody is the answer of the session endpoints.
type sessionBody struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// CSRF is the value to send in X-CSRF-Token; "" with a Bearer token.
	CSRF string `json:"csrf"`
	// TimeZone is the IANA zone to show times in (Config.TimeZone).
	TimeZone string `json:"time_zone"`
}

// login answers POST /v1/session {"token": "..."}: it sets the session
// cookie. Failed attempts count against the client's budget; every
// attempt is audited, without the token.
func (s *Server) login(c *call) {
	r := c.r
	if e := checkOrigin(r); e != nil {
		c.deny(e)
		return
	}
	key := clientKey(r.RemoteAddr)
	if wait := s.failures.empty(key, c.now); wait > 0 {
		c.deny(rateLimited("failed sign-ins from this address", wait))
		return
	}
	m, e := decodeObject(c.body, func(k string) *apiError {
		if k != "token" {
			return invalid(k, "unknown field %q (the body is {\"token\": \"...\"})", k)
		}
		return nil
	})
	if e != nil {
		c.reject(e)
		return
	}
	secret, _, e := stringField(m, "token")
	if e != nil {
		c.reject(e)
		return
	}
	if secret == "" {
		c.reject(invalid("token", "token is required"))
		return
	}
	if s.cfg.Tokens == nil {
		c.deny(unauthenticated("no token store is configured on this gateway: no one can sign in"))
		return
	}
	if e := s.lookupToken(c, HashToken(secret), key); e != nil {
		c.deny(e)
		return
	}
	id, sess, err := s.sessions.create(c.tok.Hash, c.now)
	if err != nil {
		s.log.Error("creating a session", "error", err)
		writeError(c.w, unavailable("cannot create a session"))
		return
	}
	http.SetCookie(c.w, sessionCookieFor(r, id, int(sessionTTL.Seconds())))
	c.audit("ok", "signed in to the console")
	writeJSON(c.w, http.StatusOK, sessionBody{Name: c.tok.Name, Role: c.tok.Role.String(), CSRF: sess.csrf, TimeZone: s.cfg.TimeZone})
}

// whoami answers GET /v1/session.
func (s *Server) whoami(c *call) {
	b := sessionBody{Name: c.tok.Name, Role: c.tok.Role.String(), TimeZone: s.cfg.TimeZone}
	if c.sess != nil {
		b.CSRF = c.sess.csrf
	}
	writeJSON(c.w, http.StatusOK, b)
}

// logout answers DELETE /v1/session: the session ends and the cookie is
// cleared. With a Bearer token there is no session; it answers the same.
func (s *Server) logout(c *call) {
	if ck, err := c.r.Cookie(sessionCookie); err == nil && c.sess != nil {
		s.sessions.remove(ck.Value)
	}
	http.SetCookie(c.w, sessionCookieFor(c.r, "", -1))
	c.audit("ok", "signed out")
	c.w.Header().Set("Cache-Control", "no-store")
	c.w.WriteHeader(http.StatusNoContent)
}
