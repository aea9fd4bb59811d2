#!/usr/bin/env bash
# Quick validation of a running service with curl (the guide's ./test-local.sh).
#   ./test-local.sh [BASE_URL] [LEAD_ID]      default BASE_URL http://localhost:8081
# Exit codes: 0 all checks passed; 1 a check failed; 2 bad usage / curl missing;
#             3 the service is not reachable at BASE_URL.
set -u
BASE_URL="${1:-${BASE_URL:-http://localhost:8081}}"
BASE_URL="${BASE_URL%/}"
LEAD_ID="${2:-${LEAD_ID:-}}"
command -v curl >/dev/null || { echo "error: curl is required" >&2; exit 2; }
case "$BASE_URL" in http://*|https://*) ;; *) echo "usage: $0 [BASE_URL] [LEAD_ID]" >&2; exit 2;; esac

pass=0; fail=0
check() {  # name, expected status, expected body fragment, curl args...
  local name="$1" want="$2" frag="$3"; shift 3
  local out status body
  out="$(curl -sS -m 40 -w '\n%{http_code} %{time_total}' "$@" 2>&1)" || {
    echo "FAIL $name: $out"; fail=$((fail+1)); return; }
  status="$(tail -n1 <<<"$out" | cut -d' ' -f1)"; secs="$(tail -n1 <<<"$out" | cut -d' ' -f2)"
  body="$(sed '$d' <<<"$out")"
  if [[ "$status" == "$want" && "$body" == *"$frag"* ]]; then
    printf 'ok   %-34s %s in %ss\n' "$name" "$status" "$secs"; pass=$((pass+1))
  else
    printf 'FAIL %-34s got %s, want %s containing %s\n     body: %s\n' "$name" "$status" "$want" "$frag" "${body:0:300}"
    fail=$((fail+1))
  fi
}

curl -sS -m 10 -o /dev/null "$BASE_URL/health" 2>/dev/null || {
  echo "error: no service answering at $BASE_URL" >&2; exit 3; }

echo "Testing $BASE_URL"
check "GET /health"                    200 '"status":"healthy"' "$BASE_URL/health"
check "GET /health reports the db"     200 '"db":"ok"'         "$BASE_URL/health"
check "process without id -> 400"      400 "Missing 'id' parameter" "$BASE_URL/api/v1/leads/process"
check "process with empty id -> 400"   400 "Missing 'id' parameter" "$BASE_URL/api/v1/leads/process?id="
check "GET /metrics"                   200 'process_resident_memory_bytes' "$BASE_URL/metrics"
check "unknown route -> 404"           404 '' "$BASE_URL/no-such-route"
if [[ -n "$LEAD_ID" ]]; then
  check "process lead $LEAD_ID"        200 '"success"' "$BASE_URL/api/v1/leads/process?id=$LEAD_ID"
else
  echo "skip process a lead (pass LEAD_ID as the 2nd argument)"
fi
echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]] || exit 1
