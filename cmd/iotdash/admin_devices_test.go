package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"iotdash/internal/testenv"
)

// TestAdminManagesDeviceCredentials: an admin adds a device on the admin
// page, which shows its secret once; the device connects with it to the
// embedded broker; revoked on the page, it can no longer connect.
func TestAdminManagesDeviceCredentials(t *testing.T) {
	brokerAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	app := startInProcess(t, "-simulate", "0", "-broker", brokerAddr)
	post := func(path string, form url.Values) string {
		resp, err := http.PostForm(app.URL+path, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %d\n%s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	page := post("/admin/devices", url.Values{"device": {"pump-7"}})
	m := regexp.MustCompile(`data-testid="new-device-secret"[\s\S]*?<code class="secret-value">([^<]+)</code>`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the admin page shows no secret for pump-7:\n%s", page)
	}
	connect := func(password string) error {
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + brokerAddr).SetClientID("pump-7").
			SetUsername("pump-7").SetPassword(password).SetConnectRetry(false).SetAutoReconnect(false))
		tok := c.Connect()
		if !tok.WaitTimeout(10 * time.Second) {
			return fmt.Errorf("timed out")
		}
		if tok.Error() == nil {
			c.Disconnect(100)
		}
		return tok.Error()
	}
	if err := connect(m[1]); err != nil {
		t.Fatalf("pump-7 with the secret the admin page showed: %v", err)
	}
	if err := connect("not-the-secret"); err == nil {
		t.Error("pump-7 connected with a wrong secret")
	}
	post("/admin/devices/pump-7/revoke", url.Values{})
	if err := connect(m[1]); err == nil {
		t.Error("pump-7 connected after it was revoked on the admin page")
	}
}
