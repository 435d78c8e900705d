package ingest

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
)

// DeadLetters is a file of the messages the store refused as invalid, one
// JSON object a line ({"time","topic","payload","error"}), each synced to
// disk before the message is acknowledged: a message the broker was told is
// received either is stored or is here.
type DeadLetters struct {
	mu   sync.Mutex
	f    *os.File
	path string
}

// OpenDeadLetters opens (creating if need be) the dead-letter file at path
// for appending, readable by its owner only.
func OpenDeadLetters(path string) (*DeadLetters, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the dead-letter file: %w", err)
	}
	return &DeadLetters{f: f, path: path}, nil
}

// Path is the file's path ("" for a nil DeadLetters).
func (d *DeadLetters) Path() string {
	if d == nil {
		return ""
	}
	return d.path
}

// Keep appends one message and syncs the file. A nil DeadLetters keeps
// nothing and says so.
func (d *DeadLetters) Keep(topic string, payload []byte, cause error) error {
	if d == nil {
		return fmt.Errorf("no dead-letter file is configured")
	}
	line, err := json.Marshal(struct {
		Time    string `json:"time"`
		Topic   string `json:"topic"`
		Payload string `json:"payload"`
		Error   string `json:"error"`
	}{time.Now().UTC().Format(time.RFC3339Nano), topic, string(payload), cause.Error()})
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.f.Write(append(line, '\n')); err != nil {
		return err
	}
	return d.f.Sync()
}

// Close closes the file.
func (d *DeadLetters) Close() error {
	if d == nil {
		return nil
	}
	return d.f.Close()
}
