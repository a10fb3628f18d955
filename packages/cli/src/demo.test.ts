import { execSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { runDemo } from './demo.js';

it('the demo shows pairing, capabilities, a streamed job, a cancel, an unknown model, a deadline, a heartbeat and a self-test', async () => {
  const lines: string[] = [];
  await runDemo((l) => lines.push(l));
  const text = lines.join('\n');
  expect(text).toMatch(/-> authenticated as provider prov_1/);
  expect(text).toMatch(
    /- meta-llama\/Llama-3\.3-70B-Instruct {2}in=300000 out=450000 {2}context=131072 {2}via vllm/,
  );
  expect(text).toMatch(/text relayed: "tok0 tok1 .* tok11"/);
  expect(text).toMatch(/-> job_done: \{"input":\d+,"output":12,/);
  expect(text).toMatch(/the engine saw the disconnect\) and sent no terminal frame/);
  expect(text).toMatch(/-> job_error model_not_loaded/);
  expect(text).toMatch(/-> job_error backend_timeout: backend exceeded deadline_ms \(300 ms\)/);
  expect(text).toMatch(/Heartbeat with real measurements: \{"queue_depth":0,"tokens_per_sec_p50":[1-9]/);
  expect(text).toMatch(/- Qwen\/Qwen3-14B {2}ok {2}first token [\d.]+ ms {2}[\d.]+ tok\/s/);
}, 30_000);

it('npm run demo says what it does before its build, which takes about half a minute in a fresh checkout', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
    scripts: Record<string, string>;
  };
  const steps = pkg.scripts.demo!.split(' && ');
  const build = steps.findIndex((s) => /npm run build/.test(s));
  expect(build).toBeGreaterThan(0);
  const said = steps
    .slice(0, build)
    .map((s) => execSync(s, { encoding: 'utf8' }))
    .join('');
  expect(said).toMatch(/^Building the agent first \(tsc -b: about 30 s/);
});
