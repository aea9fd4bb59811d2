// Shared pieces of the perflib k6 profiles (smoke, load, stress, soak).
//
// Environment (all optional):
//   BASE_URL    target service (default http://localhost:8081, as in the guide)
//   LEAD_ID     use this one lead for every iteration (the guide's `-e LEAD_ID=...`)
//   LEADS_CSV   lead list, `lead_id,...` with a header (default ../data/leads.csv)
//   TIME_SCALE  multiplies every stage duration (default 1), for short CI runs
import http from 'k6/http';
import exec from 'k6/execution';
import { check } from 'k6';
import { SharedArray } from 'k6/data';

export const BASE_URL = (__ENV.BASE_URL || 'http://localhost:8081').replace(/\/+$/, '');
export const LEAD_ID = __ENV.LEAD_ID || '';
export const TIME_SCALE = parseTimeScale(__ENV.TIME_SCALE);

function parseTimeScale(raw) {
  if (raw === undefined || raw === '') return 1;
  const v = Number(raw);
  if (!Number.isFinite(v) || v <= 0) {
    throw new Error(`TIME_SCALE must be a positive number, got "${raw}"`);
  }
  return v;
}

// A scaled k6 duration string. perflib/profiles.py mirrors this rounding exactly
// (half-up, at least 1 s) so its stage tables match `k6 inspect`.
export function dur(seconds) {
  return `${Math.max(1, Math.round(seconds * TIME_SCALE))}s`;
}

// Distinct leads per iteration: a single lead would only exercise the duplicate guard.
// Plain CSV split (the file is `lead_id,scenario` with no quoting), loaded once and shared.
const leads = LEAD_ID
  ? []
  : new SharedArray('leads', () => {
      const path = __ENV.LEADS_CSV || '../data/leads.csv';
      let text;
      try {
        text = open(path);
      } catch (e) {
        throw new Error(`cannot read the lead list ${path} (set LEAD_ID or LEADS_CSV): ${e}`);
      }
      const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
      const header = lines.shift().split(',').map((h) => h.trim());
      const col = header.indexOf('lead_id');
      if (col < 0) throw new Error(`${path}: no lead_id column in header "${header.join(',')}"`);
      const ids = lines.map((l) => l.split(',')[col].trim()).filter((id) => id !== '');
      if (ids.length === 0) throw new Error(`${path}: no leads`);
      return ids;
    });

// The lead of this iteration: iterationInTest is unique across VUs and execution segments.
export function leadId() {
  if (LEAD_ID) return LEAD_ID;
  return leads[exec.scenario.iterationInTest % leads.length];
}

export function health() {
  const res = http.get(`${BASE_URL}/health`, { tags: { name: '/health' }, timeout: '10s' });
  check(res, { 'health is 200': (r) => r.status === 200 }, { name: '/health' });
  return res;
}

export function processLead(id) {
  // Enrichment calls three upstreams with retries: allow well over the service's own 30 s.
  const res = http.get(`${BASE_URL}/api/v1/leads/process?id=${encodeURIComponent(id)}`, {
    tags: { name: '/api/v1/leads/process' },
    timeout: '60s',
  });
  check(res, { 'process is 2xx': (r) => r.status >= 200 && r.status < 300 }, {
    name: '/api/v1/leads/process',
  });
  return res;
}

// The trend statistics perflib asks for; set here too so a plain `k6 run` reports p(99).
export const SUMMARY_TREND_STATS = ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'count'];
