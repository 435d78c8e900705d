package devices

import "time"

// Credential is what is kept of a device's MQTT credential apart from its
// secret's hash: whose it is and since when. The secret itself is shown
// once, when it is made, and never kept.
type Credential struct {
	Device  string    `json:"device"`
	Created time.Time `json:"created"`
}
