package broker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"iotdash/devices"
)

// Credentials keeps devices' MQTT credentials: per device id, the hash of
// its secret. The broker only reads them (SecretHash); AddDevice, List and
// Revoke are for whoever manages devices (the iotdash device command, an
// admin page).
type Credentials interface {
	// Add keeps hash as the secret hash of device id. It returns a
	// devices.EInvalid error if id already has credentials, and
	// devices.EUnavailable if the store cannot be written.
	Add(ctx context.Context, id string, hash []byte) error
	// SecretHash returns the secret hash of device id, a
	// devices.ENotFound error if it has none (never added, or revoked), or
	// devices.EUnavailable if the store cannot be read.
	SecretHash(ctx context.Context, id string) ([]byte, error)
	// List returns every device that has credentials, by id.
	List(ctx context.Context) ([]devices.Credential, error)
	// Revoke forgets device id's credentials: it can no longer connect.
	// It returns a devices.ENotFound error if it had none.
	Revoke(ctx context.Context, id string) error
}

// A device's secret is 32 random bytes, so a single SHA-256 of it is as
// good as a slow hash: nothing can be guessed, and checking it costs a
// microsecond per CONNECT rather than the tens of milliseconds of argon2id,
// which would let a flood of CONNECTs take the CPU.
const secretBytes = 32

// NewSecret returns a new random secret and the hash to keep for it.
func NewSecret() (secret string, hash []byte, err error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", nil, err
	}
	secret = base64.RawURLEncoding.EncodeToString(b)
	return secret, hashSecret(secret), nil
}

func hashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// AddDevice gives device id credentials in c and returns its secret, which
// is not kept anywhere: show it once. The id must be a valid device id
// (devices.ValidName); an id that already has credentials is refused
// (revoke them first).
func AddDevice(ctx context.Context, c Credentials, id string) (secret string, err error) {
	if !devices.ValidName(id) {
		return "", devices.Errorf(devices.EInvalid, "device id %q is not 1 to 64 characters of [A-Za-z0-9._-]", id)
	}
	secret, hash, err := NewSecret()
	if err != nil {
		return "", devices.Wrap(err, devices.EInternal, "making a secret")
	}
	if err := c.Add(ctx, id, hash); err != nil {
		return "", err
	}
	return secret, nil
}

// principal is who a connection is, once authenticated.
type principal struct {
	kind   int    // anonymous, device or internal
	device string // the device id, for a device
}

const (
	anonymous = iota // no user name: allowed only where Options says so; may do anything
	device           // a device: publishes and subscribes under devices/{id}/ only
	internal         // a client of this process (the simulator): publishes under devices/
)

// authHook authenticates CONNECTs and checks every publish and subscribe
// against the device's own topics. It replaces mochi's allow-all hook.
type authHook struct {
	mqtt.HookBase
	server    *mqtt.Server
	creds     Credentials
	anonymous bool
	internal  map[string]string // user name → secret
	reserved  map[string]bool   // client ids no outside client may take
	prefix    string
	refuse    *refusals
}

func (h *authHook) ID() string { return "iotdash-auth" }

func (h *authHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

// who returns the principal an authenticated client is; a client that
// never authenticated (the inline client) is internal.
func (h *authHook) who(cl *mqtt.Client) principal {
	name := string(cl.Properties.Username)
	switch {
	case cl.Net.Inline:
		return principal{kind: internal}
	case name == "":
		return principal{kind: anonymous}
	case h.internal[name] != "":
		return principal{kind: internal}
	default:
		return principal{kind: device, device: name}
	}
}

// OnConnectAuthenticate runs after mochi has parsed the CONNECT and before
// it takes over any session of the same client id: refusing here leaves
// that session as it was.
func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	name, pass := string(pk.Connect.Username), pk.Connect.Password
	remote := cl.Net.Remote
	switch {
	case h.reserved[cl.ID]:
		h.refuse.count("client_id", "a client used a client id reserved for iotdash itself", "client", cl.ID, "remote", remote)
		return false
	case name == "":
		if !h.anonymous {
			h.refuse.count("anonymous", "an anonymous client was refused (devices need credentials: iotdash device add)", "client", cl.ID, "remote", remote)
			return false
		}
	case h.internal[name] != "":
		if subtle.ConstantTimeCompare(pass, []byte(h.internal[name])) != 1 {
			h.refuse.count("credentials", "wrong secret for an internal client", "user", name, "remote", remote)
			return false
		}
	default:
		if !h.deviceSecretOK(name, pass, remote) {
			return false
		}
	}
	who := h.who(cl)
	// A client id in use by someone else (a live connection or a kept
	// session) is not theirs to take over.
	if existing, ok := h.server.Clients.Get(cl.ID); ok && h.who(existing) != who {
		h.refuse.count("client_id", "a client tried to take over another's session", "client", cl.ID, "user", name, "remote", remote)
		return false
	}
	// A Last Will goes out without an ACL check: check it now.
	if pk.Connect.WillFlag && !h.may(who, pk.Connect.WillTopic, true) {
		h.refuse.count("acl_will", "a client's Last Will is on a topic it may not publish to", "client", cl.ID, "user", name, "topic", pk.Connect.WillTopic, "remote", remote)
		return false
	}
	return true
}

func (h *authHook) deviceSecretOK(id string, pass []byte, remote string) bool {
	if h.creds == nil || !devices.ValidName(id) || len(pass) == 0 {
		h.refuse.count("credentials", "a client gave no secret or no valid device id", "user", id, "remote", remote)
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	want, err := h.creds.SecretHash(ctx, id)
	switch {
	case devices.ErrorKind(err) == devices.ENotFound:
		h.refuse.count("credentials", "a device without credentials tried to connect", "user", id, "remote", remote)
		return false
	case err != nil:
		h.refuse.count("unavailable", "device credentials could not be read", "user", id, "error", err)
		return false
	case subtle.ConstantTimeCompare(hashSecret(string(pass)), want) != 1:
		h.refuse.count("credentials", "wrong secret for a device", "user", id, "remote", remote)
		return false
	}
	return true
}

// OnACLCheck is asked with a topic name on every publish, and with a
// topic filter on every subscribe (and again with each topic a
// subscription delivers).
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	who := h.who(cl)
	if h.may(who, topic, write) {
		return true
	}
	reason := "acl_subscribe"
	if write {
		reason = "acl_publish"
	}
	h.refuse.count(reason, "a client was refused a topic", "client", cl.ID, "user", who.device, "topic", topic, "write", write)
	return false
}

// may is the ACL. A device publishes only under devices/{its id}/ and
// subscribes only there too (to hear commands addressed to it; nothing of
// another device's, no wildcard above its own level). A client of this
// process (the simulator) publishes as any device and subscribes to
// nothing. An anonymous client, where allowed at all, may do anything: it
// is the loopback demo, or the operator said -mqtt-anonymous.
func (h *authHook) may(who principal, topic string, write bool) bool {
	switch who.kind {
	case anonymous:
		return true
	case internal:
		return write && strings.HasPrefix(topic, h.prefix)
	default:
		return strings.HasPrefix(topic, h.prefix+who.device+"/")
	}
}

// sweep disconnects every connected device whose credentials were revoked
// (by another process: iotdash device revoke) since it connected.
func (h *authHook) sweep(ctx context.Context) {
	if h.creds == nil {
		return
	}
	list, err := h.creds.List(ctx)
	if err != nil {
		return // checked again at the next sweep; CONNECTs still check each time
	}
	valid := make(map[string]bool, len(list))
	for _, c := range list {
		valid[c.Device] = true
	}
	for _, cl := range h.server.Clients.GetAll() {
		if who := h.who(cl); who.kind == device && !valid[who.device] && !cl.Closed() {
			h.refuse.count("credentials", "a device whose credentials were revoked was disconnected", "user", who.device, "client", cl.ID)
			_ = h.server.DisconnectClient(cl, packets.ErrNotAuthorized)
		}
	}
}

// Accounts manages device credentials for people: an admin page adds a
// device (its secret shown once), lists them and revokes one.
type Accounts struct{ Credentials }

// AddDevice gives device id credentials and returns its secret.
func (a Accounts) AddDevice(ctx context.Context, id string) (string, error) {
	return AddDevice(ctx, a.Credentials, id)
}
