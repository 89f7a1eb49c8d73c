# The ledger service image: `ledger serve` by default; docker-compose.yml also runs `ledger worker`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
COPY ledger ./ledger
COPY api ./api
COPY projections ./projections
COPY adapters ./adapters
COPY bootstrap ./bootstrap
COPY cli ./cli
COPY bench ./bench
RUN pip install -c requirements.lock . && useradd --system --home-dir /app ledger && chown ledger /app

USER ledger
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=5 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"
CMD ["ledger", "serve", "--host", "0.0.0.0", "--port", "8000"]
