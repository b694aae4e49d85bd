# pyovms: OpenVINO models over the KServe v2 gRPC and REST APIs.
#   docker build -t pyovms .
#   docker run --rm --read-only --tmpfs /tmp -p 9000:9000 -p 8080:8080 -v /path/to/models:/mnt/models:ro \
#     pyovms --model_name my_model --model_path /mnt/models --port 9000 --rest_port 8080
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/cache

WORKDIR /opt/pyovms
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY pyovms ./pyovms
RUN pip install . && rm -rf /opt/pyovms/build

# A fixed non-root user (OVMS uses UID 5000 too); nothing is written outside /tmp, so the root file system can be
# mounted read-only with a tmpfs on /tmp.
RUN useradd --uid 5000 --no-create-home --shell /usr/sbin/nologin ovms
USER 5000
EXPOSE 9000 8080
ENTRYPOINT ["pyovms"]
CMD ["--demo", "--port", "9000", "--rest_port", "8080"]
