import type { InitializeHook, ResolveHook } from 'node:module';

/**
 * A module resolve hook (runs on Node's loader thread): `@usepod-agent/core` and its subpaths, imported
 * from anywhere, resolve as the CLI itself resolves them. An installed plugin then runs on the agent's
 * own core (one copy, one `UsepodError` class, one plugin API), whatever its folder holds.
 */
let parentURL = '';

export const initialize: InitializeHook<{ parentURL: string }> = (data) => {
  parentURL = data.parentURL;
};

export const resolve: ResolveHook = (specifier, context, next) => {
  if (specifier === '@usepod-agent/core' || specifier.startsWith('@usepod-agent/core/')) {
    return next(specifier, { ...context, parentURL });
  }
  return next(specifier, context);
};
