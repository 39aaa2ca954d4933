# Worker image for docker compose. CPU-only torch keeps the image small.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN grep -vE '^(nvidia-|cuda-|triton==|torch==)' requirements.lock > /tmp/req.txt \
 && pip install --no-cache-dir torch==2.15.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir -r /tmp/req.txt
COPY schemas schemas
COPY streams streams
COPY agents agents
COPY connectors connectors
COPY cli cli
COPY data data
RUN pip install --no-cache-dir --no-deps .
ENTRYPOINT ["livelearn"]
CMD ["worker"]
