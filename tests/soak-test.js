// Soak test (beyond the guide): steady closed-model load for a long time (30 min at
// TIME_SCALE=1) to expose leaks: memory that climbs at constant load, latency that drifts.
// SOAK_VUS (default 10) sets the load.
import { sleep } from 'k6';
import { dur, health, leadId, processLead, SUMMARY_TREND_STATS } from './k6lib.js';

export const options = {
  scenarios: {
    soak: {
      executor: 'constant-vus',
      vus: Number(__ENV.SOAK_VUS || 10),
      duration: dur(1800), // steady
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
  sleep(1);
}
