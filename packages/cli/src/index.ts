/** The usepod-agent CLI. Its commands live in ./commands and are found by oclif. */
export { BaseCommand, EXIT } from './base.js';
export { runDemo } from './demo.js';
