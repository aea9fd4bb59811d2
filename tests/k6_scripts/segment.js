// A fixed amount of work split across k6 processes with --execution-segment: the merged
// counts of the segments must equal the sum of each segment's own k6 summary.
import http from 'k6/http';
import { Counter } from 'k6/metrics';

const items = new Counter('items_processed');

export const options = {
  scenarios: {
    work: { executor: 'shared-iterations', vus: 2, iterations: 24, maxDuration: '30s' },
  },
};

export default function () {
  http.get(`${__ENV.BASE_URL}/ok`);
  http.get(`${__ENV.BASE_URL}/item/${__ITER % 3}`, { tags: { name: 'item' } });
  items.add(2);
}
