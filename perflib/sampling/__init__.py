"""Resource samples during a run: the sampler interface and the local psutil source
(``local``), Prometheus and Fly sources (``remote``), the Prometheus client and a local
Prometheus server (``prometheus``)."""
