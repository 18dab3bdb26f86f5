# The image for icurt's Ray cluster nodes and for `ray job submit`: CUDA-capable PyTorch, Ray and
# icurt installed. Build: docker build -t ghcr.io/icurt/icurt:latest .
FROM rayproject/ray:2.60.0-py311-gpu

USER root
RUN apt-get update -y && apt-get install -y --no-install-recommends nfs-common \
    && rm -rf /var/lib/apt/lists/*
USER ray
WORKDIR /home/ray/icurt

# CUDA build of PyTorch first (the version icurt is tested with), with its torchvision pair so the
# bench extra (torchattacks needs torchvision) does not move torch; then icurt and its dependencies.
RUN pip install --no-cache-dir torch==2.13.0 torchvision==0.28.0 --index-url https://download.pytorch.org/whl/cu128
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users icurt ./icurt
COPY --chown=ray:users configs ./configs
COPY --chown=ray:users sql ./sql
COPY --chown=ray:users jobs ./jobs
RUN pip install --no-cache-dir ".[bench]"

ENV ICURT_DATA=/mnt/icurt/data \
    RAY_DEDUP_LOGS=1
CMD ["icurt", "--help"]
