import * as Flags from '@oclif/core/flags';
import { engineText, loadConfig } from '@usepod-agent/core';
import { DEFAULT_IDENTITY_PATH, findConfigFile, loadOrCreateIdentity } from '@usepod-agent/core/cli';
import { BaseCommand, jsonFlag } from '../base.js';

export default class Identity extends BaseCommand {
  static override aliases = ['enroll'];
  static override summary = "Show this agent's public key and provider id (never the secret).";
  static override description =
    'Reads the identity file named by identity.key_path (creating it, mode 0600, when it does not exist yet) and prints the public key to register with Use Pod, the provider id once the coordinator assigned one, and the file path.';
  static override examples = [
    '<%= config.bin %> identity',
    '<%= config.bin %> enroll --json',
    '<%= config.bin %> identity --key ./identity.key',
  ];
  static override flags = {
    key: Flags.string({
      summary: 'Identity file to read instead of the one in the config.',
      helpValue: 'PATH',
    }),
    json: jsonFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Identity);
    let keyPath = flags.key;
    if (!keyPath) {
      const file = flags.config ?? (await findConfigFile());
      keyPath = file
        ? (await loadConfig({ path: file, allowInsecure: true })).config.identity.key_path
        : DEFAULT_IDENTITY_PATH;
    }
    const { identity, created, permissionWarning } = await loadOrCreateIdentity(keyPath);
    if (permissionWarning) process.stderr.write(`warning: ${permissionWarning}\n`);
    if (flags.json) {
      this.printJson({
        public_key: identity.publicKey,
        fingerprint: identity.fingerprint,
        provider_id: identity.providerId ?? null,
        file: identity.path,
        created: identity.created,
        new: created,
      });
      return;
    }
    if (created) this.out(`Created a new identity at ${identity.path} (mode 0600). Back this file up.`);
    this.out(`public key   ${identity.publicKey}`);
    this.out(`fingerprint  ${identity.fingerprint}`);
    // Folded: a file an older agent wrote holds whatever id its coordinator sent, escapes included.
    const providerId = identity.providerId === undefined ? undefined : engineText(identity.providerId, 200);
    this.out(
      `provider id  ${providerId ?? '(not assigned yet: run `usepod-agent setup`, or set coordinator.enrollment_code)'}`,
    );
    this.out(`file         ${identity.path}`);
  }
}
