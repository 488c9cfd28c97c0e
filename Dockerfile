# Donjon's vault (`donjon server`) and inference firewall (`donjon gateway`) in one image.
#
#   docker build -t donjon .
#   docker run --read-only --tmpfs /tmp -v donjon-data:/var/lib/donjon \
#     -v "$PWD/tls:/run/secrets/donjon:ro" -p 8443:8443 donjon
#   docker run --read-only --tmpfs /tmp -v "$PWD/gateway.toml:/etc/donjon/gateway.toml:ro" \
#     -p 8080:8080 donjon gateway --config /etc/donjon/gateway.toml --host 0.0.0.0 --port 8080
#
# Non-root (uid 10001), no write outside DONJON_HOME (a volume) and /tmp: runs
# with a read-only root file system. See docs/integrations.md.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /build
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN python -m venv /opt/donjon \
 && /opt/donjon/bin/pip install ".[server,postgres,authz,audit,soc,gateway,client]"

FROM python:3.11-slim
RUN groupadd --system --gid 10001 donjon \
 && useradd --system --uid 10001 --gid donjon --home-dir /var/lib/donjon --create-home donjon
COPY --from=build /opt/donjon /opt/donjon
ENV PATH=/opt/donjon/bin:$PATH \
    DONJON_HOME=/var/lib/donjon \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/donjon
VOLUME ["/var/lib/donjon"]
EXPOSE 8443 8080
ENTRYPOINT ["donjon"]
# TLS by default: mount the certificate and key; behind a TLS-terminating proxy
# override with: server --host 0.0.0.0 --port 8443 --insecure-http
CMD ["server", "--host", "0.0.0.0", "--port", "8443", \
     "--tls-cert", "/run/secrets/donjon/tls.crt", "--tls-key", "/run/secrets/donjon/tls.key"]
