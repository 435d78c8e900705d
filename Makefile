# iotdash: `make run` starts the product self-contained; `make test` installs
# what the tests need (Mosquitto, Chromium, InfluxDB 1.8.10) and runs them all,
# after go vet and staticcheck (pinned as a tool in go.mod).
SHELL := /bin/bash
GO ?= go

.PHONY: run test generate bench bench-peers bench-live fuzz

run:
	$(GO) run ./cmd/iotdash

# Regenerates the templ components; the generated *_templ.go files are committed.
generate:
	cd views && $(GO) tool templ generate

test:
	@deps="$$(scripts/test-deps.sh)" && eval "$$deps" && \
	  $(GO) vet ./... && \
	  $(GO) tool staticcheck ./... && \
	  $(GO) test -count=1 -timeout 12m ./... && \
	  $(GO) test -count=1 -run '^$$' -fuzz '^FuzzDecodeTelemetry$$' -fuzztime 15s ./ingest && \
	  $(GO) test -count=1 -run '^$$' -fuzz '^FuzzParseTopic$$' -fuzztime 10s ./ingest && \
	  $(GO) test -count=1 -run '^$$' -fuzz '^FuzzReadPacket$$' -fuzztime 10s ./internal/mqttsub

bench:
	@deps="$$(scripts/test-deps.sh)" && eval "$$deps" && \
	  $(GO) test -run '^$$' -bench . -benchmem ./...

# Telegraf beside iotdash on the same MQTT load into InfluxDB: CPU per
# message and time until stored (scripts/bench-peers.sh; a few minutes).
bench-peers:
	@scripts/bench-peers.sh

# Live push from the browser's side against the built binary and a real
# Mosquitto (scripts/bench-live.sh); not part of `make test`.
bench-live:
	scripts/bench-live.sh
