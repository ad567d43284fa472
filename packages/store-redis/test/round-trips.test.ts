/**
 * Round trips of the lookups on the proxy's per-request path (performance issue 19): the
 * authorisation of a key not in the gateway's cache reads the key by its hash
 * (`keys.getByHash`) and its owner (`users.get`), one round trip each.
 *
 * Counted on a real redis-server with MONITOR: every command a connection sends is one line
 * (commands a Lua script runs are lines of their own, marked `lua`, and cost no round trip). A
 * lookup's commands are the lines between two ECHO markers of the store's connection; sequential
 * commands of one connection are at least as many round trips, so one command is one round trip.
 */
import { fixtures } from "@tokenpool/testing";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { redisStore } from "../src/index.js";
import { clearPrefix, startRedisServer } from "./redis-server.js";

const server = await startRedisServer();
const admin = new Redis(server.url);
const client = new Redis(server.url);
const prefix = `tp-trips-${process.pid}`;
const store = redisStore({ redis: client, prefix });

interface Line {
  args: string[];
  source: string;
}
const lines: Line[] = [];
let monitor: Redis;

beforeAll(async () => {
  monitor = await admin.monitor();
  monitor.on("monitor", (_time: string, args: string[], source: string) => {
    lines.push({ args: args.map(String), source });
  });
});

afterAll(async () => {
  await store.close();
  monitor.disconnect();
  await clearPrefix(client, prefix);
  client.disconnect();
  admin.disconnect();
  await server.stop();
});

let markers = 0;
/** Waits until MONITOR has shown the ECHO `marker` (it shows commands in execution order). */
async function seen(marker: string): Promise<Line> {
  for (let i = 0; i < 500; i++) {
    const line = lines.find((l) => l.args[0]?.toLowerCase() === "echo" && l.args[1] === marker);
    if (line) return line;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`MONITOR never showed ${marker}`);
}

/**
 * Runs `fn` and returns its result with what it sent to Redis: `sent`, the commands of the
 * connections (the round trips), and `inScript`, the commands its scripts ran.
 */
async function measure<T>(fn: () => Promise<T>) {
  const start = `tp-start-${markers}`;
  const end = `tp-end-${markers++}`;
  await client.echo(start);
  const source = (await seen(start)).source;
  const result = await fn();
  await client.echo(end);
  await seen(end);
  const from = lines.findIndex((l) => l.args[1] === start);
  const to = lines.findIndex((l) => l.args[1] === end);
  const between = lines.slice(from + 1, to);
  lines.splice(0, to + 1);
  const sent = between.filter((l) => l.source !== "lua");
  // Nothing but the store's connection (the client it was given) talked to Redis meanwhile.
  for (const l of sent) expect(l.source).toBe(source);
  return {
    result,
    sent: sent.map((l) => l.args[0]!.toLowerCase()),
    inScript: between.filter((l) => l.source === "lua").map((l) => l.args),
  };
}

describe("per-request lookups of the Redis store", () => {
  it("keys.getByHash is one round trip: found, unknown hash, deleted key", async () => {
    const user = await store.users.create(fixtures.user());
    const keyCipher = "v1:aXY=:dGFn:c2VhbGVk"; // as KeyService seals it: opaque text
    const key = await store.keys.create(
      fixtures.key({ userId: user.id, keyHash: "hash-trips-1", keyCipher }),
    );
    // Warm: the first EVALSHA of a script on a fresh Redis is answered NOSCRIPT and resent as EVAL.
    await store.keys.getByHash("warm-up");

    const found = await measure(() => store.keys.getByHash("hash-trips-1"));
    expect(found.sent).toEqual(["evalsha"]);
    expect(found.result).toEqual(await store.keys.get(key.id));
    expect(found.result).toMatchObject({ id: key.id, keyHash: "hash-trips-1", userId: user.id });
    expect(found.result?.keyCipher).toEqual(keyCipher);
    // The script reads the index and the record, both under the store's hash tag.
    expect(found.inScript.map((a) => a[0]!.toLowerCase())).toEqual(["hget", "hgetall"]);
    for (const a of found.inScript) expect(a[1]!.startsWith(`{${prefix}}:`)).toBe(true);

    const unknown = await measure(() => store.keys.getByHash("no-such-hash"));
    expect(unknown.sent).toEqual(["evalsha"]);
    expect(unknown.result).toBeNull();

    expect(await store.keys.delete([key.id])).toBe(1);
    const gone = await measure(() => store.keys.getByHash("hash-trips-1"));
    expect(gone.sent).toEqual(["evalsha"]);
    expect(gone.result).toBeNull();
  });

  it("a key's authorisation reads (getByHash, then users.get) are two round trips", async () => {
    const user = await store.users.create(fixtures.user({ username: "trips-owner" }));
    await store.keys.create(fixtures.key({ userId: user.id, keyHash: "hash-trips-2" }));
    const { result, sent } = await measure(async () => {
      const key = await store.keys.getByHash("hash-trips-2");
      return { key, user: key?.userId == null ? null : await store.users.get(key.userId) };
    });
    expect(sent).toEqual(["evalsha", "hgetall"]);
    expect(result.key?.userId).toBe(user.id);
    expect(result.user).toEqual(await store.users.get(user.id));
  });

  it("users.getByUsername and users.getByAccessTokenHash are one round trip each", async () => {
    const user = await store.users.create(
      fixtures.user({ username: "trips-token", accessTokenHash: "tok-trips" }),
    );
    const byName = await measure(() => store.users.getByUsername("trips-token"));
    expect(byName.sent).toEqual(["evalsha"]);
    expect(byName.result).toEqual(await store.users.get(user.id));
    const byToken = await measure(() => store.users.getByAccessTokenHash("tok-trips"));
    expect(byToken.sent).toEqual(["evalsha"]);
    expect(byToken.result).toEqual(byName.result);
    for (const miss of [
      () => store.users.getByUsername("nobody"),
      () => store.users.getByAccessTokenHash("no-token"),
    ]) {
      const r = await measure(miss);
      expect(r.sent).toEqual(["evalsha"]);
      expect(r.result).toBeNull();
    }
    expect(await store.users.delete(user.id)).toBe(true);
    expect(await store.users.getByUsername("trips-token")).toBeNull();
    expect(await store.users.getByAccessTokenHash("tok-trips")).toBeNull();
  });
});
