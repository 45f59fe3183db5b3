#!/usr/bin/env bash
# Chaos on the real deployment: the compose alliance (alice, bob, carol, risk compute nodes
# s0 and s1; alice is the audit sequencer, carol the training dealer) driven through
# `docker kill`, `docker pause`, `docker network disconnect` and `docker restart` of a
# member in the middle of a PSI, a training job and a burst of risk queries.
#
# The sequencer alice is then killed during risk queries by bob: bob takes over (a view
# change), answers go on, and alice follows the new view when she is back.
#
# Asserted for every fault: the job fails within 15 s of the fault with a message naming
# the member, and leaves no output file; after the member is back, the same job succeeds
# with the right result. Risk queries: no answer differs from the plaintext sums, every
# answered query has its audit entry. Afterwards the audit chain verifies at every member.
# Prints a table of time to detect and time to recover (BENCHMARKS.md "Chaos").
#
#   scripts/compose-chaos.sh                # builds the image first (scripts/build-image.sh)
#   CHAOS_SKIP_BUILD=1 scripts/compose-chaos.sh   # reuse confide:local
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -n "${CHAOS_SKIP_BUILD:-}" ]] || scripts/build-image.sh
project="confide-chaos-$$"
source scripts/compose-lib.sh
work=$(mktemp -d)
trap 'cleanup; rm -rf "$work"' EXIT
N=${CHAOS_IDS:-200000}
DETECT_LIMIT=15
fail() { echo "compose chaos: FAILED: $*" >&2; compose ps >&2 || true; exit 1; }
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }
results=()

compose up -d 2>&1 | tail -n 2
wait_healthy 90 alice bob carol s0 s1

# ---- data: ID sets for PSI, split credit columns for training, loans for risk ----------
python3 - "$work" "$N" <<'PY'
import json, random, sys
work, n = sys.argv[1], int(sys.argv[2])
def write(name, header, rows):
    with open(f"{work}/{name}", "w") as f:
        f.write(header + "\n")
        f.writelines(",".join(map(str, r)) + "\n" for r in rows)
write("alice-ids.csv", "id", ([f"c{i:08d}"] for i in range(n)))
write("bob-ids.csv", "id", ([f"c{i:08d}"] for i in range(n // 2, n // 2 + n)))
rng = random.Random(7)
rows = 4000
xa = [[round(rng.gauss(0, 1), 4) for _ in range(3)] for _ in range(rows)]
xb = [[round(rng.gauss(0, 1), 4) for _ in range(3)] for _ in range(rows)]
label = [int(a[0] + b[0] + rng.gauss(0, 1) > 0) for a, b in zip(xa, xb)]
write("alice-credit.csv", "id,default,a1,a2,a3", ([f"r{i}", label[i], *xa[i]] for i in range(rows)))
write("bob-credit.csv", "id,b1,b2,b3", ([f"r{i}", *xb[i]] for i in range(rows)))
expected = {}
for k, p in enumerate(["alice", "bob", "carol"]):
    recs = []
    for i in range(k * 100, k * 100 + 200):
        h = (i * 7 + k * 13) % 97
        r = [int(h % 11 == 0), 1 + h % 3, (1 + h) * 1000, h % 2]
        recs.append([f"A{i:05d}", *r])
        e = expected.setdefault(f"A{i:05d}", [0, 0, 0, 0])
        for j in range(4):
            e[j] += r[j]
    write(f"{p}-loans.csv", "applicant,blacklisted,loans,amount,overdue", recs)
json.dump(expected, open(f"{work}/expected.json", "w"))
PY

# put FILE PARTY NAME: copies a file into PARTY's directory of the alliance volume.
put() { docker cp -q "$1" "$(cid "$2"):/alliance/$2/$3"; }
# dataset PARTY NAME FILE ID_COLUMN ALLOW: copies the file and declares the dataset.
dataset() {
  put "$work/$3" "$1" "$3"
  printf '\n[datasets.%s]\npath = "/alliance/%s/%s"\nid_column = "%s"\nallow = %s\n' \
    "$2" "$1" "$3" "$4" "$5" >>"$work/$1.toml"
}
for p in alice bob carol; do docker cp -q "$(cid "$p"):/alliance/$p/party.toml" "$work/$p.toml"; done
dataset alice ids alice-ids.csv id '{ psi = ["bob"] }'
dataset bob ids bob-ids.csv id '{ psi = ["alice"] }'
dataset alice credit alice-credit.csv id '{ train = ["bob"] }'
dataset bob credit bob-credit.csv id '{ train = ["alice"] }'
for p in alice bob carol; do
  dataset "$p" loans "$p-loans.csv" applicant '{ risk = ["s0", "s1"] }'
  put "$work/$p.toml" "$p" party.toml
done
compose restart alice bob carol >/dev/null 2>&1
wait_healthy 60 alice bob carol s0 s1

exists() { docker cp -q "$(cid "$1"):$2" "$work/probe" >/dev/null 2>&1; }
run_at() { local p=$1; shift; compose exec -T "$p" /confide "$@" --config "/alliance/$p/party.toml" </dev/null; }
psi_job() { run_at alice psi --dataset ids --peer bob:ids --output "/alliance/alice/$1" "${@:2}"; }
# The faults hit an ECDH PSI: it runs long enough to be hit mid-job (KKRT, the two-party
# default, intersects 200,000 × 200,000 in under a second).
psi_ecdh() { psi_job "$1" --protocol ecdh; }
train_job() {
  run_at alice train --dataset credit --peer bob:credit --label default \
    --output "/alliance/alice/$1" --optimizer sgd --learning-rate 0.001 --epochs 100000 \
    --tolerance 0 --batch-size 64
}

# fault NAME JOB OUT FAULT UNDO VICTIM: starts JOB (writing OUT at alice), waits until it
# computes, applies FAULT to VICTIM, and asserts that JOB fails within DETECT_LIMIT s naming
# VICTIM, with no OUT. Then UNDO, waits for the alliance, and records the times.
fault() {
  local name=$1 job=$2 out=$3 fault=$4 undo=$5 victim=$6
  "$job" "$out" >"$work/$name.out" 2>"$work/$name.err" &
  local pid=$!
  sleep "${WARMUP:-4}"
  kill -0 "$pid" 2>/dev/null || fail "$name: the job ended before the fault: $(cat "$work/$name.err")"
  local t0; t0=$(now)
  eval "$fault" >/dev/null
  local rc=0
  wait "$pid" || rc=$?
  local t1; t1=$(now)
  local detect; detect=$(secs "$t0" "$t1")
  (( rc != 0 )) || fail "$name: the job succeeded despite the fault"
  python3 -c "import sys; sys.exit(float(sys.argv[1]) > float(sys.argv[2]))" "$detect" "$DETECT_LIMIT" \
    || fail "$name: failure took $detect s (limit $DETECT_LIMIT s)"
  grep -q "$victim" "$work/$name.err" || fail "$name: the error does not name $victim: $(tail -2 "$work/$name.err")"
  exists alice "/alliance/alice/$out" && fail "$name: a partial output file was left"
  eval "$undo" >/dev/null
  wait_healthy 60 alice bob carol s0 s1
  local t2; t2=$(now)
  local msg; msg=$(grep -m1 '^error' "$work/$name.err" | cut -c1-110)
  echo "$name: failed after $detect s: $msg"
  results+=("| $name | $detect s | $(secs "$t0" "$t2") s | $msg |")
}

vic() { cid "$1"; }
# `docker pause` can fail to freeze a busy cgroup ("unable to freeze"): try again.
pause() { for _ in 1 2 3 4 5; do docker pause "$1" && return 0; sleep 0.3; done; return 1; }
net="${project}_default"
WARMUP=4 fault "PSI, docker kill bob" psi_ecdh k.csv 'docker kill $(vic bob)' 'compose start bob' bob
WARMUP=4 fault "PSI, docker pause bob" psi_ecdh p.csv 'pause $(vic bob)' 'docker unpause $(vic bob)' bob
WARMUP=4 fault "PSI, network disconnect bob" psi_ecdh n.csv 'docker network disconnect $net $(vic bob)' \
  'docker network connect --alias bob $net $(vic bob)' bob
WARMUP=4 fault "PSI, docker restart bob" psi_ecdh r.csv 'docker restart -t 0 $(vic bob)' 'true' bob
WARMUP=6 fault "training, docker kill carol (dealer)" train_job m.json 'docker kill $(vic carol)' \
  'compose start carol' carol

# After every fault, the same PSI completes with the right intersection, on both protocols.
for proto in kkrt ecdh; do
  t=$(now)
  psi_job "ok-$proto.csv" --protocol "$proto" >/dev/null 2>"$work/ok.err" \
    || fail "PSI ($proto) after the faults: $(tail -2 "$work/ok.err")"
  docker cp -q "$(cid alice):/alliance/alice/ok-$proto.csv" "$work/ok.csv"
  got=$(($(wc -l <"$work/ok.csv") - 1))
  (( got == N / 2 )) || fail "PSI ($proto) after the faults: $got IDs, expected $((N / 2))"
  echo "PSI ($proto) after the faults: $got IDs in $(secs "$t" "$(now)") s (expected $((N / 2)))"
done

# ---- risk: ingest, then a burst of queries while a compute node restarts ---------------
for p in alice bob carol; do run_at "$p" risk ingest --dataset loans >/dev/null; done
python3 - "$work/expected.json" >"$work/queries" <<'PY'
import json, sys
ids = sorted(json.load(open(sys.argv[1])))
print("\n".join(ids[i] for i in range(0, len(ids), 7)[:40]))
PY
# check_answer JSON: a risk answer must equal the plaintext sums.
check_answer() {
  python3 - "$work/expected.json" "$1" <<'PY' || fail "risk answer differs from the plaintext sums: $1"
import json, sys
exp = json.load(open(sys.argv[1]))
a = json.loads(sys.argv[2])
want = exp.get(a["id"], [0, 0, 0, 0])
got = [a["blacklisted"], a["loans"], a["amount"], a["overdue"]]
sys.exit(got != want)
PY
}
answered=0 refused=0 t_fault="" t_back=""
i=0
while read -r id; do
  i=$((i + 1))
  if (( i == 10 )); then t_fault=$(now); docker restart -t 0 "$(vic s1)" >/dev/null & fi
  if out=$(run_at alice risk query --id "$id" 2>"$work/q.err"); then
    answered=$((answered + 1))
    [[ -n "$t_fault" && -z "$t_back" && $i -gt 10 ]] && t_back=$(now)
    check_answer "$out"
  else
    refused=$((refused + 1))
    grep -q "s1" "$work/q.err" || fail "risk query failed without naming s1: $(tail -1 "$work/q.err")"
  fi
done <"$work/queries"
wait
(( answered > 0 )) || fail "no risk query was answered"
echo "risk burst: $answered answered (every one equal to the plaintext sums), $refused failed naming s1 while it restarted"
[[ -n "$t_back" ]] && results+=("| risk queries, docker restart s1 | $refused queries failed | $(secs "$t_fault" "$t_back") s | answered again, sums exact |")

# Every answered query has its audit entry.
entries=$(run_at alice audit log | awk '$3 == "alice" && $4 == "risk-query"' | wc -l)
(( entries >= answered )) || fail "$answered answered risk queries but $entries risk-query audit entries"

# ---- the audit sequencer (alice) killed in the middle of risk queries by bob ------------
# bob, next in genesis order, takes over (a view change); the queries go on being logged
# and answered; alice, back, follows the new view.
b_answered=0 b_failed=0 t_kill="" t_first=""
i=0
while read -r id; do
  i=$((i + 1))
  (( i <= 20 )) || break
  if (( i == 5 )); then t_kill=$(now); docker kill "$(vic alice)" >/dev/null; fi
  if out=$(run_at bob risk query --id "$id" 2>"$work/q.err"); then
    b_answered=$((b_answered + 1))
    [[ -n "$t_kill" && -z "$t_first" ]] && t_first=$(now)
    check_answer "$out"
  else
    b_failed=$((b_failed + 1))
    echo "risk query during the sequencer kill failed: $(tail -1 "$work/q.err")"
  fi
done <"$work/queries"
[[ -n "$t_first" ]] || fail "no risk query was answered after the sequencer was killed"
takeover=$(secs "$t_kill" "$t_first")
# The takeover itself (3 s append timeout, then the votes) plus the new sequencer's first
# replication round, which waits up to 5 s for the dead member: within DETECT_LIMIT.
python3 -c "import sys; sys.exit(float(sys.argv[1]) > float(sys.argv[2]))" "$takeover" "$DETECT_LIMIT" \
  || fail "the first answer after the sequencer was killed took $takeover s (limit $DETECT_LIMIT s)"
# audit_line PARTY: the `audit store:` line of PARTY's status (status may exit 1 while a
# member is down).
audit_line() { { run_at "$1" status 2>&1 || true; } | grep 'audit store' || true; }
[[ "$(audit_line bob)" == *'sequencer `bob`'* ]] || fail "bob did not take over: $(audit_line bob)"
compose start alice >/dev/null 2>&1
wait_healthy 60 alice bob carol s0 s1
for _ in $(seq 60); do [[ "$(audit_line alice)" == *'sequencer `bob`'* ]] && break; sleep 0.5; done
[[ "$(audit_line alice)" == *'sequencer `bob`'* ]] || fail "alice does not follow bob's view: $(audit_line alice)"
# alice's first call to bob ends the backoff bob kept her in: she catches up at once
# (allow 10 s for the containers' scheduling).
b_entries=0
for _ in $(seq 20); do
  b_entries=$(run_at alice audit log | awk '$3 == "bob" && $4 == "risk-query"' | wc -l)
  (( b_entries >= b_answered )) && break
  sleep 0.5
done
(( b_entries >= b_answered )) || fail "$b_answered answered queries by bob but $b_entries entries at alice 10 s after she followed bob's view"
echo "sequencer killed: bob took over; first answer $takeover s after the kill; $b_answered answered (sums exact), $b_failed failed; alice follows the new view"
results+=("| risk queries, docker kill alice (audit sequencer) | $b_failed queries failed | $takeover s (first answer) | bob took over, sums exact |")
sleep 3
for p in alice bob carol s0 s1; do
  run_at "$p" audit verify >/dev/null 2>"$work/v.err" || fail "audit verify at $p: $(cat "$work/v.err")"
done
echo "audit: $entries risk-query entries by alice for $answered answers; the chain verifies at every member"
echo
echo "| fault | detected (fault → job failed) | recovered (fault → alliance healthy) | message |"
echo "|---|---|---|---|"
printf '%s\n' "${results[@]}"
echo "compose chaos: passed"
