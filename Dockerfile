# syntax=docker/dockerfile:1
# The connector's image: one image, every Procfile process (docs/deploy.md, "Container image").
#   docker build -t zoho-concur-connector .
#   docker run --env-file .env zoho-concur-connector web      # or worker, beat, flower, release
# The entrypoint runs the named Procfile line verbatim (scripts/procfile-run).

# --- build: the dependencies into a virtualenv (all of them ship manylinux wheels, so no compiler)
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY connector ./connector
COPY mappings ./mappings
COPY tasks ./tasks
COPY webhooks ./webhooks
COPY sandbox ./sandbox
COPY celeryconfig.py ./
RUN python -m venv /opt/venv && /opt/venv/bin/pip install .

# --- runtime: the virtualenv, the source tree (migrations, Procfile, celeryconfig) and a user
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CONNECTOR_VAR_DIR=/var/lib/connector \
    PORT=5000
# Nobody runs as root: the app files stay root-owned and read-only for the process; it writes
# only to CONNECTOR_VAR_DIR (beat's schedule, downloaded keys) and its home (gunicorn's control
# socket goes to ~/.gunicorn).
RUN useradd --system --uid 10001 --create-home --home-dir /home/connector \
        --shell /usr/sbin/nologin connector \
    && install -d -o connector -g connector -m 0750 /var/lib/connector
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY . /app
USER connector
EXPOSE 5000 5555
ENTRYPOINT ["/app/scripts/procfile-run"]
CMD ["web"]
