#!/usr/bin/env bash
# A cluster on one machine, in one command: Redis, three caucus nodes on
# 127.0.1.1-3 sharing its room registry, and Kamailio (conf/kamailio.cfg) in
# front of them on 127.0.0.1:5070. Prints how to dial in; Ctrl-C stops it all.
#   tests/cluster-demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for c in kamailio redis-server; do
  command -v "$c" >/dev/null || { echo "$c missing: apt-get install -y kamailio redis-server" >&2; exit 1; }
done
cargo build --release --quiet
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT INT TERM
token=demo-cluster-token-0123456789
redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
: > "$work/caucus.list"
for i in 1 2 3; do
  cat > "$work/n$i.toml" <<EOC
[sip]
listen = "127.0.1.$i:5060"
[rtp]
port_min = $(( 20000 + i * 2000 ))
port_max = $(( 21999 + i * 2000 ))
[security]
trusted_sources = ["127.0.0.0/8"]
hide_rooms = false
[metrics]
listen = ""
[api]
listen = "127.0.0.1:$(( 8080 + i ))"
token = "$token"
[webrtc]
listen = "127.0.0.1:$(( 20443 + i ))"
[cluster]
redis_url = "redis://127.0.0.1:6390/"
node_id = "node$i"
sip_uri = "sip:127.0.1.$i:5060"
api_url = "http://127.0.0.1:$(( 8080 + i ))"
[[room]]
name = "demo"
[[room]]
name = "sales"
[[room]]
name = "board"
pin = "1234"
EOC
  target/release/caucus run --config "$work/n$i.toml" 2>"$work/n$i.log" &
  pids+=($!)
  echo "1 sip:127.0.1.$i:5060" >> "$work/caucus.list"
done
kamailio -DD -E -m 256 -M 16 -f conf/kamailio.cfg -A "LISTEN=udp:127.0.0.1:5070" \
  -A "DS_LIST=\"$work/caucus.list\"" -Y "$work" 2>"$work/kamailio.log" &
pids+=($!)
sleep 2
cat <<EOT
A cluster is up: Kamailio on 127.0.0.1:5070 in front of three caucus nodes
(127.0.1.1-3:5060), rooms placed by Redis on 127.0.0.1:6390.

Dial in (any SIP phone or softphone on this machine):
  sip:demo@127.0.0.1:5070     sip:sales@127.0.0.1:5070     sip:board@127.0.0.1:5070 (PIN 1234)
for example with SIPp:  sipp -sf sipp-scenarios/sip_rate.xml -s demo 127.0.0.1:5070 -m 1
See every room of the cluster, with the node holding it, from any node:
  curl -H "Authorization: Bearer $token" http://127.0.0.1:8081/v1/rooms
Logs in $work. Ctrl-C stops everything.
EOT
wait
