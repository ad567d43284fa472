/**
 * Quota blocks (issue 19): requests of a key far from the end of its quota share one
 * reservation of this instance, each share kept in the usage journal until its record is
 * written; a dead process's journal is replayed exactly once. The end-to-end kill is in
 * `packages/server/test/crash-recovery.test.ts` (SQLite); here the gateway runs on the memory
 * store given a journal directory, and the replay on a real store.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createMockUpstream, fixtures, type MockUpstream } from "@tokenpool/testing";
import OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import { createGateway, type Gateway, memoryStore, type Store } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";
import type { JournalEntry } from "../src/usage/quota-blocks.js";
import { replayJournal } from "../src/usage/replay.js";

const SECRET = "quota-blocks-secret-0123456789-0123456789-ab";
const INITIAL = 100_000_000;

let mock: MockUpstream | undefined;
let gateway: Gateway | undefined;
let server: Server | undefined;
const dirs: string[] = [];

afterEach(async () => {
  server?.closeAllConnections();
  if (server) await new Promise((r) => server!.close(r));
  await gateway?.close();
  await mock?.close();
  server = gateway = mock = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A memory store that offers a journal directory, as the SQLite store does. */
function journaled(dir: string): { store: Store; reserves: () => number } {
  const base = memoryStore();
  let reserves = 0;
  const store: Store = {
    ...base,
    capabilities: { ...base.capabilities, usageJournalDir: dir },
    reserveQuota(...args) {
      reserves++;
      return base.reserveQuota(...args);
    },
  };
  return { store, reserves: () => reserves };
}

async function serve(store: Store, usage: Record<string, unknown> = {}) {
  mock = await createMockUpstream({ apiKeys: ["sk-up-blocks"] });
  gateway = createGateway({ store, secret: SECRET, logger: false, usage });
  await gateway.credentials.add({
    provider: "openai",
    kind: "api-key",
    baseUrl: mock.url,
    secret: { apiKey: "sk-up-blocks" },
  });
  const { key, record } = await gateway.keys.create({ name: "blocks", remainQuota: INITIAL });
  server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", () => r()));
  const { port } = server.address() as AddressInfo;
  const client = new OpenAI({ apiKey: key, baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0 });
  return { client, keyId: record.id };
}

async function ledger(store: Store, keyId: number) {
  const key = (await store.keys.get(keyId))!;
  const records = (await store.usage.list({ keyId, limit: 10_000 })).items;
  return {
    used: key.usedQuota,
    remain: key.remainQuota,
    billed: records.reduce((s, r) => s + r.quota, 0),
    records,
  };
}

describe("quota blocks", () => {
  it("requests share a few reservations; balances are exact after a flush and nothing stays reserved", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tp-blocks-"));
    dirs.push(dir);
    const { store, reserves } = journaled(dir);
    // Batches by size only (256 with a journal), not by time: the count below does not depend
    // on the machine.
    const { client, keyId } = await serve(store, { flushIntervalMs: 60_000 });
    const ids: string[] = [];
    for (let i = 0; i < 100; i++) {
      const stream = i % 5 === 0;
      if (stream) {
        const s = await client.chat.completions.create({
          model: "gpt-4o-mini",
          stream: true,
          messages: [{ role: "user", content: `hello ${i}` }],
        });
        for await (const _ of s);
      } else {
        const r = await client.chat.completions.create({
          model: "gpt-4o-mini",
          messages: [{ role: "user", content: `hello ${i}` }],
        });
        ids.push(r.id);
      }
    }
    // One reservation per block of up to 32 requests (no flush within the 100: a batch is 256)
    // and the first request alone: 1 + 4, one to three more when a block's last units do not
    // cover a request whose prompt is a little longer.
    expect(reserves()).toBeLessThanOrEqual(8);
    expect(reserves()).toBeGreaterThan(0);
    // While blocks are open the journal holds their lines.
    expect(readdirSync(dir).filter((f) => f.endsWith(".journal")).length).toBeGreaterThan(0);
    await gateway!.usage.flush();
    const l = await ledger(store, keyId);
    expect(l.records).toHaveLength(100);
    expect(l.records.every((r) => r.success && r.quota > 0)).toBe(true);
    expect(l.billed).toBe(l.used);
    expect(l.used + l.remain).toBe(INITIAL);
    // No row left: recovering everything there is, far in the future, finds nothing.
    expect(await store.recoverReservations(Date.now() + 10 * 86_400_000, 1_000)).toEqual([]);
    await gateway!.close();
    // A clean close removes the journal.
    expect(readdirSync(dir).filter((f) => f.includes(".journal"))).toEqual([]);
  });

  it("a key's first request since the last flush reserves alone; a block from its second", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tp-blocks-"));
    dirs.push(dir);
    const { store, reserves } = journaled(dir);
    const { client, keyId } = await serve(store);
    const ask = () =>
      client.chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: "hi" }],
      });
    // A key used now and then: one reservation per request, no block (a block would cost a
    // reservation and a settlement for one request).
    for (let i = 0; i < 3; i++) {
      await ask();
      await gateway!.usage.flush();
    }
    expect(reserves()).toBe(3);
    const journals = () =>
      readdirSync(dir)
        .filter((f) => f.endsWith(".journal"))
        .map((f) => readFileSync(join(dir, f), "utf8"))
        .join("");
    expect(journals()).not.toContain('"t":"B"');
    // A busy key: the first request alone, then one block for the next ones.
    for (let i = 0; i < 10; i++) await ask();
    expect(reserves()).toBe(3 + 2);
    expect(journals()).toContain('"t":"B"');
    await gateway!.usage.flush();
    const l = await ledger(store, keyId);
    expect(l.records).toHaveLength(13);
    expect(l.billed).toBe(l.used);
    expect(l.used + l.remain).toBe(INITIAL);
  });

  it("without a journal directory, or with quotaBlocks: false, every request reserves alone", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tp-blocks-"));
    dirs.push(dir);
    const { store, reserves } = journaled(dir);
    const { client } = await serve(store, { quotaBlocks: false });
    for (let i = 0; i < 10; i++)
      await client.chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: "hi" }],
      });
    expect(reserves()).toBe(10);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("request and response bodies of the request log never reach the journal", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tp-blocks-"));
    dirs.push(dir);
    const { store } = journaled(dir);
    const { client } = await serve(store);
    await gateway!.settings.set({ "request-log": true });
    const secretPrompt = "prompt-that-must-not-be-on-disk-7f3a";
    for (let i = 0; i < 5; i++)
      await client.chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: secretPrompt }],
      });
    const files = readdirSync(dir).filter((f) => f.endsWith(".journal"));
    expect(files.length).toBeGreaterThan(0);
    const text = files.map((f) => readFileSync(join(dir, f), "utf8")).join("");
    expect(text).toContain('"t":"D"');
    expect(text).not.toContain(secretPrompt);
    expect(text).not.toContain("sk-up-blocks");
  });
});

describe("the usage writer's full batch", () => {
  it("is written after the answer of the request that filled it, not ahead of it", async () => {
    const base = memoryStore();
    const responses: ServerResponse[] = [];
    /** Per batch written: whether the answer of the request that filled it had been written. */
    const answeredFirst: boolean[] = [];
    const store: Store = {
      ...base,
      commitUsage(...args) {
        answeredFirst.push(responses.at(-1)!.writableEnded);
        return base.commitUsage(...args);
      },
    };
    mock = await createMockUpstream({ apiKeys: ["sk-up-blocks"] });
    // Batches of one, by size only: each request fills a batch.
    gateway = createGateway({
      store,
      secret: SECRET,
      logger: false,
      usage: { maxBatch: 1, flushIntervalMs: 60_000 },
    });
    await gateway.credentials.add({
      provider: "openai",
      kind: "api-key",
      baseUrl: mock.url,
      secret: { apiKey: "sk-up-blocks" },
    });
    const { key } = await gateway.keys.create({ name: "batch", remainQuota: INITIAL });
    const handle = toNodeHandler(gateway);
    server = createServer((req, res) => {
      if (req.url?.startsWith("/v1/chat")) responses.push(res);
      handle(req, res);
    });
    await new Promise<void>((r) => server!.listen(0, "127.0.0.1", () => r()));
    const { port } = server.address() as AddressInfo;
    const client = new OpenAI({
      apiKey: key,
      baseURL: `http://127.0.0.1:${port}/v1`,
      maxRetries: 0,
    });
    for (let i = 0; i < 3; i++) {
      await client.chat.completions.create({
        model: "gpt-4o-mini",
        stream: i === 2,
        messages: [{ role: "user", content: `hello ${i}` }],
      });
    }
    await expect.poll(() => answeredFirst.length).toBe(3);
    expect(answeredFirst).toEqual([true, true, true]);
  });
});

describe("replayJournal", () => {
  const route = "POST /v1/chat/completions";
  const rec = (requestId: string, quota: number) =>
    fixtures.usage({ requestId, quota, route, keyId: 0 });

  it("writes what the dead writer had not, once: finished requests, cut ones, the untaken rest", async () => {
    const store = memoryStore();
    const key = await store.keys.create(fixtures.key({ remainQuota: 10_000 }));
    const r = await store.reserveQuota(key.id, 1_000, { requestId: "block", route, model: "m" });
    if (!r.ok) throw new Error("not reserved");
    const res = r.reservation;
    const now = Date.now();
    const take = (q: string, u: number): JournalEntry => ({
      t: "T",
      b: res.id,
      u,
      q,
      ro: route,
      m: "gpt-4o-mini",
      ts: now,
    });
    const done = (q: string, u: number, a: number): JournalEntry => ({
      t: "D",
      b: res.id,
      q,
      u,
      a,
      rec: { ...rec(q, a), keyId: key.id },
    });
    const entries: JournalEntry[] = [
      { t: "B", r: res },
      take("r1", 100),
      take("r2", 100),
      take("r3", 100),
      done("r1", 100, 50),
      done("r2", 100, 150),
    ];
    // The live writer wrote r1's commit before the process died.
    await store.commitUsage(
      [
        {
          reservation: res,
          share: 100,
          actualUnits: 50,
          record: { ...rec("r1", 50), keyId: key.id },
        },
      ],
      Math.floor(now / 1000),
    );
    const first = await replayJournal(store, entries, Math.floor(now / 1000));
    expect(first.blocks).toBe(1);
    expect(first.records.map((x) => [x.requestId, x.quota, x.recovered === true])).toEqual([
      ["r2", 150, false],
      ["r3", 100, true],
    ]);
    const after = (await store.keys.get(key.id))!;
    expect(after.usedQuota).toBe(50 + 150 + 100);
    expect(after.remainQuota).toBe(10_000 - 300);
    expect(await store.reservationUnits!(res.id)).toBeNull();
    // A replayer that died half-way is replayed again: nothing is written twice.
    const again = await replayJournal(store, entries, Math.floor(now / 1000));
    expect(again).toEqual({ records: [], blocks: 0 });
    expect((await store.keys.get(key.id))!.usedQuota).toBe(300);
    const all = (await store.usage.list({ keyId: key.id, limit: 100 })).items;
    expect(all.map((x) => x.requestId).sort()).toEqual(["r1", "r2", "r3"]);
  });

  it("a replay cut after its commit only gives back the untaken rest the second time", async () => {
    const store = memoryStore();
    const key = await store.keys.create(fixtures.key({ remainQuota: 10_000 }));
    const r = await store.reserveQuota(key.id, 1_000, {});
    if (!r.ok) throw new Error("not reserved");
    const res = r.reservation;
    const now = Math.floor(Date.now() / 1000);
    const entries: JournalEntry[] = [
      { t: "B", r: res },
      { t: "T", b: res.id, u: 200, q: "a", ro: route, m: "m", ts: 1 },
      { t: "D", b: res.id, q: "a", u: 200, a: 120, rec: { ...rec("a", 120), keyId: key.id } },
    ];
    // The first replayer committed the request, then died before giving the rest back.
    await store.commitUsage(
      [
        {
          reservation: res,
          share: 200,
          actualUnits: 120,
          record: { ...rec("a", 120), keyId: key.id },
        },
      ],
      now,
    );
    expect(await store.reservationUnits!(res.id)).toBe(800);
    const out = await replayJournal(store, entries, now);
    expect(out.records).toEqual([]);
    expect(out.blocks).toBe(1);
    const k = (await store.keys.get(key.id))!;
    expect(k.usedQuota).toBe(120);
    expect(k.remainQuota).toBe(10_000 - 120);
    expect(await store.reservationUnits!(res.id)).toBeNull();
  });

  it("skips blocks the store no longer holds and entries it cannot read", async () => {
    const store = memoryStore();
    const key = await store.keys.create(fixtures.key({ remainQuota: 5_000 }));
    const r = await store.reserveQuota(key.id, 500, {});
    if (!r.ok) throw new Error("not reserved");
    await store.settleQuota(r.reservation, 0, Math.floor(Date.now() / 1000));
    const out = await replayJournal(
      store,
      [null, 7, { t: "X" }, { t: "B", r: r.reservation }, { t: "T", b: "other", u: 1 }],
      Math.floor(Date.now() / 1000),
    );
    expect(out).toEqual({ records: [], blocks: 0 });
    expect((await store.keys.get(key.id))!.remainQuota).toBe(5_000);
  });
});
