package views

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var staticFiles embed.FS

// staticFile is one embedded file, ready to serve as is or gzipped.
type staticFile struct {
	body, gz    []byte
	hash        string // a short hash of body: its ETag and the ?v= of its URL
	contentType string
}

// statics are the embedded static files by name, loaded once at start.
var statics = loadStatics()

func loadStatics() map[string]*staticFile {
	sub, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(err)
	}
	files := map[string]*staticFile{}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		f := &staticFile{body: b, hash: hex.EncodeToString(sum[:6]), contentType: mime.TypeByExtension(path.Ext(p))}
		if compressible(f.contentType) {
			var z bytes.Buffer
			gzipInto(&z, b)
			f.gz = z.Bytes()
		}
		files[p] = f
		return nil
	})
	if err != nil {
		panic(err)
	}
	return files
}

// staticURL is the URL of a static file, versioned by its content so that
// it can be cached for good.
func staticURL(name string) string {
	return "/static/" + name + "?v=" + statics[name].hash
}

// importMapTag is a <script type="importmap"> that maps each script's
// plain URL, as the modules import one another, to its versioned URL, so
// that every module is cached for good and a new release is fetched at
// once. Its JSON holds only our own file names and hashes.
var importMapTag = `<script type="importmap">` + importMap + `</script>`

var importMap = func() string {
	m := map[string]string{}
	for name := range statics {
		if strings.HasSuffix(name, ".js") {
			m["/static/"+name] = staticURL(name)
		}
	}
	b, _ := json.Marshal(map[string]any{"imports": m})
	return string(b)
}()

// ContentSecurityPolicy is the policy the pages work under: scripts,
// styles and connections from the dashboard itself only (the one inline
// script, the import map, allowed by its hash), no plugins, no framing, and
// forms that post only to the dashboard.
var ContentSecurityPolicy = func() string {
	sum := sha256.Sum256([]byte(importMap))
	return "default-src 'self'; script-src 'self' 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; " +
		"style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}()

// Static serves the embedded scripts and stylesheet under /static/. It
// takes the request path with or without that prefix, so it may be mounted
// as is or behind http.StripPrefix("/static/", ...). A request carrying the
// file's current version (?v=, as the pages link to it) may be cached for a
// year; any other is revalidated with its ETag. Clients that take gzip get
// the file gzipped.
func Static() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/static/"), "/")
		f, ok := statics[name]
		if !ok {
			// No directory listings, and a plain 404 for a missing file.
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.contentType)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Add("Vary", "Accept-Encoding")
		if r.URL.Query().Get("v") == f.hash {
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			h.Set("Cache-Control", "no-cache")
		}
		body, etag := f.body, `"`+f.hash+`"`
		if f.gz != nil && r.Header.Get("Range") == "" && acceptsGzip(r) {
			body, etag = f.gz, `"`+f.hash+`-gz"`
			h.Set("Content-Encoding", "gzip")
		}
		h.Set("ETag", etag)
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(body))
	})
}
