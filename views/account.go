package views

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"iotdash/auth"
	"iotdash/devices"
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

// AdminModel is the admin page.
type AdminModel struct {
	Page
	Users    []auth.User
	Tokens   []auth.Token
	Zone     *time.Location
	Done     string // what the last action did
	Problem  string // why the last action failed
	NewToken string // a token's secret, shown once, just after it is made
}

// Admin serves the admin page and its actions: GET /admin, and POST to
// /admin/users (add), /admin/users/{name}/{role,password,delete},
// /admin/tokens (create) and /admin/tokens/{id}/revoke. Each action
// answers with the page, saying what it did or why it could not.
type Admin struct {
	Accounts Accounts
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
		default:
			err = devices.Errorf(devices.ENotFound, "there is no such admin action")
		}
		a.show(w, r, done, err, secret)
	})
}

func (a Admin) show(w http.ResponseWriter, r *http.Request, done string, actionErr error, secret string) {
	log := orDiscard(a.Options.Logger)
	ctx := r.Context()
	m := AdminModel{Page: Page{Title: "Admin"}, Zone: a.Options.Zone, NewToken: secret}
	if m.Zone == nil {
		m.Zone = time.UTC
	}
	status := http.StatusOK
	if actionErr != nil {
		status = statusOf(actionErr)
		m.Problem = devices.ErrorMessage(actionErr)
		if status >= 500 {
			log.Error("admin action", "path", r.URL.Path, "error", actionErr)
		}
	} else {
		m.Done = done
	}
	var err error
	if m.Users, err = a.Accounts.Users(ctx); err == nil {
		m.Tokens, err = a.Accounts.Tokens(ctx)
	}
	if err != nil {
		log.Error("admin page", "error", err)
		m.Problem = "The list of people and tokens cannot be read right now; try again."
		status = http.StatusServiceUnavailable
	}
	render(w, r, log, status, AdminPage(m))
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

func adminPath(kind, key, action string) string {
	return "/admin/" + kind + "/" + url.PathEscape(key) + "/" + action
}

func minPassword() string { return strconv.Itoa(auth.MinPasswordLength) }
