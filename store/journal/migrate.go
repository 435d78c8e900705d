package journal

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"strings"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, for the earlier journal

	"iotdash/devices"
)

// Until this log, the journal was a SQLite file (tables readings and
// rejected) at the path where the log's directory now is. Open moves such a
// file aside (to path + migrating) and then its readings, in order, into
// the log, and its rejected readings into RejectedFile, before it deletes
// it. A crash in the middle leaves the file aside, and the next Open moves
// it again: some readings may then be written to the store twice, which it
// takes as an overwrite; none is lost.
const migrating = ".sqlite-migrating"

// setAsideSQLite moves a SQLite journal at path (and its -wal and -shm
// files, the wal first, so that what it holds stays with it) to path +
// migrating, and returns that name if there is one to migrate.
func setAsideSQLite(path string) (string, error) {
	old := path + migrating
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.Mode().IsRegular():
		for _, suffix := range []string{"-wal", "-shm", ""} {
			if err := os.Rename(path+suffix, old+suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
				return "", err
			}
		}
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return "", err
	}
	if _, err := os.Stat(old); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		return "", err
	}
	return old, nil
}

// migrate appends the readings of the SQLite journal at old to j, and keeps
// its rejected readings in RejectedFile, then deletes it.
func (j *Journal) migrate(old string) error {
	if strings.ContainsAny(old, "?#") {
		return devices.Errorf(devices.EInvalid, "path %q must not contain ? or #", old)
	}
	db, err := sql.Open("sqlite", "file:"+old+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	ctx := context.Background()
	var moved, rejected int64
	// Pages of readings by seq, each one record of the log.
	for last := int64(-1 << 62); ; {
		rows, err := db.QueryContext(ctx, "SELECT seq, device, metric, t, v FROM readings WHERE seq > ? ORDER BY seq LIMIT ?", last, flushBatch)
		if err != nil {
			if strings.Contains(err.Error(), "no such table") {
				break
			}
			return err
		}
		var rs []devices.Reading
		for rows.Next() {
			var r devices.Reading
			if err := rows.Scan(&last, &r.Device, &r.Metric, &r.Time, &r.Value); err != nil {
				rows.Close()
				return err
			}
			rs = append(rs, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(rs) == 0 {
			break
		}
		// Unbounded by MaxReadings: these were acknowledged long ago.
		j.mu.Lock()
		err = j.write(rs)
		j.mu.Unlock()
		if err != nil {
			return err
		}
		j.statMu.Lock()
		j.stats.Backlog += int64(len(rs))
		j.statMu.Unlock()
		moved += int64(len(rs))
	}
	rows, err := db.QueryContext(ctx, "SELECT device, metric, t, v, error FROM rejected ORDER BY id")
	if err == nil {
		byError := map[string][]devices.Reading{}
		var order []string
		for rows.Next() {
			var r devices.Reading
			var why string
			if err := rows.Scan(&r.Device, &r.Metric, &r.Time, &r.Value, &why); err != nil {
				rows.Close()
				return err
			}
			if _, ok := byError[why]; !ok {
				order = append(order, why)
			}
			byError[why] = append(byError[why], r)
			rejected++
		}
		rows.Close()
		for _, why := range order {
			if err := j.setAside(byError[why], errors.New(why)); err != nil {
				return err
			}
		}
	} else if !strings.Contains(err.Error(), "no such table") {
		return err
	}
	db.Close()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(old + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	j.log.Info("moved the earlier SQLite journal into the new log", "readings", moved, "rejected", rejected)
	return nil
}
