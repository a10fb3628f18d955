import { z } from 'zod';
import { checkTimezone, parseWindow } from '../agent/schedule.js';
import { readLogLevel } from './log-level.js';

/**
 * The `agent.toml` schema (PROTOCOL.md section 8) plus the keys this agent adds
 * ([discovery], limits.drain_timeout_s, observability.log_format, backend options).
 * Keys stay snake_case so a 0.3.x file is read as it is.
 */
export const DEFAULT_COORDINATOR_URL = 'wss://api.usepod.ai/provider/connect';
export const DEFAULT_PROMETHEUS_ADDR = '127.0.0.1:9090';

const positiveInt = z.number().int().positive();

const priceSchema = z
  .object({
    input_per_1m: z.number().int().nonnegative(),
    output_per_1m: z.number().int().nonnegative(),
    max_concurrent: z.number().int().min(1).max(256).optional(),
  })
  .strict();

export const backendSchema = z
  .object({
    kind: z.string().min(1, 'must name a backend kind'),
    url: z.string().optional(),
    models: z.array(z.string().min(1)).optional(),
    api_key_env: z.string().min(1).optional(),
    markup: z.number().min(0).max(10).optional(),
    /** A label for logs and `status`; defaults to `kind@host`. */
    name: z.string().min(1).optional(),
    /** Plugin-specific settings, checked by the kind's own schema (`BackendKind.options`) once plugins load. */
    options: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();

/**
 * Core's sections. Any other top-level section belongs to a plugin that claims it (`ctx.section`): it is
 * kept as written here and checked by that plugin's schema when the agent loads its plugins.
 */
export const configSchema = z.looseObject({
  operator: z
    .object({
      display_name: z.string().optional(),
      wallet: z.string().optional(),
      contact_email: z.string().optional(),
    })
    .loose()
    .optional(),
  coordinator: z
    .object({
      url: z.string().default(DEFAULT_COORDINATOR_URL),
      enrollment_code: z.string().min(1).optional(),
    })
    .loose()
    .default({ url: DEFAULT_COORDINATOR_URL }),
  identity: z
    .object({ key_path: z.string().min(1).default('~/.usepod-agent/identity.key') })
    .loose()
    .default({ key_path: '~/.usepod-agent/identity.key' }),
  backends: z.array(backendSchema).default([]),
  pricing: z
    .object({
      default_input_per_1m: positiveInt.default(500_000),
      default_output_per_1m: positiveInt.default(750_000),
      models: z.record(z.string(), priceSchema).default({}),
    })
    .loose()
    .default({ default_input_per_1m: 500_000, default_output_per_1m: 750_000, models: {} }),
  limits: z
    .object({
      max_concurrent: z.number().int().min(1).max(256).default(8),
      max_tokens_per_minute: positiveInt.optional(),
      drain_timeout_s: z.number().min(0).max(3600).default(30),
      /** Largest job request body accepted, in bytes. */
      max_request_bytes: positiveInt.default(8 * 1024 * 1024),
    })
    .loose()
    .default({ max_concurrent: 8, drain_timeout_s: 30, max_request_bytes: 8 * 1024 * 1024 }),
  observability: z
    .object({
      /** `host:port`, or "" / "off" to serve no metrics. */
      prometheus_addr: z.string().default(DEFAULT_PROMETHEUS_ADDR),
      /**
       * The status token's file, when it is not `status.token` beside the key: one the agent only reads (a
       * Kubernetes Secret, shared with the Prometheus that scrapes it).
       */
      token_file: z.string().min(1).optional(),
      /** Any 0.3.x value loads (`trace`, `usepod_agent=debug`), mapped to the nearest level (PROTOCOL.md 8). */
      log_level: z
        .string()
        .transform((v) => readLogLevel(v).level)
        .default('info'),
      log_format: z.enum(['text', 'json']).default('text'),
    })
    .loose()
    .default({ prometheus_addr: DEFAULT_PROMETHEUS_ADDR, log_level: 'info', log_format: 'text' }),
  discovery: z
    // At most a day: a timer longer than 2^31-1 ms would fire at once, again and again.
    .object({ interval_s: z.number().min(1).max(86_400).default(60) })
    .loose()
    .default({ interval_s: 60 }),
  /** Quiet hours (issue 19): windows in which the agent pauses by itself, in `timezone` (default local). */
  schedule: z
    .object({
      pause: z
        .array(
          z.string().superRefine((v, ctx) => {
            try {
              parseWindow(v);
            } catch (err) {
              ctx.addIssue({ code: 'custom', message: (err as Error).message });
            }
          }),
        )
        .default([]),
      timezone: z
        .string()
        .superRefine((v, ctx) => {
          try {
            checkTimezone(v);
          } catch (err) {
            ctx.addIssue({ code: 'custom', message: (err as Error).message });
          }
        })
        .optional(),
    })
    .loose()
    .default({ pause: [] }),
  /**
   * Self-tests (issue 19): every `interval_s` (0: off) a tiny request through each served model; a model
   * failing `withdraw_after` in a row is withdrawn until it passes again.
   */
  selftest: z
    .object({
      interval_s: z.number().min(0).max(86_400).default(0),
      timeout_s: z.number().min(1).max(600).default(60),
      max_tokens: z.number().int().min(2).max(512).default(16),
      prompt: z.string().min(1).max(2000).default('Count from 1 to 20, separated by spaces.'),
      withdraw_after: z.number().int().min(1).max(100).default(2),
      // Real jobs failing on the engine's side eject a pair for a cooldown (routing/ejection.ts); 0: never.
      eject_after: z.number().int().min(0).max(100).default(3),
      eject_cooldown_s: z.number().min(1).max(86_400).default(30),
      eject_cooldown_max_s: z.number().min(1).max(86_400).default(600),
    })
    .loose()
    .default({
      interval_s: 0,
      timeout_s: 60,
      max_tokens: 16,
      prompt: 'Count from 1 to 20, separated by spaces.',
      withdraw_after: 2,
      eject_after: 3,
      eject_cooldown_s: 30,
      eject_cooldown_max_s: 600,
    }),
});

export type ConfigInput = z.input<typeof configSchema>;
export type Config = z.output<typeof configSchema> & {
  /** The file the config was read from, when it came from one. */
  readonly source?: string;
};
export type BackendConfig = z.output<typeof backendSchema>;
export type ModelPrice = z.output<typeof priceSchema>;
