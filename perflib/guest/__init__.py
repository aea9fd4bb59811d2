"""A real Linux guest for the memory answer: the service under its own kernel in QEMU.

``setup`` installs QEMU and builds the guest's kernel and initramfs, ``boot`` starts a
guest with exactly a preset's RAM and vCPUs, ``control`` talks to the agent inside it over
a 9p share, ``runner`` plugs a guest into a run in place of the process emulation, and
``calibrate`` measures what each size leaves for the app. See docs/guest.md.
"""

from __future__ import annotations
