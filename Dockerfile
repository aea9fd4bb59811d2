# The lead-enrichment API for Fly.io: `python -m service` on port 8080.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY perflib ./perflib
COPY service ./service
# The whole project installs (one pyproject), the service only imports its own dependencies.
RUN python -m venv /venv && /venv/bin/pip install --no-compile . \
    && /venv/bin/python -m compileall -q /venv/lib/python3.11/site-packages/service

FROM python:3.11-slim
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=8080 \
    DATABASE_URL=sqlite+aiosqlite:////data/c2s.db
COPY --from=build /venv /venv
RUN useradd --system --uid 10001 app && mkdir -p /data && chown app /data
USER app
WORKDIR /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s \
    CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\",\"8080\")}/health', timeout=4)"
CMD ["python", "-m", "service", "--port", "8080"]
