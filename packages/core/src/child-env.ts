import { redactor } from './observability/redact.js';

/** Named, so it is dropped even before the agent read its config (and told the redactor). */
const SECRET_VARIABLES = new Set(['USEPOD_ENROLLMENT_CODE']);

/**
 * The environment for a program the agent runs that needs none of its secrets (a GPU tool; npm, which
 * runs the install scripts of every package it installs): the agent's own, without the enrollment code's
 * variable and without any variable holding a secret the redactor knows (an engine's API key named by
 * `api_key_env`, the status token). Inherited whole, a dependency's install script read them all.
 */
export function childEnv(
  extra: NodeJS.ProcessEnv = {},
  env: NodeJS.ProcessEnv = process.env,
): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || SECRET_VARIABLES.has(name) || redactor.redact(value) !== value) continue;
    out[name] = value;
  }
  return { ...out, ...extra };
}
