# The lead-enrichment API for Fly.io: `python -m service` on port 8080.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY perflib ./perflib
COPY service ./service
# Only the service's own pinned dependencies (pyproject's versions), not the lab's
# (pandas, matplotlib, k6, ...): a small image and a small memory footprint on Fly.
RUN python -c "import re, tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
keep = {'fastapi', 'starlette', 'uvicorn', 'uvloop', 'httptools', 'sqlalchemy', 'aiosqlite', \
        'asyncpg', 'alembic', 'httpx', 'pydantic', 'pydantic-settings', 'prometheus-client', \
        'orjson'}; \
print('\n'.join(d for d in deps if re.split(r'[\[=<>!~ ]', d, maxsplit=1)[0].lower() in keep))" \
    > /tmp/service-requirements.txt \
    && python -m venv /venv \
    && /venv/bin/pip install -r /tmp/service-requirements.txt \
    && /venv/bin/pip install --no-deps . \
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
