#!/usr/bin/env bash
# postvault key ceremony, end to end, non-interactive:
#
#   examples/ceremony.sh OUTDIR
#
# Starts two module daemons (a master and a clone), initializes both, clones
# the master's MKS into the clone by 3-of-5 key custodian shares, checks that
# a key token made on the master opens on the clone with the same key check
# value, rolls the master's MKS over to generation 2 (activate, translate the
# token, delete the old MKS), creates an auditor on each module, exports the
# audit keys and logs, and verifies both logs. Prints "ceremony ok" at the end;
# any failure exits non-zero.
#
# Uses only the postvault binary ($POSTVAULT, else it builds and uses
# target/release/postvault) and files
# under OUTDIR, which must be empty or absent. The daemons' output is kept in
# OUTDIR/master.out and OUTDIR/clone.out. Passwords are random and written to
# OUTDIR/passwords (mode 0600): this is a demonstration, not a production
# ceremony, where each operator types their own.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
if [ -n "${POSTVAULT:-}" ]; then
  PV=$POSTVAULT
else
  # Always (re)build, so the ceremony never runs a stale binary; a no-op when up to date.
  echo "== building postvault (release)"
  (cd "$root" && cargo build --release --locked -p postvault)
  PV=$target/release/postvault
fi

umask 077
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
if [ -n "$(ls -A "$OUT")" ]; then
  echo "$OUT is not empty; give an empty or new directory" >&2
  exit 1
fi
# Only the options below choose the module.
unset POSTVAULT_MODULE_SOCKET POSTVAULT_MODULE_DIR

step() { echo "== $*"; }

pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# start_daemon NAME: serves OUTDIR/NAME on OUTDIR/NAME.sock in the background.
start_daemon() {
  local name=$1 sock=$OUT/$1.sock
  "$PV" module serve --dir "$OUT/$name" --socket "$sock" >"$OUT/$name.out" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 200); do
    [ -S "$sock" ] && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "the $name daemon exited:" >&2
      cat "$OUT/$name.out" >&2
      return 1
    fi
    sleep 0.05
  done
  echo "timed out waiting for $sock" >&2
  return 1
}

PW=$OUT/passwords
mkdir "$PW"
new_password() {
  head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$1"
  echo >>"$1"
}

# on MODULE USER ARGS...: a `postvault module` command on MODULE, logged on as USER.
on() {
  local module=$1 user=$2
  shift 2
  "$PV" module "$@" --socket "$OUT/$module.sock" --as "$user" --password-file "$PW/$module-$user"
}

# kcv_of FILE: the key check value in a token listing.
kcv_of() { awk '$1 == "kcv" { print $2 }' "$1"; }

# active_mks MODULE: the active MKS ID from `module status --json`.
active_mks() {
  "$PV" module status --json --socket "$OUT/$1.sock" |
    grep -o '"active_mks":{"id":"[0-9a-f]*"' | cut -d'"' -f6
}

step "starting the master and clone daemons"
start_daemon master
start_daemon clone
for u in admin so kc1 kc2 kc3 kc4 kc5 auditor; do new_password "$PW/master-$u"; done
for u in admin so kc1 kc2 kc3 auditor; do new_password "$PW/clone-$u"; done

step "initializing the master"
"$PV" module init --master --socket "$OUT/master.sock" \
  --admin "admin=$PW/master-admin" --so "so=$PW/master-so" \
  --kc "kc1=$PW/master-kc1" --kc "kc2=$PW/master-kc2" --kc "kc3=$PW/master-kc3" \
  --kc "kc4=$PW/master-kc4" --kc "kc5=$PW/master-kc5"

step "initializing the clone"
"$PV" module init --clone --socket "$OUT/clone.sock" \
  --admin "admin=$PW/clone-admin" --so "so=$PW/clone-so" \
  --kc "kc1=$PW/clone-kc1" --kc "kc2=$PW/clone-kc2" --kc "kc3=$PW/clone-kc3"
on clone kc1 mks transport-key --out "$OUT/clone-transport-key.hex"

step "exporting 3-of-5 shares of the master's MKS to the clone's transport key"
on master so mks create-shares --count 5 --threshold 3
for i in 1 2 3 4 5; do
  on master "kc$i" mks export-share --transport-key "$OUT/clone-transport-key.hex" \
    --out "$OUT/share-$i.json"
done

step "importing three of the shares on the clone"
i=1
for share in 2 4 5; do
  on clone "kc$i" mks import-share --share "$OUT/share-$share.json"
  i=$((i + 1))
done
on clone so mks combine

master_mks=$(active_mks master)
clone_mks=$(active_mks clone)
if [ -z "$master_mks" ] || [ "$master_mks" != "$clone_mks" ]; then
  echo "active MKS differ: master '$master_mks', clone '$clone_mks'" >&2
  exit 1
fi
echo "both modules hold MKS $master_mks"

step "a key token made on the master opens on the clone"
on master so token create --type aes256 --usage general --identity ceremony/demo-key \
  --out "$OUT/token.json" | tee "$OUT/token-master.txt"
on clone so token check --token "$OUT/token.json" | tee "$OUT/token-clone.txt"
kcv=$(kcv_of "$OUT/token-master.txt")
if [ -z "$kcv" ] || [ "$kcv" != "$(kcv_of "$OUT/token-clone.txt")" ]; then
  echo "key check values differ between master and clone" >&2
  exit 1
fi

step "rolling the master's MKS over to generation 2"
on master so mks generate
on master so mks activate
on master so mks translate --token "$OUT/token.json" --out "$OUT/token-gen2.json" >/dev/null
on master so token check --token "$OUT/token-gen2.json" | tee "$OUT/token-gen2.txt"
if [ "$kcv" != "$(kcv_of "$OUT/token-gen2.txt")" ]; then
  echo "the translated token holds another key" >&2
  exit 1
fi
on master so mks delete-dormant

for module in master clone; do
  step "auditing the $module"
  on "$module" so admin begin
  on "$module" admin user create --user auditor --role auditor \
    --new-password-file "$PW/$module-auditor"
  on "$module" so admin end
  on "$module" auditor audit-key --out "$OUT/$module-audit-key.pem"
  # A signed entry pins down every entry before it (no unsigned tail).
  "$PV" module audit-entry --socket "$OUT/$module.sock" --note "audit log exported" --sign
  "$PV" module audit-log --dir "$OUT/$module" --out "$OUT/$module-audit.log"
  "$PV" audit verify --log "$OUT/$module-audit.log" --key "$OUT/$module-audit-key.pem"
done

echo "ceremony ok"
