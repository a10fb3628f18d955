import { statSync } from 'node:fs';

/**
 * A webhook's URL is its secret (its path, often its query): anyone who reads it can post to the
 * operator's channel. `setup` writes agent.toml 0644 (it holds no secret then); once `[[alerts]]` are
 * added there, a file others can read gives them away, as core warns for the enrollment code.
 * Undefined when the file is the owner's alone, missing, not a regular file, or on Windows (ACLs).
 */
export function exposedConfig(source: string | undefined): { detail: string; fix: string } | undefined {
  if (!source || process.platform === 'win32') return undefined;
  let mode: number;
  try {
    const st = statSync(source);
    if (!st.isFile()) return undefined;
    mode = st.mode;
  } catch {
    return undefined;
  }
  if ((mode & 0o044) === 0) return undefined;
  const octal = (mode & 0o777).toString(8).padStart(4, '0');
  return {
    detail: `config file ${source} holds the alerts' webhook URLs and is readable by group or others (mode ${octal})`,
    fix: `chmod 600 ${source}`,
  };
}
