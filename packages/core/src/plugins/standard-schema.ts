import type { Mistake } from '../config/validate.js';

/**
 * A validator of a kind's `options`: any Standard Schema (zod 4, valibot, arktype...), so a plugin brings its
 * own validation library and core is bound to none. A zod `z.strictObject({...})` makes a typo an error.
 */
export interface OptionsSchema<O = Record<string, unknown>> {
  readonly '~standard': {
    readonly version: 1;
    readonly vendor: string;
    validate(value: unknown):
      | { readonly value: O; readonly issues?: undefined }
      | {
          readonly issues: readonly {
            readonly message: string;
            readonly path?: readonly (PropertyKey | { readonly key: PropertyKey })[];
          }[];
        }
      | Promise<unknown>;
  };
}

/**
 * Parses a value with a plugin's Standard Schema (a kind's `options`, a feature's section), synchronously:
 * the value, or every issue as a mistake at the key an operator writes (`backends[1].options.ctx`).
 */
export function parseStandard<T>(
  schema: OptionsSchema<T>,
  value: unknown,
  key: string,
): { value: T; mistakes?: undefined } | { mistakes: Mistake[] } {
  const result = schema['~standard'].validate(value);
  if (result instanceof Promise) {
    void result.catch(() => {});
    return {
      mistakes: [{ key, why: 'its plugin declares an asynchronous schema, which the agent cannot use' }],
    };
  }
  const r = result as {
    value?: unknown;
    issues?: readonly { message: string; path?: readonly (PropertyKey | { key: PropertyKey })[] }[];
  };
  if (r.issues && r.issues.length > 0) {
    return { mistakes: r.issues.map((i) => ({ key: `${key}${pathOf(i.path)}`, why: i.message })) };
  }
  return { value: r.value as T };
}

function pathOf(path: readonly (PropertyKey | { readonly key: PropertyKey })[] | undefined): string {
  return (path ?? [])
    .map((p) => (typeof p === 'object' ? p.key : p))
    .map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`))
    .join('');
}
