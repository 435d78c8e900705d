package views

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var staticFiles embed.FS

// static is the embedded static directory, its files at its root.
var static, _ = fs.Sub(staticFiles, "static")

// staticHashes maps each static file's name to a short hash of its content,
// used as its ETag and as the ?v= in the URLs the pages link to.
var staticHashes = hashFiles(static)

func hashFiles(fsys fs.FS) map[string]string {
	hs := map[string]string{}
	fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		hs[p] = hex.EncodeToString(sum[:6])
		return nil
	})
	return hs
}

// staticURL is the URL of a static file, versioned by its content so that
// it can be cached for good.
func staticURL(name string) string {
	return "/static/" + name + "?v=" + staticHashes[name]
}

// Static serves the embedded script and stylesheet under /static/. It
// takes the request path with or without that prefix, so it may be mounted
// as is or behind http.StripPrefix("/static/", ...). A request carrying the
// file's current version (?v=, as the pages link to it) may be cached for a
// year; any other is revalidated with its ETag.
func Static() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/static/"), "/")
		hash, ok := staticHashes[name]
		if !ok {
			// No directory listings, and a plain 404 for a missing file.
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("ETag", `"`+hash+`"`)
		h.Set("X-Content-Type-Options", "nosniff")
		if r.URL.Query().Get("v") == hash {
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			h.Set("Cache-Control", "no-cache")
		}
		http.ServeFileFS(w, r, static, name)
	})
}
