/** The logger interface tokenpool writes to. Messages never contain secrets. */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** A log method in pino's style: fields first, then the message (`log.info({ id }, "msg")`), or the message alone. */
export interface PinoLogFn {
  (fields: object, message?: string): void;
  (message: string): void;
}

/**
 * A logger in pino's style: a pino instance, Fastify's `app.log` / `request.log`, or anything
 * whose methods take `(fields, message)`. Pass it as the `logger` option as it is (a pino
 * instance is recognised) or through {@link pinoLogger}.
 */
export interface PinoStyleLogger {
  debug: PinoLogFn;
  info: PinoLogFn;
  warn: PinoLogFn;
  error: PinoLogFn;
  /** The current level; the `debug` setting raises it to `"debug"` while it is on. */
  level?: string;
}

/** What a `logger` option accepts: tokenpool's {@link Logger} shape or a {@link PinoStyleLogger}. */
export type LoggerLike = Logger | PinoStyleLogger;

/** Log levels, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";
const ORDER: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3, silent: 4 };
const METHODS = ["debug", "info", "warn", "error"] as const;

/**
 * A logger writing one line per message to stderr, filtered by a level that can change at
 * runtime (the `debug` setting raises it).
 */
export function consoleLogger(initial: LogLevel = "info"): Logger & { level: LogLevel } {
  const write = (lvl: LogLevel, message: string, fields?: Record<string, unknown>) => {
    if (ORDER[lvl] < ORDER[self.level]) return;
    const extra = fields && Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : "";
    process.stderr.write(`${new Date().toISOString()} ${lvl.toUpperCase()} ${message}${extra}\n`);
  };
  const self = {
    level: initial,
    debug: (m: string, f?: Record<string, unknown>) => write("debug", m, f),
    info: (m: string, f?: Record<string, unknown>) => write("info", m, f),
    warn: (m: string, f?: Record<string, unknown>) => write("warn", m, f),
    error: (m: string, f?: Record<string, unknown>) => write("error", m, f),
  };
  return self;
}

/** A logger that drops everything. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * Whether `logger` is a pino instance (Fastify's `app.log` is one): pino's methods take
 * `(fields, message)`, tokenpool's `(message, fields)`. Both shapes have the same method names,
 * so only pino's own marks tell them apart: its `levels` table (`{ labels, values }`) and
 * `bindings()`. A logger that only looks like pino is used in tokenpool's shape; wrap it in
 * {@link pinoLogger} to say otherwise.
 */
export function isPinoLogger(logger: unknown): logger is PinoStyleLogger {
  if (typeof logger !== "object" || logger === null) return false;
  const l = logger as { levels?: { values?: unknown; labels?: unknown }; bindings?: unknown };
  return (
    typeof l.bindings === "function" &&
    typeof l.levels?.values === "object" &&
    l.levels.values !== null &&
    typeof l.levels.labels === "object" &&
    METHODS.every((m) => typeof (logger as Record<string, unknown>)[m] === "function")
  );
}

/**
 * Adapts a pino-style logger (`log.info(fields, message)`) to tokenpool's {@link Logger}: each
 * message is passed as `(fields, message)`, or `(message)` when it has no fields. Messages and
 * fields are the ones tokenpool writes anyway (secrets already redacted).
 *
 * @example
 * ```ts
 * import Fastify from "fastify";
 * import { createGateway, memoryStore, pinoLogger } from "@tokenpool/core";
 *
 * const app = Fastify({ logger: true });
 * const gateway = createGateway({ store: memoryStore(), logger: pinoLogger(app.log) });
 * ```
 */
export function pinoLogger(logger: PinoStyleLogger): Logger {
  const method =
    (name: (typeof METHODS)[number]) => (message: string, fields?: Record<string, unknown>) => {
      if (fields && Object.keys(fields).length > 0) logger[name](fields, message);
      else logger[name](message);
    };
  const adapted: Logger = {
    debug: method("debug"),
    info: method("info"),
    warn: method("warn"),
    error: method("error"),
  };
  // The gateway's `debug` setting changes a logger's `level`: let it reach pino's own.
  if (typeof logger.level === "string")
    Object.defineProperty(adapted, "level", {
      enumerable: true,
      get: () => logger.level,
      set: (level: string) => {
        logger.level = level;
      },
    });
  return adapted;
}

/**
 * The {@link Logger} to write to for a `logger` option: a pino instance (see
 * {@link isPinoLogger}) adapted with {@link pinoLogger}, anything else as it is.
 */
export function toLogger(logger: LoggerLike): Logger {
  return isPinoLogger(logger) ? pinoLogger(logger) : (logger as Logger);
}
