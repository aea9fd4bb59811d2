// Smoke test (docs/guide.md#k6-profiles-and-thresholds): minimal load before a deploy.
// Expected: p95 < 3 s, error rate < 5 %, and /health always succeeds.
//   k6 run tests/smoke-test.js
//   k6 run -e BASE_URL=https://your-app.fly.dev tests/smoke-test.js
// Stage table mirrored in perflib/profiles.py (checked against `k6 inspect` in tests).
import { sleep } from 'k6';
import { dur, health, leadId, processLead, SUMMARY_TREND_STATS } from './k6lib.js';

export const options = {
  scenarios: {
    smoke: {
      executor: 'ramping-vus',
      startVUs: 1,
      stages: [{ duration: dur(30), target: 1 }], // smoke: one user for 30 s
      gracefulRampDown: dur(30),
      gracefulStop: dur(30),
    },
  },
  thresholds: {
    http_req_duration: ['p(95)<3000'],
    http_req_failed: ['rate<0.05'],
    'checks{name:/health}': ['rate==1'],
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
};

export default function () {
  health();
  processLead(leadId());
  sleep(1);
}
