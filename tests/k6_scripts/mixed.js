// A small k6 run exercising everything perflib.k6 must reproduce from raw NDJSON:
// nested groups, two scenarios (closed + open model), custom Trend/Rate/Counter/Gauge
// metrics, failed requests (404, 500, connection refused), custom and `name` tags, and
// thresholds on tagged sub-metrics (k6 only computes those because thresholds declare them).
// Env: BASE_URL (the test's local HTTP server), REFUSED_URL (a port nobody listens on),
// DURATION (default 2s), SUMMARY_JSON (handleSummary output file).
import http from 'k6/http';
import { check, group, sleep } from 'k6';
import { Counter, Gauge, Rate, Trend } from 'k6/metrics';

const BASE = __ENV.BASE_URL;
const REFUSED = __ENV.REFUSED_URL;
const DURATION = __ENV.DURATION || '2s';

const thinkTime = new Trend('think_time', true);
const okRate = new Rate('ok_rate');
const items = new Counter('items_processed');
const queueDepth = new Gauge('queue_depth');

export const options = {
  scenarios: {
    browse: {
      executor: 'constant-vus', vus: 2, duration: DURATION, exec: 'browse',
      tags: { flow: 'browse' },
    },
    api: {
      executor: 'constant-arrival-rate', rate: 15, timeUnit: '1s', duration: DURATION,
      preAllocatedVUs: 2, maxVUs: 4, exec: 'api',
    },
  },
  thresholds: {
    'http_req_duration{name:slow}': ['p(95)<5000'],
    'http_req_duration{scenario:api}': ['p(99)<5000'],
    'http_reqs{status:404}': ['count>=0'],
    'http_req_failed{scenario:browse}': ['rate<=1'],
    'think_time{kind:x}': ['avg<100000'],
    'items_processed{kind:x}': ['count>=0'],
    'queue_depth{kind:x}': ['value>=0'],
    'checks{check:is 200}': ['rate>=0'],
    'group_duration{group:::outer::inner}': ['max>=0'],
  },
};

export function browse() {
  group('outer', () => {
    group('inner', () => {
      const res = http.get(`${BASE}/ok`);
      check(res, { 'is 200': (r) => r.status === 200 });
      okRate.add(res.status === 200);
    });
  });
  const slow = http.get(`${BASE}/slow`, { tags: { name: 'slow' } });
  check(slow, { 'is 200': (r) => r.status === 200 });
  const kind = Math.random() < 0.5 ? 'x' : 'y';
  thinkTime.add(Math.random() * 20, { kind });
  items.add(1 + Math.floor(Math.random() * 3), { kind });
  queueDepth.add(Math.floor(Math.random() * 10), { kind });
  sleep(0.02);
}

export function api() {
  const id = Math.floor(Math.random() * 3);
  const r = http.get(`${BASE}/item/${id}`, { tags: { name: 'item' } });
  okRate.add(r.status === 200);
  http.get(`${BASE}/404`);
  if (Math.random() < 0.5) {
    http.post(`${BASE}/500`, JSON.stringify({ id }), { headers: { 'Content-Type': 'application/json' } });
  } else {
    http.get(REFUSED);
  }
}

export function handleSummary(data) {
  const out = {};
  if (__ENV.SUMMARY_JSON) out[__ENV.SUMMARY_JSON] = JSON.stringify(data);
  return out;
}
