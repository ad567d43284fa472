/**
 * The waiting line of requests refused for quota while other reservations of their key are in
 * flight (`QuotaLine`, step 4 of `reserveUnits`): the unit's order, deadlines and wake-ups, then
 * a burst on one gateway, where the line keeps the store's load bounded and still serves every
 * request the quota pays for.
 */
import { EventEmitter } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Billing } from "../src/billing/price.js";
import { GatewayEmitter } from "../src/events.js";
import { createGateway, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";
import { QuotaLine } from "../src/proxy/quota-line.js";
import { SettingsService } from "../src/settings/service.js";

const SECRET = "quota-line-secret-0123456789-0123456789-abc";
const UPSTREAM_KEY = "sk-upstream-line-0a1b2c3d4e5f";

/** A client connection that has not gone away, and a way to make it go. */
function client(): EventEmitter & { aborted: boolean; leave(): void } {
  const e = new EventEmitter() as EventEmitter & { aborted: boolean; leave(): void };
  e.aborted = false;
  e.leave = () => {
    e.aborted = true;
    e.emit("abort");
  };
  return e;
}

/** After the turns' promise callbacks have run. */
const settled = () => new Promise((r) => setImmediate(r));

describe("QuotaLine", () => {
  it("gives a key's turns in the order they were asked for, one at a time", async () => {
    const line = new QuotaLine();
    const order: number[] = [];
    let holding = 0;
    let most = 0;
    const far = Date.now() + 10_000;
    await Promise.all(
      [0, 1, 2, 3, 4].map(async (i) => {
        const end = await line.turn(7, far, client());
        expect(end).not.toBeNull();
        holding++;
        most = Math.max(most, holding);
        order.push(i);
        await new Promise((r) => setTimeout(r, 5));
        holding--;
        end!();
      }),
    );
    expect(order).toEqual([0, 1, 2, 3, 4]);
    expect(most).toBe(1);
    // Nothing is left behind once the line is empty.
    await settled();
    expect(line.size).toBe(0);
  });

  it("keeps the lines of different keys apart", async () => {
    const line = new QuotaLine();
    const far = Date.now() + 10_000;
    const a = await line.turn(1, far, client());
    // Key 2's first request does not wait for key 1's.
    const b = await line.turn(2, far, client());
    expect(a).not.toBeNull();
    expect(b).not.toBeNull();
    a!();
    b!();
    await settled();
    expect(line.size).toBe(0);
  });

  it("a request whose deadline passes in line gives up its place, and the one behind it still gets its turn", async () => {
    const line = new QuotaLine();
    const first = await line.turn(3, Date.now() + 10_000, client());
    const started = Date.now();
    const late = line.turn(3, Date.now() + 40, client());
    const behind = line.turn(3, Date.now() + 10_000, client());
    expect(await late).toBeNull();
    expect(Date.now() - started).toBeGreaterThanOrEqual(35);
    let served = false;
    void behind.then(() => {
      served = true;
    });
    await new Promise((r) => setTimeout(r, 20));
    // Still the first's turn.
    expect(served).toBe(false);
    first!();
    const end = await behind;
    expect(end).not.toBeNull();
    end!();
    await settled();
    expect(line.size).toBe(0);
  });

  it("a request whose client leaves while in line gives up its place at once", async () => {
    const line = new QuotaLine();
    const first = await line.turn(4, Date.now() + 10_000, client());
    const c = client();
    const leaving = line.turn(4, Date.now() + 10_000, c);
    c.leave();
    expect(await leaving).toBeNull();
    // One that left before asking never gets a turn, and the first still holds the line.
    const gone = client();
    gone.leave();
    expect(await line.turn(4, Date.now() + 10_000, gone)).toBeNull();
    let jumped = false;
    const waiting = line.turn(4, Date.now() + 10_000, client()).then((end) => {
      jumped = true;
      return end;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(jumped).toBe(false);
    first!();
    (await waiting)!();
    const next = await line.turn(4, Date.now() + 10_000, client());
    expect(next).not.toBeNull();
    next!();
    await settled();
    expect(line.size).toBe(0);
  });

  it("a settlement of the key ends the first in line's pause early; another key's does not", async () => {
    const line = new QuotaLine();
    let started = Date.now();
    const woken = line.pause(5, 5_000, client());
    line.settled(6);
    setTimeout(() => line.settled(5), 30);
    expect(await woken).toBe(true);
    expect(Date.now() - started).toBeLessThan(1_000);
    started = Date.now();
    expect(await line.pause(5, 40, client())).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(35);
    const c = client();
    const left = line.pause(5, 5_000, c);
    c.leave();
    expect(await left).toBe(false);
  });
});

describe("a burst against a quota that runs out, on one gateway", () => {
  let upstream: MockUpstream;
  let server: Server;
  let url: string;
  // Counted on the adapter, below the gateway: every reservation asked of the store.
  let calls = 0;
  const adapter = memoryStore();
  const reserve = adapter.reserveQuota.bind(adapter);
  adapter.reserveQuota = (...args) => {
    calls++;
    return reserve(...args);
  };
  const gateway = createGateway({
    store: adapter,
    secret: SECRET,
    logger: false,
    oauth: { scanIntervalMs: 0 },
    // Long enough for every waiter to see the end, on any machine: the wait's bound is not
    // what is measured here.
    usage: { reserveWaitMs: 60_000 },
  });

  beforeAll(async () => {
    upstream = await createMockUpstream({ apiKeys: [UPSTREAM_KEY], maxRecordedRequests: 0 });
    await gateway.ready;
    server = createServer(toNodeHandler(gateway));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
    await gateway.credentials.add({
      provider: "openai",
      kind: "api-key",
      baseUrl: upstream.url,
      secret: { apiKey: UPSTREAM_KEY },
    });
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await gateway.close();
    await upstream?.close();
  });

  const messages = [{ role: "user" as const, content: "hi" }];
  /** What the reserve stage holds for one request (its 8 prompt tokens and max_tokens 200). */
  const reservation = new Billing(
    new SettingsService(memoryStore(), new GatewayEmitter(), {}),
    1024,
  ).estimate("gpt-4o-mini", "default", 8, 200);

  /** One request's cost, measured (not assumed) through a key of its own. */
  async function costOfOne(name: string): Promise<number> {
    const probe = await gateway.keys.create({ name, remainQuota: 1_000_000 });
    const openai = new OpenAI({ apiKey: probe.key, baseURL: url, maxRetries: 0 });
    await openai.chat.completions.create({ model: "gpt-4o-mini", max_tokens: 200, messages });
    await gateway.usage.flush();
    const cost = 1_000_000 - (await gateway.store.keys.get(probe.record.id))!.remainQuota;
    expect(cost).toBeGreaterThan(0);
    return cost;
  }

  /**
   * `perKey` requests at once with each key, against an upstream that takes 30 ms; the store
   * calls are counted from here. Resolves to how many were served; every other one was refused
   * with a 429.
   */
  async function burst(keys: string[], perKey: number): Promise<number> {
    upstream.fail({ path: "/v1/chat/completions", delayMs: 30, times: keys.length * perKey });
    calls = 0;
    const statuses = await Promise.all(
      keys.flatMap((key) => {
        const openai = new OpenAI({ apiKey: key, baseURL: url, maxRetries: 0 });
        return Array.from({ length: perKey }, () =>
          openai.chat.completions.create({ model: "gpt-4o-mini", max_tokens: 200, messages }).then(
            () => 200,
            (e: unknown) => (e instanceof OpenAI.APIError ? (e.status ?? 0) : -1),
          ),
        );
      }),
    );
    const ok = statuses.filter((s) => s === 200).length;
    expect(ok + statuses.filter((s) => s === 429).length).toBe(keys.length * perKey);
    await gateway.usage.flush();
    return ok;
  }

  it("asks the store a few times per request, not once per waiter per pause, and serves all the quota pays for", async () => {
    const REQUESTS = 300;
    const cost = await costOfOne("probe");
    const { key, record } = await gateway.keys.create({ name: "burst", remainQuota: cost * 100 });
    const ok = await burst([key], REQUESTS);
    const k = (await gateway.store.keys.get(record.id))!;
    expect(k.usedQuota).toBe(ok * cost);
    expect(k.remainQuota).toBeGreaterThanOrEqual(0);
    // Refused only when the money was gone: what is left does not cover one more reservation.
    expect(k.remainQuota, `${ok} served`).toBeLessThan(reservation);
    // Each waiter asking the store on its own made ~15 calls per request; the line asks a few.
    expect(calls / REQUESTS, `${calls} store calls for ${REQUESTS} requests`).toBeLessThan(5);
  }, 120_000);

  it("the requests of an owner's keys refused for the owner's quota wait in one line", async () => {
    const KEYS = 30;
    const PER_KEY = 10;
    const cost = await costOfOne("probe-2");
    const { record: owner } = await gateway.users.create({
      username: "line-owner",
      quota: cost * 100,
    });
    const keys = await Promise.all(
      Array.from({ length: KEYS }, (_, i) =>
        gateway.keys.create({ name: `owned-${i}`, unlimitedQuota: true, userId: owner.id }),
      ),
    );
    const ok = await burst(
      keys.map((k) => k.key),
      PER_KEY,
    );
    const u = (await gateway.store.users.get(owner.id))!;
    expect(u.usedQuota).toBe(ok * cost);
    expect(u.quota).toBeGreaterThanOrEqual(0);
    expect(u.quota, `${ok} served`).toBeLessThan(reservation);
    // With a line per key, the 30 lines' heads asked 4.7 times per request; one line, 2.7.
    const requests = KEYS * PER_KEY;
    expect(calls / requests, `${calls} store calls for ${requests} requests`).toBeLessThan(4);
  }, 120_000);
});
