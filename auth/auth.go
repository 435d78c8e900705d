// Package auth decides who a request comes from and what they may do. People
// sign in with a local user name and password (a session cookie), scripts
// with an API token (Authorization: Bearer) or a user's password (HTTP
// Basic, as Grafana allows), and a trusted reverse proxy may name the user
// in a header. Every user and token has one of three roles, each allowing
// what the one before it does and more: a viewer sees pages, history and
// exports; an operator may also change what operators change (boards,
// alert acknowledgements); an admin may also manage users, tokens and
// device credentials and read /metrics.
//
// Users, sessions and tokens are documents in a Store, the one small
// interface that state several instances will share sits behind.
// Passwords are kept as argon2id hashes, session and token secrets as
// SHA-256 hashes; none is ever stored or logged in the clear.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"iotdash/devices"
)

// Role is what a user or token may do. The zero Role is no one's: a route
// that requires it is open to everyone.
type Role int

// Roles, each allowing everything the one before it allows.
const (
	Anyone Role = iota
	Viewer
	Operator
	Admin
)

var roleNames = []string{"anyone", "viewer", "operator", "admin"}

func (r Role) String() string {
	if r >= 0 && int(r) < len(roleNames) {
		return roleNames[r]
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// ParseRole reads viewer, operator or admin.
func ParseRole(s string) (Role, error) {
	if i := slices.Index(roleNames, s); i > 0 {
		return Role(i), nil
	}
	return 0, devices.Errorf(devices.EInvalid, "role %q is none of viewer, operator, admin", s)
}

// MarshalText writes the role's name.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads a role's name.
func (r *Role) UnmarshalText(b []byte) (err error) {
	*r, err = ParseRole(string(b))
	return err
}

// Store keeps documents by kind and key: the one small interface behind
// which iotdash keeps the state several instances will one day share. Get
// of a missing document returns a devices.ENotFound error.
type Store interface {
	Get(ctx context.Context, kind, key string) ([]byte, error)
	Put(ctx context.Context, kind, key string, doc []byte) error
	Delete(ctx context.Context, kind, key string) error
	List(ctx context.Context, kind string) ([][]byte, error)
}

// User is a person who signs in.
type User struct {
	Name    string    `json:"name"`
	Role    Role      `json:"role"`
	Hash    string    `json:"hash"`
	Created time.Time `json:"created"`
	// Generation changes with the password: sessions of an older one
	// are signed out.
	Generation int `json:"generation"`
	// Zone is the time zone (IANA name) the user reads times in; "" for
	// the plant's.
	Zone string `json:"zone,omitempty"`
}

// Token is an API token: a name for people, a role, and the hash of its
// secret. The secret is shown once, when the token is created.
type Token struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	Hash      string    `json:"hash"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
}

type session struct {
	User       string    `json:"user"`
	Generation int       `json:"generation"`
	Expires    time.Time `json:"expires"`
}

// Principal is who a request comes from.
type Principal struct {
	Name string // the user's name, or "token:" and the token's name
	Role Role
	Via  string // session, basic, bearer or proxy
	Zone string // the user's own time zone, "" for the plant's
}

type principalKey struct{}

// From returns the principal of a request that passed Require.
func From(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Config is what a Service is built from.
type Config struct {
	Store Store
	// ProxyHeader, when set, names the header in which a trusted reverse
	// proxy passes the signed-in user's name; it is believed only from
	// ProxyFrom. A name that is not a user signs in as a viewer.
	ProxyHeader string
	ProxyFrom   []netip.Prefix
	// SecureCookies marks the session cookie Secure even when the request
	// did not come over TLS here (TLS ends at a proxy in front).
	SecureCookies bool
	// SessionLifetime is how long a session lasts unused (default 30 days).
	SessionLifetime time.Duration
	Metrics         *Metrics
	Logger          *slog.Logger
}

// Service signs people in and answers who a request comes from.
type Service struct {
	cfg    Config
	log    *slog.Logger
	limits *limiter
	basic  basicCache

	mu       sync.Mutex
	oneTimes map[string]oneTime // one-time sign-in codes by hash
}

type oneTime struct {
	user    string
	expires time.Time
}

// New returns a Service keeping its state in cfg.Store.
func New(cfg Config) *Service {
	if cfg.SessionLifetime <= 0 {
		cfg.SessionLifetime = 30 * 24 * time.Hour
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	return &Service{cfg: cfg, log: log, limits: newLimiter(), oneTimes: map[string]oneTime{}}
}

// Bootstrap makes sure there is an admin: when there are no users it
// creates "admin" with password, or with a generated one when password is
// "". It returns the password it set (to be shown once) and a one-time
// sign-in path for it, or "" when users existed already.
func (s *Service) Bootstrap(ctx context.Context, password string) (setPassword, signInPath string, err error) {
	users, err := s.Users(ctx)
	if err != nil {
		return "", "", err
	}
	if len(users) > 0 {
		if password != "" {
			s.log.Info("IOTDASH_ADMIN_PASSWORD is ignored: users exist already; change a password on the admin page")
		}
		return "", "", nil
	}
	if password == "" {
		password = NewSecret(12)
	}
	if err := s.AddUser(ctx, "admin", Admin, password); err != nil {
		return "", "", err
	}
	code := NewSecret(24)
	s.mu.Lock()
	s.oneTimes[hashSecret(code)] = oneTime{user: "admin", expires: time.Now().Add(24 * time.Hour)}
	s.mu.Unlock()
	return password, "/login?code=" + code, nil
}

func validUserName(name string) error {
	if name == "" || len(name) > 64 || strings.ContainsAny(name, ":/\\ \t\r\n") {
		return devices.Errorf(devices.EInvalid, "a user name is 1 to 64 characters with no space, ':', '/' or '\\'")
	}
	return nil
}

func validPassword(password string) error {
	if len(password) < MinPasswordLength {
		return devices.Errorf(devices.EInvalid, "a password has at least %d characters", MinPasswordLength)
	}
	if len(password) > 256 {
		return devices.Errorf(devices.EInvalid, "a password has at most 256 characters")
	}
	return nil
}

// AddUser creates a user; a name already taken is EInvalid.
func (s *Service) AddUser(ctx context.Context, name string, role Role, password string) error {
	if err := validUserName(name); err != nil {
		return err
	}
	if role <= Anyone || role > Admin {
		return devices.Errorf(devices.EInvalid, "a user is a viewer, an operator or an admin")
	}
	if err := validPassword(password); err != nil {
		return err
	}
	if _, err := s.user(ctx, name); err == nil {
		return devices.Errorf(devices.EInvalid, "there is a user %s already", name)
	} else if devices.ErrorKind(err) != devices.ENotFound {
		return err
	}
	return s.putUser(ctx, User{Name: name, Role: role, Hash: HashPassword(password), Created: time.Now().UTC()})
}

// Users lists every user, by name.
func (s *Service) Users(ctx context.Context) ([]User, error) {
	docs, err := s.cfg.Store.List(ctx, "user")
	if err != nil {
		return nil, err
	}
	out := make([]User, 0, len(docs))
	for _, d := range docs {
		var u User
		if json.Unmarshal(d, &u) == nil {
			out = append(out, u)
		}
	}
	slices.SortFunc(out, func(a, b User) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// SetRole changes a user's role. The last admin stays an admin.
func (s *Service) SetRole(ctx context.Context, name string, role Role) error {
	if role <= Anyone || role > Admin {
		return devices.Errorf(devices.EInvalid, "a user is a viewer, an operator or an admin")
	}
	u, err := s.user(ctx, name)
	if err != nil {
		return err
	}
	if u.Role == Admin && role != Admin {
		if err := s.keepAnAdmin(ctx, name); err != nil {
			return err
		}
	}
	u.Role = role
	return s.putUser(ctx, u)
}

// SetPassword changes a user's password and signs out their sessions.
func (s *Service) SetPassword(ctx context.Context, name, password string) error {
	if err := validPassword(password); err != nil {
		return err
	}
	u, err := s.user(ctx, name)
	if err != nil {
		return err
	}
	u.Hash = HashPassword(password)
	u.Generation++
	return s.putUser(ctx, u)
}

// ChangePassword sets a user's password when current is their present one
// (within the limits on wrong passwords), and signs out their sessions:
// the caller starts a new one.
func (s *Service) ChangePassword(ctx context.Context, ip, name, current, password string) error {
	if err := validPassword(password); err != nil {
		return err
	}
	if _, err := s.signIn(ctx, ip, name, current); err != nil {
		if err == errWrong {
			return devices.Errorf(devices.EInvalid, "the present password is not right")
		}
		return err
	}
	return s.SetPassword(ctx, name, password)
}

// SetZone sets the time zone a user reads times in: an IANA name, or ""
// for the plant's.
func (s *Service) SetZone(ctx context.Context, name, zone string) error {
	if zone != "" {
		if _, err := time.LoadLocation(zone); err != nil || len(zone) > 64 {
			return devices.Errorf(devices.EInvalid, "%q is not a time zone such as Europe/Berlin or UTC", zone)
		}
	}
	u, err := s.user(ctx, name)
	if err != nil {
		return err
	}
	u.Zone = zone
	return s.putUser(ctx, u)
}

// DeleteUser removes a user; their sessions end with them. The last admin
// cannot be removed.
func (s *Service) DeleteUser(ctx context.Context, name string) error {
	u, err := s.user(ctx, name)
	if err != nil {
		return err
	}
	if u.Role == Admin {
		if err := s.keepAnAdmin(ctx, name); err != nil {
			return err
		}
	}
	return s.cfg.Store.Delete(ctx, "user", name)
}

func (s *Service) keepAnAdmin(ctx context.Context, leaving string) error {
	users, err := s.Users(ctx)
	if err != nil {
		return err
	}
	for _, u := range users {
		if u.Role == Admin && u.Name != leaving {
			return nil
		}
	}
	return devices.Errorf(devices.EInvalid, "%s is the last admin; make someone else an admin first", leaving)
}

func (s *Service) user(ctx context.Context, name string) (User, error) {
	b, err := s.cfg.Store.Get(ctx, "user", name)
	if err != nil {
		if devices.ErrorKind(err) == devices.ENotFound {
			return User{}, devices.Errorf(devices.ENotFound, "there is no user %s", name)
		}
		return User{}, err
	}
	var u User
	if err := json.Unmarshal(b, &u); err != nil {
		return User{}, devices.Wrap(err, devices.EInternal, "user %s cannot be read", name)
	}
	return u, nil
}

func (s *Service) putUser(ctx context.Context, u User) error {
	b, _ := json.Marshal(u)
	return s.cfg.Store.Put(ctx, "user", u.Name, b)
}

// CreateToken creates an API token with role, named for people, and
// returns it with its secret (the whole Bearer value), shown this once.
func (s *Service) CreateToken(ctx context.Context, name string, role Role, by string) (Token, string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 100 {
		return Token{}, "", devices.Errorf(devices.EInvalid, "a token's name is 1 to 100 characters")
	}
	if role <= Anyone || role > Admin {
		return Token{}, "", devices.Errorf(devices.EInvalid, "a token is a viewer's, an operator's or an admin's")
	}
	id, secret := NewSecret(9), NewSecret(32)
	t := Token{ID: id, Name: name, Role: role, Hash: hashSecret(secret), Created: time.Now().UTC(), CreatedBy: by}
	b, _ := json.Marshal(t)
	if err := s.cfg.Store.Put(ctx, "token", id, b); err != nil {
		return Token{}, "", err
	}
	return t, tokenPrefix + id + "." + secret, nil
}

const tokenPrefix = "iotd_"

// Tokens lists every API token, newest first.
func (s *Service) Tokens(ctx context.Context) ([]Token, error) {
	docs, err := s.cfg.Store.List(ctx, "token")
	if err != nil {
		return nil, err
	}
	out := make([]Token, 0, len(docs))
	for _, d := range docs {
		var t Token
		if json.Unmarshal(d, &t) == nil {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b Token) int { return b.Created.Compare(a.Created) })
	return out, nil
}

// RevokeToken deletes a token; requests bearing it are refused from then on.
func (s *Service) RevokeToken(ctx context.Context, id string) error {
	if _, err := s.cfg.Store.Get(ctx, "token", id); err != nil {
		if devices.ErrorKind(err) == devices.ENotFound {
			return devices.Errorf(devices.ENotFound, "there is no token %s", id)
		}
		return err
	}
	return s.cfg.Store.Delete(ctx, "token", id)
}

// errWrong is a wrong name, password or token: the caller is told no more.
var errWrong = errors.New("wrong user name or password")

// checkPassword returns the user name and password's user, or errWrong,
// and whether name is a user's. It takes as long for a name that is no
// user as for a wrong password.
func (s *Service) checkPassword(ctx context.Context, name, password string) (u User, known bool, err error) {
	u, err = s.user(ctx, name)
	if err != nil {
		if devices.ErrorKind(err) == devices.ENotFound {
			CheckPassword(dummyHash, password)
			return User{}, false, errWrong
		}
		return User{}, false, err
	}
	if !s.basic.check(u, password) {
		if !CheckPassword(u.Hash, password) {
			return User{}, true, errWrong
		}
		s.basic.remember(u, password)
	}
	return u, true, nil
}

// bearer returns the principal of an API token's value, or errWrong.
func (s *Service) bearer(ctx context.Context, value string) (Principal, error) {
	rest, ok := strings.CutPrefix(value, tokenPrefix)
	id, secret, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || id == "" || len(id) > 64 {
		return Principal{}, errWrong
	}
	b, err := s.cfg.Store.Get(ctx, "token", id)
	if err != nil {
		if devices.ErrorKind(err) == devices.ENotFound {
			return Principal{}, errWrong
		}
		return Principal{}, err
	}
	var t Token
	if json.Unmarshal(b, &t) != nil || subtle.ConstantTimeCompare([]byte(t.Hash), []byte(hashSecret(secret))) != 1 {
		return Principal{}, errWrong
	}
	return Principal{Name: "token:" + t.Name, Role: t.Role, Via: "bearer"}, nil
}

// newSession starts a session for u and returns its secret.
func (s *Service) newSession(ctx context.Context, u User) (string, error) {
	secret := NewSecret(32)
	b, _ := json.Marshal(session{User: u.Name, Generation: u.Generation, Expires: time.Now().Add(s.cfg.SessionLifetime).UTC()})
	return secret, s.cfg.Store.Put(ctx, "session", hashSecret(secret), b)
}

// session returns the principal of a session cookie's secret, or errWrong
// for one that is unknown, expired or of a changed password. A session
// past half its life is extended, so a wall screen stays signed in.
func (s *Service) session(ctx context.Context, secret string) (Principal, error) {
	key := hashSecret(secret)
	b, err := s.cfg.Store.Get(ctx, "session", key)
	if err != nil {
		if devices.ErrorKind(err) == devices.ENotFound {
			return Principal{}, errWrong
		}
		return Principal{}, err
	}
	var se session
	if json.Unmarshal(b, &se) != nil || time.Now().After(se.Expires) {
		s.cfg.Store.Delete(ctx, "session", key)
		return Principal{}, errWrong
	}
	u, err := s.user(ctx, se.User)
	if err != nil || u.Generation != se.Generation {
		if err != nil && devices.ErrorKind(err) != devices.ENotFound {
			return Principal{}, err
		}
		s.cfg.Store.Delete(ctx, "session", key)
		return Principal{}, errWrong
	}
	if time.Until(se.Expires) < s.cfg.SessionLifetime/2 {
		se.Expires = time.Now().Add(s.cfg.SessionLifetime).UTC()
		b, _ := json.Marshal(se)
		s.cfg.Store.Put(ctx, "session", key, b)
	}
	return Principal{Name: u.Name, Role: u.Role, Via: "session", Zone: u.Zone}, nil
}

func (s *Service) endSession(ctx context.Context, secret string) {
	s.cfg.Store.Delete(ctx, "session", hashSecret(secret))
}

// takeOneTime returns the user of a one-time sign-in code, once.
func (s *Service) takeOneTime(code string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := hashSecret(code)
	ot, ok := s.oneTimes[key]
	delete(s.oneTimes, key)
	return ot.user, ok && time.Now().Before(ot.expires)
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// basicCache remembers, for a minute, passwords that were right, so that a
// script sending HTTP Basic with every request pays argon2id once a minute
// rather than every time. It holds a keyed hash of the password, never the
// password, and forgets it when the user's password changes.
type basicCache struct {
	mu      sync.Mutex
	key     []byte
	entries map[string]time.Time
}

func (c *basicCache) id(u User, password string) string {
	if c.key == nil {
		c.key = []byte(NewSecret(32))
	}
	sum := sha256.Sum256(slices.Concat(c.key, []byte(u.Name), []byte{0}, []byte(u.Hash), []byte{0}, []byte(password)))
	return string(sum[:])
}

func (c *basicCache) check(u User, password string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.entries[c.id(u, password)]
	return ok && time.Now().Before(until)
}

func (c *basicCache) remember(u User, password string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= 1024 {
		c.entries = map[string]time.Time{}
	}
	c.entries[c.id(u, password)] = time.Now().Add(time.Minute)
}
