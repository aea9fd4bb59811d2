#!/usr/bin/env bash
# Install the Prometheus server binary (Debian package `prometheus`) when it is missing.
#
# Why: `perflib serve --prometheus` and the tests of the `process` sampler run a real
# Prometheus locally. Idempotent: does nothing when a binary is already there
# ($PROMETHEUS_BINARY or `prometheus` on PATH). We only want the binary, so the package's
# own daemon (which would listen on :9090) is kept from starting, or stopped and disabled.
# Exit codes: 0 installed or already present, 1 cannot install here (message says why).
set -euo pipefail

say() { printf 'install_prometheus: %s\n' "$*" >&2; }

if [[ -n "${PROMETHEUS_BINARY:-}" && -x "${PROMETHEUS_BINARY}" ]]; then
  say "using PROMETHEUS_BINARY=${PROMETHEUS_BINARY}"
  exit 0
fi
if command -v prometheus >/dev/null 2>&1; then
  say "already installed: $(command -v prometheus)"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  say "no apt-get on this system: install Prometheus yourself (https://prometheus.io/download/)"
  say "and put it on PATH or set PROMETHEUS_BINARY=/path/to/prometheus"
  exit 1
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    say "not root and no password-less sudo: run 'sudo apt-get install -y prometheus'"
    say "or set PROMETHEUS_BINARY=/path/to/prometheus"
    exit 1
  fi
fi

# Keep the package's service from starting during the install (Debian's policy-rc.d
# convention: exit 101 = "action forbidden"). Only our own file is removed afterwards.
POLICY=/usr/sbin/policy-rc.d
OWN_POLICY=0
if [[ ! -e "$POLICY" ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 755 "$POLICY"
  OWN_POLICY=1
fi
cleanup() { if [[ "$OWN_POLICY" -eq 1 ]]; then "${SUDO[@]}" rm -f "$POLICY"; fi; }
trap cleanup EXIT

say "installing the Debian package 'prometheus' (binary only)..."
export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" apt-get install -y -q --no-install-recommends prometheus >/dev/null; then
  say "apt-get install failed; refreshing the package lists and retrying once"
  "${SUDO[@]}" apt-get update -q >/dev/null
  if ! "${SUDO[@]}" apt-get install -y -q --no-install-recommends prometheus >/dev/null; then
    # A postinst that needs systemd can fail in a container while the binary is in place.
    if [[ -x /usr/bin/prometheus ]]; then
      say "package configuration failed but /usr/bin/prometheus is installed; continuing"
    else
      say "apt-get could not install prometheus; see the apt output above"
      exit 1
    fi
  fi
fi

# Never leave the packaged daemon running on :9090 (it would clash with other users of it).
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  "${SUDO[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
elif command -v service >/dev/null 2>&1; then
  "${SUDO[@]}" service prometheus stop >/dev/null 2>&1 || true
fi

BIN="$(command -v prometheus || echo /usr/bin/prometheus)"
if [[ ! -x "$BIN" ]]; then
  say "installation finished but no prometheus binary was found"
  exit 1
fi
say "installed: $BIN ($("$BIN" --version 2>&1 | head -n1))"
