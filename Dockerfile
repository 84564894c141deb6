# The executor image: `executor run` by default; `executor sim`, `executor status`,
# `executor publish` and the other commands are one argument away.
#
#   docker build -t executor:0.1.0 .
#   docker run --read-only -e EXECUTOR_REDIS_URL=redis://redis:6379/0 executor:0.1.0

# Both stages use the same interpreter: the venv's python links to /usr/local/bin.
FROM python:3.11.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY executor ./executor

# A wheel, then a venv holding it and its dependencies. pip compiles the .pyc
# files here, because the final image cannot write them at run time.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir /wheels/*.whl


FROM python:3.11.11-slim-bookworm

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="executor" \
      org.opencontainers.image.description="Signal-to-order execution daemon for Bybit V5: Redis stream in, exactly one signed order out." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.11-slim-bookworm"

# Nothing is written at run time, so the root file system can be read-only.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN groupadd --system --gid 10001 executor \
    && useradd --system --uid 10001 --gid executor --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin executor

COPY --from=builder /opt/venv /opt/venv

# `.env` is read from the working directory: mount one at /app/.env if wanted.
WORKDIR /app
USER 10001:10001

EXPOSE 9464
STOPSIGNAL SIGTERM
# /healthz answers from the first second, also while the start-up checks with
# the exchange (clock, keys) are still running.
HEALTHCHECK --interval=15s --timeout=5s --start-period=15s --retries=3 \
    CMD ["executor", "check"]

# Exec form: the daemon is PID 1 and receives SIGTERM itself, then drains.
ENTRYPOINT ["executor"]
CMD ["run"]
