"""Local emulators of the service's three upstreams (C2S CRM, Diretrix, Work API).

Each is a FastAPI app built by ``<module>.create_app(profile="nominal", seed=42)`` and run as
its own process with ``python -m service.emulators {c2s|diretrix|work} --port P``; they share
one seeded synthetic dataset (:mod:`service.emulators.dataset`) and fault engine
(:mod:`service.emulators.faults`). See ``docs/emulators.md``.
"""
