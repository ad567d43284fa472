/**
 * A counting TCP proxy for Redis (used by `pnpm bench:redis-trips`): every connection a client
 * opens to it is forwarded to the real server, and both directions are parsed as RESP so that it
 * knows each command the client sends (with the script name of an `EVALSHA`) and each reply the
 * server sends back.
 *
 * **Round trip**: a command that reaches the proxy while its connection has no command
 * unanswered, i.e. the start of a new wait of the client for the server. Commands sent while
 * others are still unanswered (a pipeline, or a second caller on the same connection) ride on the
 * round trip already open. **Burst**: one `data` event of the client's socket (one or more TCP
 * segments that arrived together), the cruder count.
 *
 * Subscriber connections (those that sent `SUBSCRIBE`/`PSUBSCRIBE`) are counted apart: what the
 * server pushes on them is not an answer to a request.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { connect, createServer, type Server, type Socket } from "node:net";

/** Counters of a {@link RespCounter}; {@link diff} subtracts two snapshots. */
export interface RespCounts {
  /** Round trips on command connections (see the module comment). */
  roundTrips: number;
  /** Client → server `data` events on command connections. */
  bursts: number;
  /** Commands sent on command connections. */
  commands: number;
  /** Commands per name (`EVALSHA` as `EVALSHA <script>`). */
  byCommand: Record<string, number>;
  /** Round trips per the name of the command that opened them. */
  tripsByCommand: Record<string, number>;
  /** Messages the server pushed on subscriber connections. */
  pushes: number;
  /** Commands sent on subscriber connections. */
  subscriberCommands: number;
}

const CR = 13;

/**
 * The end offset of the RESP value at `pos` in `buf`, or -1 when it is not complete yet. With
 * `args`, a top-level array's bulk strings are decoded into it (a client command).
 */
function skip(buf: Buffer, pos: number, args?: string[]): number {
  if (pos >= buf.length) return -1;
  const type = buf[pos]!;
  let lineEnd = pos + 1;
  while (lineEnd < buf.length && buf[lineEnd] !== CR) lineEnd++;
  if (lineEnd + 1 >= buf.length) return -1;
  const head = buf.toString("latin1", pos + 1, lineEnd);
  const next = lineEnd + 2;
  switch (String.fromCharCode(type)) {
    case "+":
    case "-":
    case ":":
    case ",":
    case "#":
    case "(":
    case "_":
      return next;
    case "$":
    case "!":
    case "=": {
      const n = Number(head);
      if (n < 0) return next;
      const end = next + n + 2;
      if (end > buf.length) return -1;
      args?.push(buf.toString("utf8", next, next + n));
      return end;
    }
    case "*":
    case "~":
    case ">":
    case "%":
    case "|": {
      let n = Number(head);
      if (n < 0) return next;
      if (type === 0x25 /* % */ || type === 0x7c /* | */) n *= 2;
      let p = next;
      for (let i = 0; i < n; i++) {
        p = skip(buf, p, args);
        if (p < 0) return -1;
      }
      return p;
    }
    default:
      // An inline command (`PING\r\n`): the line is the command.
      args?.push(...buf.toString("latin1", pos, lineEnd).split(" "));
      return next;
  }
}

/** Splits complete RESP values off a growing buffer. */
class RespStream {
  #pending: Buffer = Buffer.alloc(0);
  constructor(
    private readonly withArgs: boolean,
    private readonly onValue: (args: string[]) => void,
  ) {}
  push(chunk: Buffer): void {
    const buf = this.#pending.length ? Buffer.concat([this.#pending, chunk]) : chunk;
    let pos = 0;
    for (;;) {
      const args: string[] = [];
      const end = skip(buf, pos, this.withArgs ? args : undefined);
      if (end < 0) break;
      this.onValue(args);
      pos = end;
    }
    this.#pending = pos === buf.length ? Buffer.alloc(0) : buf.subarray(pos);
  }
}

/** A counting proxy in front of one Redis server. */
export class RespCounter {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #scripts = new Map<string, string>();
  #counts: RespCounts = emptyCounts();
  port = 0;

  /**
   * @param target the real server's port on 127.0.0.1.
   * @param scripts Lua scripts by name: `EVALSHA <sha1>` is reported as `EVALSHA <name>`.
   */
  constructor(
    private readonly target: number,
    scripts: Record<string, string> = {},
  ) {
    for (const [name, body] of Object.entries(scripts)) {
      this.#scripts.set(createHash("sha1").update(body).digest("hex"), name);
    }
    this.#server = createServer((client) => this.#connection(client));
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(0, "127.0.0.1", () => resolve());
    });
    this.port = (this.#server.address() as { port: number }).port;
    return `redis://127.0.0.1:${this.port}`;
  }

  /** A copy of the counters so far. */
  snapshot(): RespCounts {
    const c = this.#counts;
    return { ...c, byCommand: { ...c.byCommand }, tripsByCommand: { ...c.tripsByCommand } };
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #name(args: string[]): string {
    const cmd = (args[0] ?? "?").toUpperCase();
    if (cmd === "EVALSHA") return `EVALSHA ${this.#scripts.get(args[1] ?? "") ?? args[1]}`;
    if (cmd === "EVAL") {
      const sha = createHash("sha1")
        .update(args[1] ?? "")
        .digest("hex");
      return `EVAL ${this.#scripts.get(sha) ?? "?"}`;
    }
    return cmd;
  }

  #connection(client: Socket): void {
    const server = connect(this.target, "127.0.0.1");
    this.#sockets.add(client).add(server);
    client.setNoDelay(true);
    server.setNoDelay(true);
    let subscriber = false;
    let outstanding = 0;
    let burstCounted = false;
    const requests = new RespStream(true, (args) => {
      const c = this.#counts;
      const name = this.#name(args);
      if (name === "SUBSCRIBE" || name === "PSUBSCRIBE") subscriber = true;
      if (subscriber) {
        c.subscriberCommands++;
        return;
      }
      c.commands++;
      c.byCommand[name] = (c.byCommand[name] ?? 0) + 1;
      if (!burstCounted) {
        c.bursts++;
        burstCounted = true;
      }
      if (outstanding === 0) {
        c.roundTrips++;
        c.tripsByCommand[name] = (c.tripsByCommand[name] ?? 0) + 1;
      }
      outstanding++;
    });
    const replies = new RespStream(false, () => {
      if (subscriber) this.#counts.pushes++;
      else if (outstanding > 0) outstanding--;
    });
    client.on("data", (chunk: Buffer) => {
      burstCounted = false;
      requests.push(chunk);
      server.write(chunk);
    });
    server.on("data", (chunk: Buffer) => {
      replies.push(chunk);
      client.write(chunk);
    });
    const end = () => {
      client.destroy();
      server.destroy();
      this.#sockets.delete(client);
      this.#sockets.delete(server);
    };
    client.on("close", end).on("error", end);
    server.on("close", end).on("error", end);
  }
}

function emptyCounts(): RespCounts {
  return {
    roundTrips: 0,
    bursts: 0,
    commands: 0,
    byCommand: {},
    tripsByCommand: {},
    pushes: 0,
    subscriberCommands: 0,
  };
}

/** `after - before`, counter by counter (names with no change are left out). */
export function diff(after: RespCounts, before: RespCounts): RespCounts {
  const sub = (a: Record<string, number>, b: Record<string, number>) =>
    Object.fromEntries(
      Object.entries(a)
        .map(([k, v]) => [k, v - (b[k] ?? 0)] as const)
        .filter(([, v]) => v !== 0),
    );
  return {
    roundTrips: after.roundTrips - before.roundTrips,
    bursts: after.bursts - before.bursts,
    commands: after.commands - before.commands,
    byCommand: sub(after.byCommand, before.byCommand),
    tripsByCommand: sub(after.tripsByCommand, before.tripsByCommand),
    pushes: after.pushes - before.pushes,
    subscriberCommands: after.subscriberCommands - before.subscriberCommands,
  };
}
