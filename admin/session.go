package admin

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

// Console sessions: POST /v1/session exchanges a token for a random
// session cookie, so the console never keeps the secret in the browser.
// Sessions live in memory only: a restart signs everyone out, which is
// cheap (sign in again) and keeps no secret on disk.
const (
	sessionCookie = "icpgate_session"
	sessionTTL    = 12 * time.Hour
	// maxSessions bounds the store; past it the session closest to
	// expiry is dropped. Sessions come only from successful sign-ins.
	maxSessions = 10000
)

// session is one signed-in console. It holds the token's hash, not the
// token: each request looks the token up again, so a revoked token or a
// changed role takes effect at once.
type session struct {
	tokenHash [32]byte
	csrf      string // sent back in X-CSRF-Token on every mutation
	expires   time.Time
}

// sessionStore keeps sessions by the SHA-256 of their ID, so the map is
// never probed with the secret itself.
type sessionStore struct {
	mu sync.Mutex // guards m
	m  map[[32]byte]session
}

func newSessionStore() *sessionStore { return &sessionStore{m: make(map[[32]byte]session)} }

// randomID returns 32 random bytes, base64url.
func randomID() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// create starts a session for the token with this hash and returns its ID.
func (st *sessionStore) create(tokenHash [32]byte, now time.Time) (id string, s session, err error) {
	if id, err = randomID(); err != nil {
		return "", session{}, err
	}
	csrf, err := randomID()
	if err != nil {
		return "", session{}, err
	}
	s = session{tokenHash: tokenHash, csrf: csrf, expires: now.Add(sessionTTL)}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.m) >= maxSessions {
		st.sweepLocked(now)
	}
	if len(st.m) >= maxSessions {
		var oldest [32]byte
		var first time.Time
		for k, v := range st.m {
			if first.IsZero() || v.expires.Before(first) {
				oldest, first = k, v.expires
			}
		}
		delete(st.m, oldest)
	}
	st.m[sha256.Sum256([]byte(id))] = s
	return id, s, nil
}

// get returns the live session with this ID.
func (st *sessionStore) get(id string, now time.Time) (session, bool) {
	k := sha256.Sum256([]byte(id))
	st.mu.Lock()
	defer st.mu.Unlock()
	s, ok := st.m[k]
	if !ok {
		return session{}, false
	}
	if !now.Before(s.expires) {
		delete(st.m, k)
		return session{}, false
	}
	return s, true
}

// remove ends the session with this ID.
func (st *sessionStore) remove(id string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.m, sha256.Sum256([]byte(id)))
}

// removeToken ends every session of a token (it was revoked).
func (st *sessionStore) removeToken(tokenHash [32]byte) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for k, v := range st.m {
		if v.tokenHash == tokenHash {
			delete(st.m, k)
		}
	}
}

// sweepLocked drops expired sessions.
func (st *sessionStore) sweepLocked(now time.Time) {
	for k, v := range st.m {
		if !now.Before(v.expires) {
			delete(st.m, k)
		}
	}
}

// sessionCookieFor returns the cookie carrying id (empty id and maxAge < 0
// clear it). Secure over HTTPS; never readable by scripts; never sent on a
// request another site starts.
func sessionCookieFor(r *http.Request, id string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     sessionCookie,
		Value:    id,
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	}
}
