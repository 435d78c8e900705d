package views

import (
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"iotdash/auth"
	"iotdash/devices"
	"iotdash/internal/limit"
)

// LoginModel is the sign-in page.
type LoginModel struct {
	Page
	Form auth.LoginForm
}

// Login renders the sign-in page for auth.Service.Login.
func Login(o Options) func(w http.ResponseWriter, r *http.Request, status int, f auth.LoginForm) {
	log := orDiscard(o.Logger)
	return func(w http.ResponseWriter, r *http.Request, status int, f auth.LoginForm) {
		render(w, r, log, status, LoginPage(LoginModel{Page: Page{Title: "Sign in"}, Form: f}))
	}
}

// Accounts is what the admin page manages: people and API tokens
// (auth.Service).
type Accounts interface {
	Users(ctx context.Context) ([]auth.User, error)
	AddUser(ctx context.Context, name string, role auth.Role, password string) error
	SetRole(ctx context.Context, name string, role auth.Role) error
	SetPassword(ctx context.Context, name, password string) error
	DeleteUser(ctx context.Context, name string) error
	Tokens(ctx context.Context) ([]auth.Token, error)
	CreateToken(ctx context.Context, name string, role auth.Role, by string) (auth.Token, string, error)
	RevokeToken(ctx context.Context, id string) error
}

// DeviceCredentials are the devices' MQTT credentials the embedded broker
// checks (broker.Accounts).
type DeviceCredentials interface {
	List(ctx context.Context) ([]devices.Credential, error)
	AddDevice(ctx context.Context, id string) (secret string, err error)
	Revoke(ctx context.Context, id string) error
}

// AdminModel is the admin page.
type AdminModel struct {
	Page
	Users  []auth.User
	Tokens []auth.Token
	// Devices are the devices with credentials; ManagesDevices says
	// whether iotdash keeps them (the embedded broker) or the broker
	// does (-mqtt).
	Devices         []devices.Credential
	ManagesDevices  bool
	DeviceID        string // the device NewDeviceSecret is for
	NewDeviceSecret string
	Zone            *time.Location
	Done            string // what the last action did
	Problem         string // why the last action failed
	NewToken        string // a token's secret, shown once, just after it is made
}

// Admin serves the admin page and its actions: GET /admin, and POST to
// /admin/users (add), /admin/users/{name}/{role,password,delete},
// /admin/tokens (create) and /admin/tokens/{id}/revoke. Each action
// answers with the page, saying what it did or why it could not.
type Admin struct {
	Accounts Accounts
	Devices  DeviceCredentials // nil when the broker is not the embedded one
	Options  Options
}

// Page serves GET /admin.
func (a Admin) Page() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { a.show(w, r, "", nil, "") })
}

// Action serves POST /admin/{kind}[/{key}/{action}].
func (a Admin) Action() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		kind, key, action := r.PathValue("kind"), r.PathValue("key"), r.PathValue("action")
		role := func() (auth.Role, error) { return auth.ParseRole(r.PostFormValue("role")) }
		var done, secret string
		var err error
		switch kind + "/" + action {
		case "users/":
			name := strings.TrimSpace(r.PostFormValue("username"))
			var ro auth.Role
			if ro, err = role(); err == nil {
				err = a.Accounts.AddUser(ctx, name, ro, r.PostFormValue("password"))
			}
			done = "Added " + name + "."
		case "users/role":
			var ro auth.Role
			if ro, err = role(); err == nil {
				err = a.Accounts.SetRole(ctx, key, ro)
			}
			done = key + " is now a " + r.PostFormValue("role") + "."
		case "users/password":
			err = a.Accounts.SetPassword(ctx, key, r.PostFormValue("password"))
			done = "Set a new password for " + key + "; their sessions are signed out."
		case "users/delete":
			err = a.Accounts.DeleteUser(ctx, key)
			done = "Removed " + key + "."
		case "tokens/":
			var ro auth.Role
			if ro, err = role(); err == nil {
				p, _ := auth.From(ctx)
				var t auth.Token
				t, secret, err = a.Accounts.CreateToken(ctx, r.PostFormValue("name"), ro, p.Name)
				done = "Created the token " + t.Name + "."
			}
		case "tokens/revoke":
			err = a.Accounts.RevokeToken(ctx, key)
			done = "Revoked the token."
		case "devices/", "devices/revoke":
			if a.Devices == nil {
				err = devices.Errorf(devices.EInvalid, "device credentials are kept by your MQTT broker (-mqtt), not here")
				break
			}
			if action == "revoke" {
				err = a.Devices.Revoke(ctx, key)
				done = key + " can no longer connect; a connected session is closed within seconds."
				break
			}
			id := strings.TrimSpace(r.PostFormValue("device"))
			var devSecret string
			if devSecret, err = a.Devices.AddDevice(ctx, id); err == nil {
				a.showDevice(w, r, id, devSecret)
				return
			}
		default:
			err = devices.Errorf(devices.ENotFound, "there is no such admin action")
		}
		a.show(w, r, done, err, secret)
	})
}

func (a Admin) showDevice(w http.ResponseWriter, r *http.Request, id, secret string) {
	a.render(w, r, AdminModel{DeviceID: id, NewDeviceSecret: secret, Done: "Added the device " + id + "."}, nil)
}

func (a Admin) show(w http.ResponseWriter, r *http.Request, done string, actionErr error, secret string) {
	a.render(w, r, AdminModel{NewToken: secret, Done: done}, actionErr)
}

// render shows the admin page with m's message and new secret, or why
// the action failed.
func (a Admin) render(w http.ResponseWriter, r *http.Request, m AdminModel, actionErr error) {
	log := orDiscard(a.Options.Logger)
	ctx := r.Context()
	m.Page, m.Zone = Page{Title: "Admin"}, a.Options.Zone
	if m.Zone == nil {
		m.Zone = time.UTC
	}
	status := http.StatusOK
	if actionErr != nil {
		status, m.Problem = problem(log, r, actionErr)
		m.Done = ""
	}
	var err error
	if m.Users, err = a.Accounts.Users(ctx); err == nil {
		m.Tokens, err = a.Accounts.Tokens(ctx)
	}
	if err == nil && a.Devices != nil {
		m.ManagesDevices = true
		m.Devices, err = a.Devices.List(ctx)
	}
	if err != nil {
		log.Error("admin page", "error", err)
		m.Problem = "The list of people and tokens cannot be read right now; try again."
		status = http.StatusServiceUnavailable
	}
	render(w, r, log, status, AdminPage(m))
}

// problem is the status and the message for the page of an action's
// err, logged when it is a fault of ours rather than the caller's.
func problem(log *slog.Logger, r *http.Request, err error) (int, string) {
	status := statusOf(err)
	if status >= 500 {
		log.Error("request failed", "path", r.URL.Path, "error", err)
	}
	return status, devices.ErrorMessage(err)
}

func statusOf(err error) int {
	switch devices.ErrorKind(err) {
	case devices.EInvalid:
		return http.StatusBadRequest
	case devices.ENotFound:
		return http.StatusNotFound
	case devices.EUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func adminPath(kind, key, action string) string { return adminPathOf("admin/"+kind, key, action) }

// adminPathOf is the path of a form's action on one thing: /base/key/action.
func adminPathOf(base, key, action string) string {
	return "/" + base + "/" + url.PathEscape(key) + "/" + action
}

func minPassword() string { return strconv.Itoa(auth.MinPasswordLength) }

// Account is what the account page changes: a person's own password and
// time zone (auth.Service).
type Account interface {
	ChangePassword(ctx context.Context, ip, name, current, password string) error
	SetZone(ctx context.Context, name, zone string) error
}

// AccountModel is the account page.
type AccountModel struct {
	Page
	Name, Role        string
	Zone, PlantZone   string
	CanChangePassword bool // signed in with a password here (not by a proxy or a token)
	Done, Problem     string
}

// AccountPages serves GET /account and its forms, POST /account/zone and
// /account/password. A changed password signs out every session, this
// one too: the page then asks to sign in again.
type AccountPages struct {
	Accounts Account
	Options  Options
}

// Page serves GET /account.
func (a AccountPages) Page() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { a.show(w, r, "", nil) })
}

// Action serves POST /account/{what}.
func (a AccountPages) Action() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.From(r.Context())
		var err error
		switch r.PathValue("what") {
		case "zone":
			zone := strings.TrimSpace(r.PostFormValue("zone"))
			if err = a.Accounts.SetZone(r.Context(), p.Name, zone); err == nil {
				// This request's principal still has the old zone.
				http.Redirect(w, r, "/account?saved=zone", http.StatusSeeOther)
				return
			}
		case "password":
			if !a.canChangePassword(r, p) {
				err = devices.Errorf(devices.EInvalid, "a password is changed by signing in with it here")
				break
			}
			if err = a.Accounts.ChangePassword(r.Context(), limit.Addr(r), p.Name, r.PostFormValue("current"), r.PostFormValue("password")); err == nil {
				http.Redirect(w, r, "/login?next=%2Faccount", http.StatusSeeOther)
				return
			}
		default:
			err = devices.Errorf(devices.ENotFound, "there is no such account action")
		}
		a.show(w, r, "", err)
	})
}

func (a AccountPages) canChangePassword(r *http.Request, p auth.Principal) bool {
	return p.Via == "session" || p.Via == "basic"
}

func (a AccountPages) show(w http.ResponseWriter, r *http.Request, done string, actionErr error) {
	log := orDiscard(a.Options.Logger)
	p, _ := auth.From(r.Context())
	plant := time.UTC
	if a.Options.Zone != nil {
		plant = a.Options.Zone
	}
	m := AccountModel{Page: Page{Title: "Your account"}, Name: p.Name, Role: p.Role.String(), Zone: p.Zone,
		PlantZone: zoneName(plant), CanChangePassword: a.canChangePassword(r, p), Done: done}
	if r.URL.Query().Get("saved") == "zone" && actionErr == nil {
		m.Done = "Saved: times are shown in " + cmp.Or(p.Zone, "the plant's zone, "+m.PlantZone) + "."
	}
	status := http.StatusOK
	if actionErr != nil {
		status, m.Problem = problem(log, r, actionErr)
	}
	render(w, r, log, status, AccountPage(m))
}
