import { describe, expect, it } from 'vitest';
import { promGauge } from './http.js';

describe('promGauge', () => {
  it('reads the first sample of a gauge, with or without labels, and no other metric', () => {
    const text =
      '# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 3\nllamacpp:requests_processing_total 9\ntgi_queue_size{model="m"} 2.5\n';
    expect(promGauge(text, 'llamacpp:requests_processing')).toBe(3);
    expect(promGauge(text, 'tgi_queue_size')).toBe(2.5);
    expect(promGauge(text, 'tgi_batch_current_size')).toBeUndefined();
    expect(promGauge('x.y 1\nxzy 2\n', 'xzy')).toBe(2);
  });
});
