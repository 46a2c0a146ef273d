#!/usr/bin/env bash
# Call rate through Kamailio: SIPp places calls into 100 rooms (r0..r99, one
# after another) at a fixed rate, first against one caucus node directly, then
# through Kamailio (conf/kamailio.cfg) in front of three nodes sharing a Redis
# registry, in the same run, on this machine (nodes on 127.0.1.1-3). Prints
# both rows (calls that succeeded and failed, the rate reached, INVITE->200
# median and p99 in SIPp's whole ms) and the ratio of the two rates reached,
# then how many calls each node answered.
#   benches/cluster-rate.sh [SECONDS] [RATE]      default: 10 s at 1000 calls/s
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rate=${2:-1000}
for c in sipp kamailio redis-server; do
  command -v "$c" >/dev/null || { echo "$c missing: apt-get install -y sip-tester kamailio redis-server" >&2; exit 1; }
done
cargo build --release --quiet
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
base=$(( 10000 + RANDOM % 8000 ))
redis_port=$(( base + 1 ))
kam_port=$(( base + 2 ))
single_port=$(( base + 3 ))
api_base=$(( base + 10 ))
sipp_port=$(( base + 20 ))

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
rooms=$(for k in $(seq 0 99); do printf '[[room]]\nname = "r%d"\nmax_participants = 10000\n' "$k"; done)
node_cfg() { # name, listen ip, sip port, api port, rtp min, cluster section
  cat > "$work/$1.toml" <<EOC
[sip]
listen = "$2:$3"
[rtp]
port_min = $5
port_max = $(( $5 + 9999 ))
[security]
trusted_sources = ["127.0.0.0/8"]
[metrics]
listen = ""
[api]
listen = "127.0.0.1:$4"
token = "cluster-bench-token-0123456789"
[webrtc]
listen = "127.0.0.1:$(( $4 + 100 ))"
$6
$rooms
EOC
}
node_cfg single 127.0.0.1 "$single_port" "$api_base" 20000 ""
RUST_LOG=warn target/release/caucus run --config "$work/single.toml" 2>"$work/single.log" &
pids+=($!)
: > "$work/caucus.list"
for i in 1 2 3; do
  port=$(( base + 3 + i ))
  node_cfg "n$i" "127.0.1.$i" "$port" $(( api_base + i )) $(( 20000 + i * 10000 )) "[cluster]
redis_url = \"redis://127.0.0.1:$redis_port/\"
node_id = \"n$i\"
sip_uri = \"sip:127.0.1.$i:$port\"
api_url = \"http://127.0.0.1:$(( api_base + i ))\""
  RUST_LOG=warn target/release/caucus run --config "$work/n$i.toml" 2>"$work/n$i.log" &
  pids+=($!)
  echo "1 sip:127.0.1.$i:$port" >> "$work/caucus.list"
done
kamailio -DD -E -m 256 -M 16 -f conf/kamailio.cfg -A "LISTEN=udp:127.0.0.1:$kam_port" \
  -A "DS_LIST=\"$work/caucus.list\"" -Y "$work" 2>"$work/kamailio.log" &
pids+=($!)
sleep 2

# the rooms, one per call in turn; the scenario's room from the file
{ echo SEQUENTIAL; for k in $(seq 0 99); do echo "r$k;"; done; } > "$work/rooms.csv"
sed 's/\[service\]/[field0]/g' sipp-scenarios/sip_rate.xml > "$work/sip_rate_rooms.xml"

run() { # label, target
  (cd "$work" && rm -f sip_rate_rooms_*.csv && \
   timeout $(( secs * 4 + 30 )) sipp "$2" -sf sip_rate_rooms.xml -inf rooms.csv \
     -i 127.0.0.1 -p "$sipp_port" -mi 127.0.0.1 -mp $(( sipp_port + 1 )) -r "$rate" -m $(( rate * secs )) \
     -l $(( rate * 2 )) -nostdin -trace_rtt -rtt_freq $(( rate * secs )) -trace_stat -fd $(( secs * 10 )) \
     >"$work/sipp-$1.out" 2>&1) || true
  stat=$(ls "$work"/sip_rate_rooms_*_.csv | head -1)
  rtt=$(ls "$work"/sip_rate_rooms_*_rtt.csv | head -1)
  col() { head -1 "$stat" | tr ';' '\n' | grep -n "^$1\$" | cut -d: -f1; }
  last=$(tail -1 "$stat")
  succ=$(echo "$last" | cut -d';' -f"$(col 'SuccessfulCall(C)')")
  fail=$(echo "$last" | cut -d';' -f"$(col 'FailedCall(C)')")
  elapsed=$(echo "$last" | cut -d';' -f"$(col 'ElapsedTime(C)')" | awk -F: '{print $1*3600+$2*60+$3}')
  reached=$(awk -v n="$succ" -v t="$elapsed" 'BEGIN{ if (t>0) printf "%.0f", n/t; else print 0 }')
  read -r p50 p99 < <(tail -n +2 "$rtt" | cut -d';' -f2 | sort -n | awk '{v[NR]=$1} END{ if(NR==0){print "- -"; exit} i50=int(NR*0.5); if(i50<1)i50=1; i99=int(NR*0.99); if(i99<1)i99=1; print v[i50], v[i99] }')
  printf '%-20s %-8s %-10s %-8s %-8s %-8s %-8s\n' "$1" "$rate" "$succ" "$fail" "$reached" "$p50" "$p99"
  echo "$reached" > "$work/reached-$1"
}
printf '%-20s %-8s %-10s %-8s %-8s %-8s %-8s\n' target rate_cps successful failed reached p50_ms p99_ms
run one-node "127.0.0.1:$single_port"
run kamailio-3-nodes "127.0.0.1:$kam_port"
awk -v a="$(cat "$work/reached-one-node")" -v b="$(cat "$work/reached-kamailio-3-nodes")" \
  'BEGIN{ if (a>0) printf "through Kamailio / direct: %.2f\n", b/a }'
for i in 1 2 3; do
  n=$(curl -s -H "Authorization: Bearer cluster-bench-token-0123456789" \
      "http://127.0.0.1:$(( api_base + i ))/metrics" | awk '/^caucus_calls_answered_total/{print $2}')
  echo "node n$i answered ${n:-?} calls"
done
