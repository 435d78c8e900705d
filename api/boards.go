package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"iotdash/auth"
	"iotdash/boards"
	"iotdash/devices"
)

// Boards is what the board API reads and changes (boards.Boards). Its
// methods return devices.EInvalid for a board that is not valid (with
// boards.ErrLimit behind one past a limit, boards.ErrConflict behind a
// change to a version saved over since), ENotFound for one that does not
// exist, and EUnavailable when the state file cannot be reached.
type Boards interface {
	List(ctx context.Context) ([]boards.Board, error)
	Get(ctx context.Context, id string) (boards.Board, error)
	Create(ctx context.Context, b boards.Board, who string) (boards.Board, error)
	Save(ctx context.Context, id string, b boards.Board, who string) (boards.Board, error)
	Delete(ctx context.Context, id string) error
	Versions(ctx context.Context, id string) ([]boards.Version, error)
	// Decode reads a board's JSON, strictly and within the limits,
	// counting what it refuses.
	Decode(r io.Reader, who string) (boards.Board, error)
}

var _ Boards = (*boards.Boards)(nil)

// BoardAPI serves the boards, as documents (see the boards package):
//
//	GET    /api/v1/boards                 every board, in brief
//	POST   /api/v1/boards                 a new board (201, the board stored with its id)
//	GET    /api/v1/boards/{id}            one board
//	PUT    /api/v1/boards/{id}            the board, replaced (its version kept)
//	DELETE /api/v1/boards/{id}            (204)
//	GET    /api/v1/boards/{id}/versions   the earlier versions kept
type BoardAPI struct {
	Boards Boards
	Logger *slog.Logger
}

func (a BoardAPI) log() *slog.Logger { return orDiscard(a.Logger) }

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// boardBrief is a board as the list gives it: what it is and when it was
// saved, without its panels.
type boardBrief struct {
	ID      string    `json:"id"`
	Title   string    `json:"title"`
	Panels  int       `json:"panels"`
	Version int       `json:"version"`
	Saved   time.Time `json:"saved"`
	SavedBy string    `json:"saved_by,omitempty"`
}

// List serves GET /api/v1/boards (every board, by title, in brief) and
// POST /api/v1/boards (a board's JSON, stored as a new board: 201 with
// the board stored, its id and version 1).
func (a BoardAPI) List() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := noParameters(r); err != nil {
			writeError(w, r, a.log(), err)
			return
		}
		if r.Method == http.MethodGet {
			list, err := a.Boards.List(r.Context())
			if err != nil {
				writeError(w, r, a.log(), err)
				return
			}
			out := make([]boardBrief, 0, len(list))
			for _, b := range list {
				out = append(out, boardBrief{ID: b.ID, Title: b.Title, Panels: len(b.Panels), Version: b.Version, Saved: b.Saved, SavedBy: b.SavedBy})
			}
			writeJSON(w, http.StatusOK, out)
			return
		}
		b, err := a.decode(r)
		if err == nil {
			b, err = a.Boards.Create(r.Context(), b, who(r))
		}
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		w.Header().Set("Location", "/api/v1/boards/"+b.ID)
		writeJSON(w, http.StatusCreated, b)
	})
}

// Board serves GET, PUT and DELETE /api/v1/boards/{id}. A PUT's version,
// when given, is the version the change was made to: if the board was
// saved since, the answer is 409 and nothing changes.
func (a BoardAPI) Board() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := noParameters(r); err != nil {
			writeError(w, r, a.log(), err)
			return
		}
		switch r.Method {
		case http.MethodGet:
			b, err := a.Boards.Get(r.Context(), id)
			if err != nil {
				writeError(w, r, a.log(), err)
				return
			}
			writeJSON(w, http.StatusOK, b)
		case http.MethodDelete:
			if err := a.Boards.Delete(r.Context(), id); err != nil {
				writeError(w, r, a.log(), err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		default:
			b, err := a.decode(r)
			if err == nil && b.ID != "" && b.ID != id {
				err = devices.Errorf(devices.EInvalid, "the body's id %q is not the path's %q", b.ID, id)
			}
			if err == nil {
				b, err = a.Boards.Save(r.Context(), id, b, who(r))
			}
			if err != nil {
				a.writeError(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, b)
		}
	})
}

// Versions serves GET /api/v1/boards/{id}/versions: the earlier versions
// of the board kept, newest first.
func (a BoardAPI) Versions() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := noParameters(r); err != nil {
			writeError(w, r, a.log(), err)
			return
		}
		vs, err := a.Boards.Versions(r.Context(), r.PathValue("id"))
		if err != nil {
			writeError(w, r, a.log(), err)
			return
		}
		writeJSON(w, http.StatusOK, vs)
	})
}

// decode reads the request's board: JSON, strictly, within the limits on
// boards (boards.Decode).
func (a BoardAPI) decode(r *http.Request) (boards.Board, error) {
	if err := requireJSON(r); err != nil {
		return boards.Board{}, err
	}
	return a.Boards.Decode(r.Body, who(r))
}

// writeError is writeError, with a change to a board saved over since
// answered 409 Conflict.
func (a BoardAPI) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, boards.ErrConflict) {
		writeJSON(w, http.StatusConflict, map[string]string{"error": devices.ErrorMessage(err)})
		return
	}
	writeError(w, r, a.log(), err)
}

// noParameters refuses a query string where a path takes none.
func noParameters(r *http.Request) error {
	if r.URL.RawQuery != "" {
		return devices.Errorf(devices.EInvalid, "%s takes no parameters", r.URL.Path)
	}
	return nil
}

// who is the signed-in user or token making r, "" without sign-in.
func who(r *http.Request) string {
	p, _ := auth.From(r.Context())
	return p.Name
}
