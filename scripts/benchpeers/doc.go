// Package benchpeers holds the peer benchmark: the same MQTT load through
// Telegraf (mqtt_consumer → influxdb_v2) and through iotdash (-mqtt …
// -influx-url …), one after the other against a real Mosquitto and
// InfluxDB 1.8, with each consumer's CPU per message and the time until
// InfluxDB holds every message. It is a test gated by IOTDASH_TELEGRAF, run
// by scripts/bench-peers.sh (`make bench-peers`), not by `make test`. It
// holds no code of the product.
package benchpeers
