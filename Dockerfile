# One image for every Claimflow service (see docker-compose.yml): the `claims` CLI.
#
#   docker build -t claimflow .
#   docker run --rm -e CLAIMS_KAFKA_BOOTSTRAP=host:9092 claimflow topics apply
#
# Not built in CI here (no Docker engine on our machines).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# .dockerignore keeps out the venv, git, caches, faust data dirs and tests.
COPY . .
# Every dependency ships a manylinux wheel for CPython 3.11 except avro-python3
# (pure-Python sdist): no compiler needed.
RUN pip install . \
    && useradd --create-home --uid 10001 claims

# A non-editable install puts the package in site-packages, where engine/settings.py
# would look for topics.yaml and schemas/; they are not package data, so point at
# this copy (the fee schedule, denial routing and payer profiles are package data).
ENV CLAIMS_TOPICS_FILE=/app/topics.yaml \
    CLAIMS_SCHEMAS_DIR=/app/schemas

# Runtime files (faust's <app id>-data directory, ~/.claimflow) go to the home directory.
USER claims
WORKDIR /home/claims

ENTRYPOINT ["claims"]
CMD ["--help"]
