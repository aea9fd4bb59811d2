#!/usr/bin/env bash
# Installs QEMU, busybox and cpio from Debian and builds the guest kernel + initramfs in
# ~/.cache/perflib/guest (or $PERFLIB_GUEST_DIR). Exit codes: 0 ready, 3 cannot install
# (not root, apt failed, no package), 4 the kernel or initramfs cannot be built.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
exec env PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m perflib.guest.setup "$@"
