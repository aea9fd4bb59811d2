// Stress test (beyond the guide): open model. Iterations arrive at a rate that steps up
// (2, 5, 10, 20, 40 per second; each step a 10 s ramp then a 50 s hold) whatever the
// service's latency, so the step where p95 or the error rate breaks the SLO is visible.
// When no VU is free, k6 drops the iteration and counts it in `dropped_iterations`:
// a run with dropped iterations is saturated. Thresholds are the load test's SLO.
// STRESS_MAX_VUS (default 200) caps the VUs k6 may start.
import { dur, health, leadId, processLead, SUMMARY_TREND_STATS } from './k6lib.js';

const RATES = [2, 5, 10, 20, 40];
const stages = [];
for (const rate of RATES) {
  stages.push({ duration: dur(10), target: rate }); // ramp-<rate>
  stages.push({ duration: dur(50), target: rate }); // hold-<rate>
}
const maxVUs = Number(__ENV.STRESS_MAX_VUS || 200);

export const options = {
  scenarios: {
    stress: {
      executor: 'ramping-arrival-rate',
      startRate: 1,
      timeUnit: '1s',
      preAllocatedVUs: Math.min(20, maxVUs),
      maxVUs: maxVUs,
      stages: stages,
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
  // No sleep: in the open model the arrival rate, not think time, paces iterations.
  health();
  processLead(leadId());
}
