# citeqa production image: CPU-only, bundled model, index of seeds/ built in.
#   docker build -t citeqa . && docker run -p 8000:8000 citeqa
# Admin endpoints: pass -e CITEQA_ADMIN_TOKEN=<32+ characters> (shorter tokens are refused
# on 0.0.0.0) and mount a volume on /app/index to keep added documents.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/tmp/huggingface \
    CITEQA_INDEX_DIR=/app/index \
    CITEQA_PORT=8000

WORKDIR /app

RUN groupadd --system --gid 10001 citeqa \
 && useradd --system --uid 10001 --gid citeqa --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin citeqa

# Dependencies first, so editing the source does not re-download torch.
COPY requirements.lock pyproject.toml README.md ./
COPY src ./src
# The CPU build of torch from the PyTorch index (PyPI's Linux wheel pulls in CUDA), then
# citeqa with every package pinned by the same lock file as `make install`.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install -c requirements.lock . \
 && rm -rf src

COPY seeds ./seeds
RUN install -d -o 10001 -g 10001 /app/index
# Numeric, so the runtime (and Kubernetes' runAsNonRoot) can tell it is not root.
USER 10001:10001
# Built at image build time so a container is ready as soon as the model loads.
RUN citeqa index seeds --index-dir /app/index

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CITEQA_PORT', '8000'), timeout=4)"]
CMD ["citeqa", "serve", "--host", "0.0.0.0"]
