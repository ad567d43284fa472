#!/usr/bin/env node
import { parseArgs } from "node:util";
import { rotateServerSecret } from "./rotate-secret.js";
import { DEFAULT_STORE, startServer } from "./serve.js";

const USAGE = `Usage: tokenpool serve [options]
       tokenpool rotate-secret [--store <spec>] [--config <file>] [--new-secret <s>]

Options:
  --port <n>        port to listen on (default 8317; 0 = any free port)
  --host <addr>     address to listen on (default 127.0.0.1)
  --store <spec>    where the state lives:
                      sqlite:<path>   one file, several processes on one machine (default ${DEFAULT_STORE})
                      file:<dir>      the seeds' own files (config.yaml, data/accounts.json, auths/*.json);
                                      one process only (a lock file refuses a second)
                      redis://[:password@]host:port[/db][?prefix=<name>]
                                      several instances on several machines (needs TOKENPOOL_SECRET);
                                      a Redis Cluster: redis://host1:port1,host2:port2,... or ?cluster=true
                      postgres://user:password@host:5432/database[?schema=<name>&sslmode=require]
                                      (also postgresql://) several instances on one PostgreSQL
                                      database (needs TOKENPOOL_SECRET); schema default tokenpool
                      memory          nothing kept
  --config <file>   a YAML configuration file (CLIProxyAPI layout)
  --demo            also start a local mock upstream and a demo key (works offline)
  --demo-port <n>   with --demo: the mock upstream's port on 127.0.0.1 (default 0 = any free port)
  --log-level <l>   debug | info | warn | error | silent (default info)
  --management-ui <file>
                    serve this management UI file at /management.html (the management.html
                    of a CLIProxyAPI management center release; read on every request)
  --no-dashboard    do not serve the web console (served at /dashboard/ by default)
  --new-secret <s>  rotate-secret: the new server secret (32+ characters; default
                    TOKENPOOL_NEW_SECRET, else a random one written to secret.key)
  -h, --help        show this help

Commands:
  serve             run the gateway (the default)
  rotate-secret     re-encrypt everything stored under the server secret with a new one
                    (upstream credential secrets, downstream keys); stop the gateways first,
                    restart them with the new secret after; safe to run again if interrupted

Environment:
  TOKENPOOL_SECRET  the server secret (otherwise kept in secret.key beside the SQLite file or in
                    the file store's directory; required with redis and postgres, the same on
                    every instance)
  TOKENPOOL_NEW_SECRET  rotate-secret: the new server secret
  TOKENPOOL_METRICS_TOKEN  a bearer token (16+ characters) that may read GET /metrics besides the
                    management key, from any address (for Prometheus)`;

/** A port flag's value (undefined when absent), or null after printing why it is refused. */
function portFlag(flag: string, value: string | undefined): number | undefined | null {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isInteger(n) || n < 0 || n > 65535) {
    process.stderr.write(`${flag} must be an integer between 0 and 65535, got "${value}"\n`);
    return null;
  }
  return n;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      port: { type: "string" },
      host: { type: "string" },
      store: { type: "string" },
      config: { type: "string" },
      demo: { type: "boolean", default: false },
      "demo-port": { type: "string" },
      "log-level": { type: "string" },
      "management-ui": { type: "string" },
      "no-dashboard": { type: "boolean", default: false },
      "new-secret": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const command = positionals[0] ?? "serve";
  if (values.help || command === "help") {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (command === "rotate-secret") {
    await rotateServerSecret({
      ...(values.store === undefined ? {} : { store: values.store }),
      ...(values.config === undefined ? {} : { config: values.config }),
      ...(values["new-secret"] === undefined ? {} : { newSecret: values["new-secret"] }),
    });
    return 0;
  }
  if (command !== "serve") {
    process.stderr.write(`unknown command "${command}"\n\n${USAGE}\n`);
    return 2;
  }
  const port = portFlag("--port", values.port);
  const demoPort = portFlag("--demo-port", values["demo-port"]);
  if (port === null || demoPort === null) return 2;
  if (demoPort !== undefined && !values.demo) {
    process.stderr.write("--demo-port only applies with --demo\n");
    return 2;
  }
  const level = values["log-level"];
  if (level !== undefined && !["debug", "info", "warn", "error", "silent"].includes(level)) {
    process.stderr.write(
      `--log-level must be debug, info, warn, error or silent, got "${level}"\n`,
    );
    return 2;
  }
  const running = await startServer({
    ...(port === undefined ? {} : { port }),
    ...(values.host === undefined ? {} : { host: values.host }),
    ...(values.store === undefined ? {} : { store: values.store }),
    ...(values.config === undefined ? {} : { config: values.config }),
    ...(level === undefined ? {} : { logLevel: level as "info" }),
    ...(values["management-ui"] === undefined ? {} : { managementUi: values["management-ui"] }),
    demo: values.demo,
    ...(values["no-dashboard"] ? { dashboard: false } : {}),
    ...(demoPort === undefined ? {} : { demoPort }),
  });
  const stop = (signal: string) => {
    process.stderr.write(`${signal}: shutting down\n`);
    running.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGINT", () => stop("SIGINT"));
  process.once("SIGTERM", () => stop("SIGTERM"));
  return -1;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (error: unknown) => {
    process.stderr.write(`tokenpool: ${(error as Error).message}\n`);
    process.exit(1);
  },
);
