"""Making a run: the local stack (``stack``), the emulated Fly VM (``vm``) and ``perflib run``
(``runner``: target, k6, samplers → run directory)."""
