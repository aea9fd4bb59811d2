// Load test (docs/guide.md#k6-profiles-and-thresholds): ramp 0→5 VUs over 30 s, 10 VUs for 1 min,
// 20 VUs for 1.5 min, 20→0 over 30 s. Thresholds: p95 < 2 s, error rate < 10 %.
//   k6 run tests/load-test.js
//   k6 run -e BASE_URL=https://your-app.fly.dev -e LEAD_ID=YOUR_LEAD_ID tests/load-test.js
// Stage table mirrored in perflib/profiles.py (checked against `k6 inspect` in tests).
import { sleep } from 'k6';
import { dur, health, leadId, processLead, SUMMARY_TREND_STATS } from './k6lib.js';

export const options = {
  scenarios: {
    load: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: [
        { duration: dur(30), target: 5 }, // ramp-up
        { duration: dur(60), target: 10 }, // steady
        { duration: dur(90), target: 20 }, // peak
        { duration: dur(30), target: 0 }, // ramp-down
      ],
      gracefulRampDown: dur(30),
      gracefulStop: dur(30),
    },
  },
  thresholds: {
    http_req_duration: ['p(95)<2000'],
    http_req_failed: ['rate<0.10'],
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
};

export default function () {
  health();
  processLead(leadId());
  sleep(1); // think time: a closed-model user does not fire back-to-back
}
