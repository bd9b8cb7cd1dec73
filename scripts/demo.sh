#!/usr/bin/env bash
# One command for a fresh machine: set everything up, then run the demo (GraphRAG on
# Redis). It uses the Redis given by --redis-url or $REDIS_URL, which must answer;
# with none given, redis://localhost:6379 if it answers, else a throwaway redis-server.
# Extra arguments go to `nano-graphrag-redis demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
exec .venv/bin/python -m nano_graphrag_redis demo "$@"
