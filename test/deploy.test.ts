import { execFileSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
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
const monitor = docs(join(K8S, 'components/servicemonitor/servicemonitor.yaml'))[0]!;
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
        if (o.kind === 'Kustomization' || o.kind === 'Component' || patches.has(file)) continue;
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

  it('give the agent beyond loopback the status token of a Secret the ServiceMonitor sends too (issue 32)', () => {
    const file = String(agentToml.observability.token_file);
    const mount = (agent.volumeMounts as Obj[]).find((m) => file.startsWith(`${m.mountPath}/`))!;
    const volume = (pod.volumes as Obj[]).find((v) => v.name === mount.name)!;
    const key = file.slice(mount.mountPath.length + 1);
    expect(volume.secret.secretName).toBe(monitor.spec.endpoints[0].authorization.credentials.name);
    expect(monitor.spec.endpoints[0].authorization.credentials.key).toBe(key);
    // Group-readable: the agent reads it through fsGroup, nobody else.
    expect(volume.secret.defaultMode).toBe(0o440);
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
    expect(Object.entries(monitor.spec.selector.matchLabels).every(([k, v]) => svcLabels[k] === v)).toBe(
      true,
    );
    expect(monitor.spec.endpoints[0].port).toBe((base.Service as Obj).spec.ports[0].name);
    expect(sts.spec.template.metadata.annotations['prometheus.io/scrape']).toBe('true');
  });
});

/** A kind every cluster has: the core group, or a group of Kubernetes' own (`*.k8s.io`, `apps`, `policy`...). */
function builtIn(apiVersion: string): boolean {
  const group = apiVersion.includes('/') ? apiVersion.split('/')[0]! : '';
  return !group.includes('.') || group.endsWith('.k8s.io');
}

describe('Kubernetes: what an operator runs into (issue 28)', () => {
  it('base holds only built-in kinds: the ServiceMonitor, which needs a CRD, is an opt-in component', () => {
    for (const o of Object.values(base) as Obj[]) expect(builtIn(o.apiVersion), o.kind).toBe(true);
    expect(base.ServiceMonitor).toBeUndefined();
    const component = docs(join(K8S, 'components/servicemonitor/kustomization.yaml'))[0]!;
    expect(component.kind).toBe('Component');
    expect(component.resources).toEqual(['servicemonitor.yaml']);
  });

  it('has a disruption budget that lets a node drain, even past a replica that is not Ready', () => {
    const pdb = base.PodDisruptionBudget as Obj | undefined;
    if (!pdb) return;
    // One at a time, never zero: a budget allowing no disruption blocks every drain.
    const replicas = [sts.spec.replicas as number];
    for (const file of patchFiles())
      for (const o of docs(file)) if (o.spec?.replicas) replicas.push(o.spec.replicas);
    if (pdb.spec.maxUnavailable !== undefined)
      expect(Number.parseInt(String(pdb.spec.maxUnavailable), 10)).toBeGreaterThan(0);
    if (pdb.spec.minAvailable !== undefined)
      for (const n of replicas) expect(Number(pdb.spec.minAvailable)).toBeLessThan(n);
    // A paused agent is not Ready; with the default policy one unready replica blocks every eviction.
    expect(pdb.spec.unhealthyPodEvictionPolicy).toBe('AlwaysAllow');
  });

  it('cites only docs sections that exist', () => {
    const headings = (file: string) =>
      readFileSync(join(ROOT, file), 'utf8')
        .split('\n')
        .filter((l) => /^#{1,6} /.test(l))
        .map((l) => l.replace(/^#+ /, '').trim());
    const files = (dir: string): string[] =>
      readdirSync(dir).flatMap((f) =>
        statSync(join(dir, f)).isDirectory() ? files(join(dir, f)) : [join(dir, f)],
      );
    let cited = 0;
    for (const file of [...files(join(ROOT, 'deploy')), join(ROOT, 'Dockerfile')]) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/((?:docs\/[\w-]+|README)\.md)[,:]?\s*\(?"([^"]+)"/g)) {
        expect(existsSync(join(ROOT, m[1]!)), `${relative(ROOT, file)}: ${m[1]}`).toBe(true);
        expect(headings(m[1]!), `${relative(ROOT, file)} cites ${m[1]} "${m[2]}"`).toContain(m[2]);
        cited++;
      }
    }
    expect(cited).toBeGreaterThanOrEqual(2);
  });

  // The quick start's commands, as docs/operating.md gives them.
  const guide = readFileSync(join(ROOT, 'docs/operating.md'), 'utf8');
  const section = guide.slice(guide.indexOf('### Kubernetes quick start'));
  const steps = /```sh\n([\s\S]*?)```/
    .exec(section)![1]!
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => l && !l.startsWith('#'));
  const overlay = 'deploy/kubernetes/overlays/example';
  const k = docs(join(ROOT, overlay, 'kustomization.yaml'))[0]!;

  it('has a quick start whose every step is a command: the image it builds is the overlay’s, the env file is made', () => {
    const built = /^docker build -t (\S+) \.$/.exec(steps.find((l) => l.startsWith('docker build'))!)![1];
    const image = (k.images as Obj[]).find((i) => i.name === 'usepod-agent')!;
    expect(built).toBe(`${image.newName}:${image.newTag}`);
    expect(steps).toContain(`docker push ${built}`);
    for (const g of k.secretGenerator as Obj[])
      for (const e of g.envs) expect(steps).toContain(`cp ${overlay}/${e}.example ${overlay}/${e}`);
    expect(steps).toContain(`kubectl apply -k ${overlay}`);
    expect(readFileSync(join(ROOT, '.gitignore'), 'utf8')).toMatch(
      /^deploy\/kubernetes\/overlays\/\*\/enrollment\.env$/m,
    );
  });

  const kubectl = (() => {
    try {
      execFileSync('kubectl', ['version', '--client'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();

  it.skipIf(!kubectl)(
    'builds, as the quick start applies it, into valid objects of built-in kinds only; with the component, a ServiceMonitor',
    () => {
      const dir = mkdtempSync(join(tmpdir(), 'usepod-k8s-'));
      try {
        cpSync(join(ROOT, 'deploy'), join(dir, 'deploy'), { recursive: true });
        for (const l of steps.filter((x) => x.startsWith('cp '))) {
          const [, from, to] = l.split(/\s+/);
          cpSync(join(dir, from!), join(dir, to!));
        }
        const build = () =>
          parseAllDocuments(
            execFileSync('kubectl', ['kustomize', join(dir, overlay)], { encoding: 'utf8' }),
          ).map((d) => d.toJS() as Obj);
        const objects = build();
        expect(objects.map((o) => o.kind).sort()).toEqual(
          [
            'ConfigMap',
            'Namespace',
            'PodDisruptionBudget',
            'Secret',
            'Secret',
            'Service',
            'StatefulSet',
          ].sort(),
        );
        for (const o of objects) {
          expect(builtIn(o.apiVersion), o.kind).toBe(true);
          if (o.kind === 'Secret') continue;
          expect(() => new MODELS[`${o.apiVersion}/${o.kind}`]!(o as never).validate(), o.kind).not.toThrow();
        }
        const agentImage = (
          objects.find((o) => o.kind === 'StatefulSet')!.spec.template.spec.containers as Obj[]
        ).find((c) => c.name === 'usepod-agent')!.image;
        expect(steps).toContain(`docker push ${agentImage}`);
        // The ServiceMonitor, once the overlay opts in.
        const file = join(dir, overlay, 'kustomization.yaml');
        writeFileSync(file, readFileSync(file, 'utf8').replace('# components:\n#   - ', 'components:\n  - '));
        const withMonitor = build().filter((o) => o.kind === 'ServiceMonitor');
        expect(withMonitor).toHaveLength(1);
        expect(() => new ServiceMonitor(withMonitor[0] as never).validate()).not.toThrow();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    60_000,
  );
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

describe('the image', () => {
  it('packs every first-party package the CLI depends on (plugin-update was missing: the build failed)', () => {
    const cli = JSON.parse(readFileSync(join(ROOT, 'packages/cli/package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    const packed = /for p in ([^;]+); do/
      .exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))?.[1]
      ?.split(/\s+/);
    const needed = Object.keys(cli.dependencies)
      .filter((d) => d.startsWith('@usepod-agent/'))
      .map((d) => d.slice('@usepod-agent/'.length));
    expect(needed.filter((p) => !packed?.includes(p))).toEqual([]);
    expect(packed).toContain('cli');
  });

  it('starts the agent with the V8 flags the CLI asks for that NODE_OPTIONS may carry', () => {
    const cli = JSON.parse(readFileSync(join(ROOT, 'packages/cli/package.json'), 'utf8')) as {
      'usepod-agent': { nodeFlags: string[] };
    };
    const options = /NODE_OPTIONS=(\S+)/
      .exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))?.[1]
      ?.split(',');
    // --single-threaded-gc and the like are refused in NODE_OPTIONS; the young generation's size is not.
    const allowed = cli['usepod-agent'].nodeFlags.filter((f) => f.startsWith('--max-'));
    expect(allowed.length).toBeGreaterThan(0);
    expect(options).toEqual(allowed);
  });
});
