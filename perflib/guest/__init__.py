"""A real Linux guest for the memory answer: the service under its own kernel in QEMU.

``setup`` installs QEMU and builds the guest's kernel and initramfs, ``boot`` starts a
guest with exactly a preset's RAM and vCPUs, ``control`` turns what the agent inside it
reports over a 9p share into samples and events, ``isolation`` plugs a guest into a run in
place of the process emulation, ``calibrate`` measures what each size leaves for the app and
``calibration`` reads that table for the process emulation. See docs/guest.md.
"""

from __future__ import annotations
