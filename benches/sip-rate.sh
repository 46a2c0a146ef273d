#!/usr/bin/env bash
# SIP call rate: SIPp sets up and tears down calls into room "demo" at fixed rates
# (sipp-scenarios/sip_rate.xml: INVITE, 200, ACK, BYE, 200) against the release
# bridge; prints, per rate, the calls that succeeded and failed, the rate reached and
# the INVITE->200 response time (median, p99, max; SIPp measures in whole ms).
#   benches/sip-rate.sh [SECONDS_PER_RATE] [RATE ...]      default: 10 s, 500 1000 2000 3000 4000
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; shift || true
rates=${*:-500 1000 2000 3000 4000}
command -v sipp >/dev/null || { echo "sipp missing: apt-get install -y sip-tester" >&2; exit 1; }
cargo build --release --quiet
work=$(mktemp -d)
trap 'kill "$bridge" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
# below the RTP range (20000-60000) so SIPp's own ports never collide with it
port=$(( 10000 + RANDOM % 9000 ))
cat > "$work/caucus.toml" <<EOC
[sip]
listen = "127.0.0.1:$port"
[rtp]
port_min = 20000
port_max = 60000
[security]
trusted_sources = ["127.0.0.0/8"]
[metrics]
listen = ""
[[room]]
name = "demo"
max_participants = 10000
EOC
RUST_LOG=warn target/release/caucus run --config "$work/caucus.toml" 2>"$work/bridge.log" &
bridge=$!
sleep 0.5
printf '%-8s %-10s %-8s %-8s %-8s %-8s %-8s\n' rate_cps successful failed reached p50_ms p99_ms max_ms
for r in $rates; do
  (cd "$work" && rm -f sip_rate_*.csv && \
   timeout $(( secs * 4 + 30 )) sipp "127.0.0.1:$port" -sf "$OLDPWD/sipp-scenarios/sip_rate.xml" -s demo \
     -i 127.0.0.1 -p $(( port + 1 )) -mi 127.0.0.1 -mp $(( port + 2 )) -r "$r" -m $(( r * secs )) \
     -l $(( r * 2 )) -nostdin -trace_rtt -rtt_freq $(( r * secs )) -trace_stat -fd $(( secs * 10 )) \
     >"$work/sipp-$r.out" 2>&1) || true
  stat=$(ls "$work"/sip_rate_*_.csv | head -1)
  rtt=$(ls "$work"/sip_rate_*_rtt.csv | head -1)
  ok=$(head -1 "$stat" | tr ';' '\n' | grep -n '^SuccessfulCall(C)$' | cut -d: -f1)
  fail_col=$(head -1 "$stat" | tr ';' '\n' | grep -n '^FailedCall(C)$' | cut -d: -f1)
  elapsed_col=$(head -1 "$stat" | tr ';' '\n' | grep -n '^ElapsedTime(C)$' | cut -d: -f1)
  last=$(tail -1 "$stat")
  succ=$(echo "$last" | cut -d';' -f"$ok")
  fail=$(echo "$last" | cut -d';' -f"$fail_col")
  elapsed=$(echo "$last" | cut -d';' -f"$elapsed_col" | awk -F: '{print $1*3600+$2*60+$3}')
  reached=$(awk -v n="$succ" -v t="$elapsed" 'BEGIN{ if (t>0) printf "%.0f", n/t; else print 0 }')
  read -r p50 p99 max < <(tail -n +2 "$rtt" | cut -d';' -f2 | sort -n | awk '{v[NR]=$1} END{ if(NR==0){print "- - -"; exit} i50=int(NR*0.5); if(i50<1)i50=1; i99=int(NR*0.99); if(i99<1)i99=1; print v[i50], v[i99], v[NR] }')
  printf '%-8s %-10s %-8s %-8s %-8s %-8s %-8s\n' "$r" "$succ" "$fail" "$reached" "$p50" "$p99" "$max"
done
