#!/usr/bin/env bash
# One command for a fresh machine: set everything up, then run the demo (GraphRAG on
# Redis; starts a throwaway redis-server when none is reachable at $REDIS_URL or
# redis://localhost:6379). Extra arguments go to `nano-graphrag-redis demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
exec .venv/bin/python -m nano_graphrag_redis demo "$@"
