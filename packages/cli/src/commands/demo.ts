import { BaseCommand } from '../base.js';
import { runDemo } from '../demo.js';

export default class Demo extends BaseCommand {
  static override summary =
    'Watch the agent work end to end with no GPU: a local coordinator and an emulated engine.';
  static override examples = ['<%= config.bin %> demo'];

  async run(): Promise<void> {
    await this.parse(Demo);
    await runDemo();
  }
}
