#!/usr/bin/env bash
# Runs every postvault test on a fresh machine, installing what the tests need
# first and saying what it does. Nothing is skipped: a missing dependency is
# installed or the run fails. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "error: need root (or sudo) to run: $*" >&2; exit 1
  fi
}

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

say "checking the Rust toolchain"
if ! command -v cargo >/dev/null; then
  echo "error: cargo not found; install Rust from https://rustup.rs and re-run" >&2
  exit 1
fi
cargo --version

say "checking SoftHSM2 (PKCS#11 token for the seal-provider tests)"
softhsm_lib=""
for p in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so; do
  if [ -e "$p" ]; then softhsm_lib="$p"; break; fi
done
if [ -z "$softhsm_lib" ]; then
  echo "SoftHSM2 is not installed: installing the Debian package softhsm2"
  apt_install softhsm2
  softhsm_lib=/usr/lib/softhsm/libsofthsm2.so
fi
echo "using $softhsm_lib"

say "checking openssl (independent cross-checks of our PEM and certificates)"
if ! command -v openssl >/dev/null; then
  echo "openssl is not installed: installing the Debian package openssl"
  apt_install openssl
fi
openssl version

say "checking independent barcode and PDF tools (the label tests read our labels with libdmtx and poppler)"
missing=""
command -v dmtxread >/dev/null || missing="$missing dmtx-utils"
{ command -v pdftoppm >/dev/null && command -v pdfinfo >/dev/null && command -v pdftotext >/dev/null; } || missing="$missing poppler-utils"
if [ -n "$missing" ]; then
  echo "installing the Debian packages:$missing"
  # shellcheck disable=SC2086
  apt_install $missing
fi
command -v dmtxread pdftoppm

say "checking PostgreSQL server binaries (the store tests start their own throwaway cluster)"
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "PostgreSQL is not installed: installing the Debian package postgresql (no default cluster is created)"
  as_root mkdir -p /etc/postgresql-common
  [ -e /etc/postgresql-common/createcluster.conf ] || echo 'create_main_cluster = false' | as_root tee /etc/postgresql-common/createcluster.conf >/dev/null
  apt_install postgresql
fi
if command -v initdb >/dev/null; then command -v initdb; else ls /usr/lib/postgresql/*/bin/initdb; fi
if [ "$(id -u)" -eq 0 ]; then
  command -v setpriv >/dev/null || { echo "error: setpriv (util-linux) is needed to run PostgreSQL as nobody" >&2; exit 1; }
  echo "running as root: the test clusters run as the user nobody (initdb refuses root)"
fi

say "cargo fmt --check"
cargo fmt --all --check

say "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

say "building the postvault binary (release) for the end-to-end tests"
cargo build --release --locked -p postvault
export POSTVAULT="${CARGO_TARGET_DIR:-$PWD/target}/release/postvault"

say "cargo test (all crates, every test; none is ignored)"
cargo test --workspace --locked -- --include-ignored

say "all tests passed"
