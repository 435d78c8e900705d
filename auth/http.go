package auth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"iotdash/devices"
	"iotdash/internal/limit"
)

// CookieName is the session cookie's name.
const CookieName = "iotdash_session"

// Metrics counts sign-ins and refusals.
type Metrics struct {
	signIns *prometheus.CounterVec
	refused *prometheus.CounterVec
}

// NewMetrics registers the sign-in metrics with reg (none if reg is nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		signIns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "iotdash_sign_ins_total",
			Help: "Sign-in attempts with a password (the form and HTTP Basic), by result: ok, wrong, limited."}, []string{"result"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "iotdash_requests_refused_total",
			Help: "Requests refused for want of sign-in (unauthenticated) or of a role (forbidden)."}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.signIns, m.refused)
	}
	return m
}

// authenticate returns who r comes from: a Bearer token, HTTP Basic, the
// trusted proxy's header or the session cookie, in that order; ok is false
// for anonymous requests. A wrong credential is errWrong, a store that
// cannot answer EUnavailable, too many wrong passwords errLimited.
func (s *Service) authenticate(r *http.Request) (p Principal, ok bool, err error) {
	ctx := r.Context()
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, value, _ := strings.Cut(h, " ")
		switch strings.ToLower(scheme) {
		case "bearer":
			p, err = s.bearer(ctx, strings.TrimSpace(value))
			return p, err == nil, err
		case "basic":
			name, password, ok := r.BasicAuth()
			if !ok {
				return Principal{}, false, errWrong
			}
			u, err := s.signIn(ctx, remoteIP(r), name, password)
			if err != nil {
				return Principal{}, false, err
			}
			return Principal{Name: u.Name, Role: u.Role, Via: "basic", Zone: u.Zone}, true, nil
		}
		return Principal{}, false, errWrong
	}
	if s.cfg.ProxyHeader != "" {
		if name := r.Header.Get(s.cfg.ProxyHeader); name != "" && s.fromProxy(r) {
			u, err := s.user(ctx, name)
			switch {
			case err == nil:
				return Principal{Name: u.Name, Role: u.Role, Via: "proxy", Zone: u.Zone}, true, nil
			case devices.ErrorKind(err) == devices.ENotFound && validUserName(name) == nil:
				return Principal{Name: name, Role: Viewer, Via: "proxy"}, true, nil
			case devices.ErrorKind(err) == devices.ENotFound:
				return Principal{}, false, errWrong
			}
			return Principal{}, false, err
		}
	}
	if c, err := r.Cookie(CookieName); err == nil && c.Value != "" {
		p, err := s.session(ctx, c.Value)
		if err == errWrong {
			return Principal{}, false, nil // an old cookie: anonymous, sent to sign in
		}
		return p, err == nil, err
	}
	return Principal{}, false, nil
}

func (s *Service) fromProxy(r *http.Request) bool {
	ip, err := netip.ParseAddr(remoteIP(r))
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range s.cfg.ProxyFrom {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// remoteIP is the address r comes from, as every limit counts it.
func remoteIP(r *http.Request) string { return limit.Addr(r) }

var errLimited = devices.Errorf(devices.EInvalid, "too many wrong passwords; wait a minute and try again")

// signIn checks a password, within the limits on wrong ones per address
// and per user.
func (s *Service) signIn(ctx context.Context, ip, name, password string) (User, error) {
	if !s.limits.ok(ip, name) {
		s.cfg.Metrics.signIns.WithLabelValues("limited").Inc()
		return User{}, errLimited
	}
	u, known, err := s.checkPassword(ctx, name, password)
	switch {
	case err == errWrong:
		s.limits.failed(ip, name, known)
		s.cfg.Metrics.signIns.WithLabelValues("wrong").Inc()
		s.log.Info("wrong password", "user", truncate(name, 64), "remote", ip)
	case err == nil:
		s.cfg.Metrics.signIns.WithLabelValues("ok").Inc()
	}
	return u, err
}

// Require serves h to requests from a principal with at least role, with
// the principal in the request's context; for Anyone, to every request as
// it is, without reading who it comes from. A page request from no one is
// sent to sign in; any other gets 401 (with a Basic challenge), and a
// principal without the role 403.
func (s *Service) Require(role Role, h http.Handler) http.Handler {
	if role == Anyone {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok, err := s.authenticate(r)
		switch {
		case err == errLimited:
			w.Header().Set("Retry-After", "60")
			refuse(w, r, http.StatusTooManyRequests, devices.ErrorMessage(errLimited))
			return
		case err == errWrong:
			s.cfg.Metrics.refused.WithLabelValues("unauthenticated").Inc()
			w.Header().Set("WWW-Authenticate", `Basic realm="iotdash", charset="UTF-8"`)
			refuse(w, r, http.StatusUnauthorized, "wrong user name, password or token")
			return
		case err != nil:
			s.log.Error("checking who a request comes from", "path", r.URL.Path, "error", err)
			refuse(w, r, http.StatusServiceUnavailable, "sign-in is not available right now; try again")
			return
		}
		if ok {
			r = r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
		}
		switch {
		case !ok:
			s.cfg.Metrics.refused.WithLabelValues("unauthenticated").Inc()
			if isPage(r) {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="iotdash", charset="UTF-8"`)
			refuse(w, r, http.StatusUnauthorized, "sign in first: a session, HTTP Basic or an API token (Authorization: Bearer)")
			return
		case p.Role < role:
			s.cfg.Metrics.refused.WithLabelValues("forbidden").Inc()
			refuse(w, r, http.StatusForbidden, "this needs the "+role.String()+" role; "+p.Name+" is a "+p.Role.String())
			return
		}
		h.ServeHTTP(w, r)
	})
}

// isPage reports whether r is a browser asking for a page, which is sent
// to sign in rather than refused.
func isPage(r *http.Request) bool {
	return r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, "/api/") && r.URL.Path != "/ws" &&
		strings.Contains(r.Header.Get("Accept"), "text/html")
}

// refuse answers with a short message: JSON for the API, text otherwise.
func refuse(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]string{"error": msg})
		return
	}
	http.Error(w, msg, code)
}

// LoginForm is what the sign-in page shows.
type LoginForm struct {
	Username string
	Next     string // where to go once signed in
	Error    string // why the last attempt failed
}

// Login serves the sign-in page at /login: GET shows the form (rendered by
// render, with the status it is given), POST (fields username and
// password) signs in and goes on to the form's next, and GET with a
// one-time code from Bootstrap signs in without a password.
func (s *Service) Login(render func(w http.ResponseWriter, r *http.Request, status int, f LoginForm)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next := SafeNext(r.FormValue("next"))
		if r.Method != http.MethodPost {
			if code := r.URL.Query().Get("code"); code != "" {
				name, ok := s.takeOneTime(code)
				u, err := s.user(r.Context(), name)
				if !ok || err != nil {
					render(w, r, http.StatusUnauthorized, LoginForm{Next: next, Error: "That sign-in link has been used or has expired. Sign in with the password."})
					return
				}
				s.startSession(w, r, u, next)
				return
			}
			render(w, r, http.StatusOK, LoginForm{Next: next})
			return
		}
		name := r.PostFormValue("username")
		u, err := s.signIn(r.Context(), remoteIP(r), name, r.PostFormValue("password"))
		switch {
		case err == errLimited:
			w.Header().Set("Retry-After", "60")
			render(w, r, http.StatusTooManyRequests, LoginForm{Username: name, Next: next, Error: "Too many wrong passwords. Wait a minute and try again."})
			return
		case err == errWrong:
			render(w, r, http.StatusUnauthorized, LoginForm{Username: name, Next: next, Error: "Wrong user name or password."})
			return
		case err != nil:
			s.log.Error("signing in", "error", err)
			render(w, r, http.StatusServiceUnavailable, LoginForm{Username: name, Next: next, Error: "Sign-in is not available right now. Try again in a moment."})
			return
		}
		s.startSession(w, r, u, next)
	})
}

func (s *Service) startSession(w http.ResponseWriter, r *http.Request, u User, next string) {
	secret, err := s.newSession(r.Context(), u)
	if err != nil {
		s.log.Error("starting a session", "error", err)
		http.Error(w, "sign-in is not available right now; try again", http.StatusServiceUnavailable)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: secret, Path: "/", MaxAge: int(s.cfg.SessionLifetime / time.Second),
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil || s.cfg.SecureCookies})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// Logout ends the request's session (POST) and goes to the sign-in page.
func (s *Service) Logout() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie(CookieName); err == nil {
			s.endSession(r.Context(), c.Value)
		}
		http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
			SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil || s.cfg.SecureCookies})
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	})
}

// SafeNext is next if it is a path on this site and not the sign-in page,
// and "/" otherwise: where a form may send the browser on to.
func SafeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || len(next) > 2000 ||
		strings.HasPrefix(next, "/login") {
		return "/"
	}
	return next
}

// limiter bounds wrong passwords: ten in a burst from one address and one
// every six seconds after it; five for one user and one every twelve
// seconds after. Only names of users are tracked per user, so spraying
// names cannot grow it; addresses are forgotten when there are too many.
type limiter struct {
	mu    sync.Mutex
	addrs map[string]*rate.Limiter
	users map[string]*rate.Limiter
}

func newLimiter() *limiter {
	return &limiter{addrs: map[string]*rate.Limiter{}, users: map[string]*rate.Limiter{}}
}

const maxTracked = 10000

func (l *limiter) get(m map[string]*rate.Limiter, key string, every time.Duration, burst int) *rate.Limiter {
	lim := m[key]
	if lim == nil {
		if len(m) >= maxTracked {
			clear(m)
		}
		lim = rate.NewLimiter(rate.Every(every), burst)
		m[key] = lim
	}
	return lim
}

func (l *limiter) ok(ip, user string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, lim := range []*rate.Limiter{l.addrs[ip], l.users[user]} {
		if lim != nil && lim.Tokens() < 1 {
			return false
		}
	}
	return true
}

func (l *limiter) failed(ip, user string, known bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.get(l.addrs, ip, 6*time.Second, 10).Allow()
	if known {
		l.get(l.users, user, 12*time.Second, 5).Allow()
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
