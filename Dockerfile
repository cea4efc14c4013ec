# spix-dsr: slim, non-root. At every start: migrate (under a lock: replicas may start together),
# bootstrap (first admin key, seed on an empty registry: both only when asked), then serve.
# The same image runs the worker (webhook deliveries and scheduled work) with another command:
#   docker run --env-file spix.env IMAGE spix-dsr worker
# Run one or more workers beside the API processes against the same PostgreSQL (they share the
# work); on the SQLite default run exactly one. SIGTERM (docker stop) lets a worker finish the
# deliveries in hand.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY migrations ./migrations
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 spix
COPY --from=build /install /usr/local
USER spix
WORKDIR /home/spix
ENV SPIX_DSR_ENV=production \
    PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'))"
CMD ["sh", "-c", "spix-dsr migrate && spix-dsr bootstrap && exec spix-dsr serve --host 0.0.0.0 --port \"${PORT:-8000}\""]
