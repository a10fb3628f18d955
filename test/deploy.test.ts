import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Service } from 'kubernetes-models/v1/Service';
import { parse as parseToml } from 'smol-toml';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { validateConfig } from '../packages/core/src/config/validate.js';

/**
 * deploy/ (issue 20): every Kubernetes manifest valid against the Kubernetes schemas (kubernetes-models),
 * and the invariants that keep an agent earning on a cluster; the compose files' own.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const K8S = join(ROOT, 'deploy/kubernetes');

// Parsed YAML walked by path: the schemas above check its shape; `any` keeps the invariants readable.
// biome-ignore lint/suspicious/noExplicitAny: see above
type Obj = Record<string, any>;

// Each model's constructor takes its own typed object; YAML gives plain ones.
const MODELS: Record<string, new (o: never) => { validate(): void }> = {
  'apps/v1/StatefulSet': StatefulSet,
  'v1/ConfigMap': ConfigMap,
  'v1/Namespace': Namespace,
  'v1/Service': Service,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
};

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return yamlFiles(p);
    return /\.ya?ml$/.test(f) ? [p] : [];
  });
}

function docs(file: string): Obj[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).map((d) => {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0]!.message}`);
    return d.toJS() as Obj;
  });
}

/** Patch files are partial objects by design: kustomize merges them; they are checked after merging. */
function patchFiles(): Set<string> {
  const out = new Set<string>();
  for (const file of yamlFiles(K8S).filter((f) => f.endsWith('kustomization.yaml'))) {
    for (const p of (docs(file)[0]!.patches ?? []) as { path?: string }[]) {
      if (p.path) out.add(join(file, '..', p.path));
    }
  }
  return out;
}

const base = Object.fromEntries(
  yamlFiles(join(K8S, 'base'))
    .filter((f) => !f.endsWith('kustomization.yaml'))
    .flatMap(docs)
    .map((o) => [o.kind as string, o]),
);
const sts = base.StatefulSet as Obj;
const pod = sts.spec.template.spec as Obj;
const agent = (pod.containers as Obj[]).find((c) => c.name === 'usepod-agent')!;
const agentToml = parseToml((base.ConfigMap as Obj).data['agent.toml'] as string) as Obj;

describe('Kubernetes manifests', () => {
  it('are each valid against the Kubernetes schemas', () => {
    const patches = patchFiles();
    let checked = 0;
    for (const file of yamlFiles(K8S)) {
      for (const o of docs(file)) {
        if (o.kind === 'Kustomization' || patches.has(file)) continue;
        const Model = MODELS[`${o.apiVersion}/${o.kind}`];
        expect(Model, `${file}: ${o.apiVersion} ${o.kind} has no schema here`).toBeDefined();
        expect(() => new Model!(o as never).validate(), file).not.toThrow();
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(6);
  });

  it('name only files that exist in every kustomization', () => {
    for (const file of yamlFiles(K8S).filter((f) => f.endsWith('kustomization.yaml'))) {
      const k = docs(file)[0]!;
      const dir = join(file, '..');
      for (const r of [...(k.resources ?? []), ...((k.patches ?? []) as Obj[]).map((p) => p.path)]) {
        expect(existsSync(join(dir, r)), `${file}: ${r}`).toBe(true);
      }
      for (const g of (k.secretGenerator ?? []) as Obj[]) {
        // The real env file is the operator's and never committed; its example is.
        for (const e of g.envs ?? [])
          expect(existsSync(join(dir, `${e}.example`)), `${file}: ${e}.example`).toBe(true);
      }
    }
  });

  it('give the agent a valid config with the identity on the replica’s own volume', () => {
    expect(() => validateConfig(agentToml)).not.toThrow();
    const mount = (agent.volumeMounts as Obj[]).find((m) => m.name === 'identity');
    expect(mount?.mountPath).toBe('/var/lib/usepod-agent');
    expect(String(agentToml.identity.key_path).startsWith(`${mount!.mountPath}/`)).toBe(true);
    // One identity per replica: a claim template, not a shared volume.
    expect((sts.spec.volumeClaimTemplates as Obj[]).map((t) => t.metadata.name)).toContain('identity');
    expect((pod.volumes as Obj[]).some((v) => v.name === 'identity')).toBe(false);
    // The enrollment code comes from a Secret, never the ConfigMap.
    expect(agentToml.coordinator?.enrollment_code).toBeUndefined();
    const code = (agent.env as Obj[]).find((e) => e.name === 'USEPOD_ENROLLMENT_CODE');
    expect(code?.valueFrom?.secretKeyRef).toMatchObject({ name: 'usepod-enrollment', key: 'code' });
  });

  it('let the agent drain before the pod is killed', () => {
    const drain = Number(agentToml.limits?.drain_timeout_s ?? 30);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(drain);
  });

  it('probe liveness on /healthz and readiness on /readyz, at the port the status server listens on', () => {
    const port = Number(String(agentToml.observability.prometheus_addr).split(':').at(-1));
    const named = (agent.ports as Obj[]).find((p) => p.name === agent.livenessProbe.httpGet.port);
    expect(named?.containerPort).toBe(port);
    expect(agent.livenessProbe.httpGet.path).toBe('/healthz');
    expect(agent.readinessProbe.httpGet.path).toBe('/readyz');
    expect(agent.readinessProbe.httpGet.port).toBe(agent.livenessProbe.httpGet.port);
  });

  it('run the agent as non-root on a read-only root filesystem, with /tmp writable', () => {
    expect(agent.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 10001,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
    // The image's user (Dockerfile) is the one the pod asks for.
    expect(readFileSync(join(ROOT, 'Dockerfile'), 'utf8')).toMatch(/useradd .*--uid 10001 /);
    expect((agent.volumeMounts as Obj[]).map((m) => m.mountPath)).toContain('/tmp');
  });

  it('select the pods from the Service, the ServiceMonitor and the PodDisruptionBudget', () => {
    const labels = sts.spec.template.metadata.labels as Record<string, string>;
    const selects = (sel: Record<string, string>) => Object.entries(sel).every(([k, v]) => labels[k] === v);
    expect(selects((base.Service as Obj).spec.selector)).toBe(true);
    expect(selects((base.PodDisruptionBudget as Obj).spec.selector.matchLabels)).toBe(true);
    const svcLabels = (base.Service as Obj).metadata.labels as Record<string, string>;
    const monitor = base.ServiceMonitor as Obj;
    expect(Object.entries(monitor.spec.selector.matchLabels).every(([k, v]) => svcLabels[k] === v)).toBe(
      true,
    );
    expect(monitor.spec.endpoints[0].port).toBe((base.Service as Obj).spec.ports[0].name);
    expect(sts.spec.template.metadata.annotations['prometheus.io/scrape']).toBe('true');
  });
});

describe('compose files', () => {
  for (const file of yamlFiles(join(ROOT, 'deploy/compose'))) {
    it(`${file.split('/').at(-1)}: the agent drains, is probed on /readyz, keeps its identity, restarts`, () => {
      const c = docs(file)[0]!;
      const a = c.services.agent as Obj;
      const grace = Number(/^(\d+)s$/.exec(a.stop_grace_period)![1]);
      expect(grace).toBeGreaterThan(Number(a.environment.USEPOD_DRAIN_TIMEOUT_S));
      expect(a.healthcheck.test.join(' ')).toContain('/readyz');
      expect(a.volumes.some((v: string) => v.endsWith(':/var/lib/usepod-agent'))).toBe(true);
      expect(a.restart).toBe('unless-stopped');
      // Beside an engine that is healthy first, reached by its service name.
      const [engine] = Object.keys(a.depends_on);
      expect(a.depends_on[engine!].condition).toBe('service_healthy');
      expect(c.services[engine!].healthcheck).toBeDefined();
      expect(a.environment.USEPOD_BACKEND_URL).toMatch(new RegExp(`^http://${engine}:\\d+$`));
      // Metrics and /status stay on the host.
      for (const p of a.ports ?? []) expect(p).toMatch(/^127\.0\.0\.1:/);
    });
  }
});
