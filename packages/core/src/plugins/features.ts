import { locatorFor } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { ConfigMistakes, type Mistake } from '../config/validate.js';
import { UsepodError } from '../errors.js';
import {
  CORE_STATUS_PATHS,
  type StatusRoute,
  type StatusRouteAuth,
  type StatusRouteHandler,
} from '../observability/status-server.js';
import type { JobJournal } from '../relay/journal.js';
import { TIMED_OUT, within } from '../timers.js';
import type { OptionsSchema } from './kinds.js';
import type { DoctorFacts, DoctorFinding } from './plugin.js';
import { parseStandard } from './standard-schema.js';

/** A plugin's status section is a few figures: more than this is a bug, not a status. */
const MAX_SECTION_CHARS = 64 * 1024;

/**
 * What feature plugins gave the agent through their context (issue 27): the config sections they
 * claimed, the journal, the status sections and the doctor checks. One per agent (or per standalone
 * plugin host), filled while plugins are applied.
 */

/** The top-level sections core reads itself; every other one belongs to a plugin. */
export const CORE_SECTIONS: ReadonlySet<string> = new Set([
  'operator',
  'coordinator',
  'identity',
  'backends',
  'pricing',
  'limits',
  'observability',
  'discovery',
  'schedule',
  'selftest',
]);

type Check = (facts: DoctorFacts) => DoctorFinding[] | Promise<DoctorFinding[]>;

export class Features {
  readonly #config: Readonly<Config>;
  /** Section name -> the plugin that claimed it. */
  readonly #claimed = new Map<string, string>();
  readonly #mistakes: Mistake[] = [];
  #journal: { plugin: string; journal: JobJournal } | undefined;
  readonly #status = new Map<string, () => unknown>();
  readonly #doctor: { name: string; plugin: string; check: Check }[] = [];
  readonly #routes = new Map<string, StatusRoute>();

  constructor(config: Readonly<Config>) {
    this.#config = config;
  }

  /** The sections of the config that are not core's (each must be claimed by a plugin). */
  pluginSections(): string[] {
    return Object.keys(this.#config).filter((k) => k !== 'source' && !CORE_SECTIONS.has(k));
  }

  claimedBy(section: string): string | undefined {
    return this.#claimed.get(section);
  }

  claim<T>(plugin: string, name: string, schema: OptionsSchema<T>): T | undefined {
    if (CORE_SECTIONS.has(name)) {
      throw new UsepodError(
        'USEPOD_PLUGIN_INVALID',
        `plugin "${plugin}" claimed [${name}], which core reads`,
        {
          user: true,
          plugin,
        },
      );
    }
    const owner = this.#claimed.get(name);
    if (owner !== undefined && owner !== plugin) {
      throw new UsepodError(
        'USEPOD_PLUGIN_INVALID',
        `plugins "${owner}" and "${plugin}" both claim [${name}]: uninstall one of them`,
        { user: true, plugin },
      );
    }
    this.#claimed.set(name, plugin);
    const raw = (this.#config as Record<string, unknown>)[name];
    if (raw === undefined) return undefined;
    const r = parseStandard(schema, raw, name);
    if (r.mistakes) {
      this.#mistakes.push(...r.mistakes);
      return undefined;
    }
    return r.value;
  }

  /** Throws every section mistake found while plugins were applied, each at `file:line:column`. */
  throwMistakes(): void {
    if (this.#mistakes.length === 0) return;
    const source = this.#config.source;
    throw new ConfigMistakes(source, this.#mistakes.splice(0), locatorFor(source));
  }

  /** `byDefault`: the plugin applies by default, and yields to a journal another plugin already gave. */
  provideJournal(plugin: string, journal: JobJournal, byDefault = false): boolean {
    if (this.#journal && this.#journal.plugin !== plugin) {
      if (byDefault) return false;
      throw new UsepodError(
        'USEPOD_PLUGIN_INVALID',
        `plugins "${this.#journal.plugin}" and "${plugin}" both provide the job journal: one ledger per agent`,
        { user: true, plugin },
      );
    }
    this.#journal = { plugin, journal };
    return true;
  }

  get journal(): JobJournal | undefined {
    return this.#journal?.journal;
  }

  statusSection(plugin: string, name: string, read: () => unknown): void {
    if (!/^[a-z][a-z0-9_]{0,39}$/.test(name)) {
      throw new UsepodError(
        'USEPOD_PLUGIN_INVALID',
        `plugin "${plugin}" named a status section "${name}": use lowercase letters, digits and _`,
        { user: true, plugin },
      );
    }
    this.#status.set(name, read);
  }

  /**
   * Each status section as read now, as plain JSON data: one that throws, is a cycle, holds a BigInt or
   * is over 64 KB shows an error instead of breaking (or bloating) `/status`.
   */
  statusSections(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [name, read] of this.#status) {
      try {
        const text = JSON.stringify(read());
        if (text !== undefined && text.length > MAX_SECTION_CHARS) {
          throw new Error(`the section is ${text.length} characters of JSON, over ${MAX_SECTION_CHARS}`);
        }
        out[name] = text === undefined ? null : JSON.parse(text);
      } catch (err) {
        out[name] = { error: String(err instanceof Error ? err.message : err).slice(0, 200) };
      }
    }
    return out;
  }

  /** A route of the status server (`ctx.statusRoute`): an exact path, one method, one plugin. */
  statusRoute(
    plugin: string,
    method: 'GET' | 'POST',
    path: string,
    handle: StatusRouteHandler,
    auth: StatusRouteAuth = 'bearer',
  ): void {
    const bad = (why: string) =>
      new UsepodError(
        'USEPOD_PLUGIN_INVALID',
        `plugin "${plugin}" added the status route ${method} ${path}: ${why}`,
        {
          user: true,
          plugin,
        },
      );
    if (method !== 'GET' && method !== 'POST') throw bad('use GET or POST');
    if (typeof path !== 'string' || !/^\/[A-Za-z0-9._~/-]{0,200}$/.test(path))
      throw bad('a path is / and letters, digits, . _ ~ - /');
    if (CORE_STATUS_PATHS.has(path)) throw bad('core serves it');
    if (auth !== 'bearer' && auth !== 'bearer-or-query' && auth !== 'none')
      throw bad('auth is bearer, bearer-or-query or none');
    // What acts on the agent always needs the header: no token in a URL, no route open to anyone.
    if (auth !== 'bearer' && method !== 'GET') throw bad(`a POST needs auth "bearer", not "${auth}"`);
    const owner = this.#routes.get(path);
    if (owner && owner.plugin !== plugin) throw bad(`plugin "${owner.plugin}" serves it`);
    this.#routes.set(path, { plugin, method, path, handle, auth });
  }

  /** The plugins' routes by path, for the status server. */
  get routes(): ReadonlyMap<string, StatusRoute> {
    return this.#routes;
  }

  doctorCheck(plugin: string, name: string, check: Check): void {
    this.#doctor.push({ name, plugin, check });
  }

  /**
   * Runs every plugin's doctor checks, at once and each on its own: one that throws, hangs past
   * `timeoutMs` or gives something that is not a list of findings is a warning line of its own, in its place.
   */
  async doctor(facts: DoctorFacts, timeoutMs = DOCTOR_CHECK_MS): Promise<DoctorFinding[]> {
    const runs = this.#doctor.map(async (d): Promise<DoctorFinding[]> => {
      const broken = (why: string): DoctorFinding[] => [
        { name: d.name, level: 'warn', detail: `the check of plugin "${d.plugin}" ${why}` },
      ];
      try {
        const found: unknown = await within(() => d.check(facts), timeoutMs);
        if (found === TIMED_OUT) return broken(`gave no answer in ${timeoutMs / 1000} s`);
        if (!Array.isArray(found) || !found.every(isFinding)) return broken('gave no list of findings');
        return found;
      } catch (err) {
        return broken(`failed: ${safeMessage(err)}`);
      }
    });
    return (await Promise.all(runs)).flat();
  }
}

/** How long `doctor` waits for one plugin's check (a GPU tool that hangs is killed after 10 s). */
export const DOCTOR_CHECK_MS = 30_000;

function isFinding(f: unknown): f is DoctorFinding {
  const c = f as Partial<Record<keyof DoctorFinding, unknown>> | null;
  return (
    typeof c === 'object' &&
    c !== null &&
    typeof c.name === 'string' &&
    (c.level === 'ok' || c.level === 'warn' || c.level === 'fail') &&
    typeof c.detail === 'string' &&
    (c.fix === undefined || typeof c.fix === 'string')
  );
}

/** What a plugin threw, whatever it threw (an object whose toString throws included). */
function safeMessage(err: unknown): string {
  try {
    return err instanceof Error ? String(err.message) : String(err);
  } catch {
    return 'an unprintable error';
  }
}
