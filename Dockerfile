# The image the Kubernetes manifests run (`seamline k8s render`). Build: docker build -t seamline .
# Stage 1 builds the wheel (Rust core + Python package); stage 2 is a slim runtime, non-root.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends curl build-essential ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH=/root/.cargo/bin:$PATH
RUN pip install --no-cache-dir "maturin>=1.7,<2"
WORKDIR /src
COPY Cargo.toml Cargo.lock pyproject.toml README.md ./
COPY rust rust
COPY python python
RUN maturin build --release --out /wheels

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir "$(ls /wheels/*.whl)[stores]" && rm -rf /wheels
# The pods run with a read-only root filesystem: only /tmp (an emptyDir) is writable.
USER 65532:65532
ENV HOME=/tmp PYTHONDONTWRITEBYTECODE=1
ENTRYPOINT ["seamline"]
