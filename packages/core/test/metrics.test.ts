/**
 * Prometheus metrics through the real HTTP surface: a gateway on the memory store behind a
 * node:http server on port 0, the mock upstream (two credentials), and `GET /metrics` scraped
 * after JSON, streamed, failed-over, quota-refused, rate-limited and queued requests, with the
 * exposition text read by an independent parser (below) and every counter checked for its exact
 * value. Also: who may scrape (management key, metrics token, nobody else), label cardinality
 * (no key ids unless `keyLabels`, model and group caps), several gateways in one process, the
 * options' validation, OAuth refreshes counted from a real refresh.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import {
  createMockOAuth,
  createMockUpstream,
  type MockOAuthServer,
  type MockUpstream,
} from "@tokenpool/testing";
import OpenAI from "openai";
import { type OpenMetricsContentType, Registry } from "prom-client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  createGateway,
  type Gateway,
  type GatewayOptions,
  isGatewayError,
  memoryStore,
} from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

// ---------------------------------------------------------------------------------------------
// An independent parser of the Prometheus text exposition format (version 0.0.4)

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
interface Exposition {
  types: Map<string, string>;
  help: Map<string, string>;
  samples: Sample[];
}

/**
 * Parses the text format: `# HELP`, `# TYPE`, and `name{label="value",...} value` lines, label
 * values with the `\\`, `\"` and `\n` escapes. Throws on anything else, on a sample of a family
 * whose TYPE came after it or never, on a histogram whose buckets decrease or whose `+Inf` bucket
 * is not its `_count`, and on a repeated series.
 */
function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  const samples: Sample[] = [];
  const seen = new Set<string>();
  const nameRe = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
  for (const line of text.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
      if (!m) throw new Error(`bad comment line: ${line}`);
      if (m[1] === "TYPE") {
        if (!["counter", "gauge", "histogram", "summary", "untyped"].includes(m[3]!))
          throw new Error(`bad type: ${line}`);
        if (types.has(m[2]!)) throw new Error(`TYPE twice: ${line}`);
        types.set(m[2]!, m[3]!);
      } else help.set(m[2]!, m[3]!);
      continue;
    }
    const name = nameRe.exec(line)?.[0];
    if (!name) throw new Error(`bad sample line: ${line}`);
    let i = name.length;
    const labels: Record<string, string> = {};
    if (line[i] === "{") {
      i++;
      while (line[i] !== "}") {
        const ln = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i))?.[0];
        if (!ln || line[i + ln.length] !== "=" || line[i + ln.length + 1] !== '"')
          throw new Error(`bad label at ${i}: ${line}`);
        i += ln.length + 2;
        let v = "";
        for (;;) {
          const c = line[i++];
          if (c === undefined) throw new Error(`unterminated label value: ${line}`);
          if (c === '"') break;
          if (c === "\\") {
            const e = line[i++];
            v += e === "n" ? "\n" : e === "\\" ? "\\" : e === '"' ? '"' : `\\${e}`;
          } else v += c;
        }
        if (ln in labels) throw new Error(`label twice: ${line}`);
        labels[ln] = v;
        if (line[i] === ",") i++;
        else if (line[i] !== "}") throw new Error(`bad label separator: ${line}`);
      }
      i++;
    }
    const rest = line.slice(i).trim().split(/\s+/);
    if (rest.length < 1 || rest.length > 2) throw new Error(`bad value: ${line}`);
    const value = rest[0] === "+Inf" ? Infinity : rest[0] === "-Inf" ? -Infinity : Number(rest[0]);
    if (Number.isNaN(value) && rest[0] !== "NaN") throw new Error(`bad number: ${line}`);
    const family = [name, name.replace(/_(bucket|sum|count)$/, "")].find((n) => types.has(n));
    if (!family) throw new Error(`sample before its TYPE: ${line}`);
    const key = seriesKey(name, labels);
    if (seen.has(key)) throw new Error(`series twice: ${line}`);
    seen.add(key);
    samples.push({ name, labels, value });
  }
  // Histograms: cumulative buckets, +Inf = _count.
  for (const [family, type] of types) {
    if (type !== "histogram") continue;
    const groups = new Map<string, Sample[]>();
    for (const s of samples.filter((x) => x.name === `${family}_bucket`)) {
      const { le, ...rest } = s.labels;
      if (le === undefined) throw new Error(`bucket without le: ${family}`);
      const k = seriesKey(family, rest);
      groups.set(k, [...(groups.get(k) ?? []), s]);
    }
    for (const [k, buckets] of groups) {
      const ordered = buckets
        .map((b) => ({ le: b.labels.le === "+Inf" ? Infinity : Number(b.labels.le), v: b.value }))
        .sort((a, b) => a.le - b.le);
      for (let j = 1; j < ordered.length; j++)
        if (ordered[j]!.v < ordered[j - 1]!.v) throw new Error(`buckets decrease: ${k}`);
      const inf = ordered.at(-1);
      if (inf?.le !== Infinity) throw new Error(`no +Inf bucket: ${k}`);
      const labels = { ...buckets[0]!.labels };
      delete labels.le;
      const count = samples.find(
        (s) => s.name === `${family}_count` && seriesKey(family, s.labels) === k,
      );
      if (count?.value !== inf.v) throw new Error(`+Inf bucket is not _count: ${k}`);
    }
  }
  return { types, help, samples };
}

function seriesKey(name: string, labels: Record<string, string>): string {
  return `${name}{${Object.keys(labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`)
    .join(",")}}`;
}

/** The value of one series (0 when absent: a counter that never moved). */
function sampleValue(e: Exposition, name: string, labels: Record<string, string> = {}): number {
  const key = seriesKey(name, labels);
  return e.samples.find((s) => seriesKey(s.name, s.labels) === key)?.value ?? 0;
}

// ---------------------------------------------------------------------------------------------

const SECRET = "metrics-test-secret-0123456789-abcdefghij";
const MANAGEMENT_KEY = "tp-mgmt-metrics-test-0123456789abcdef";
const METRICS_TOKEN = "metrics-token-0123456789abcdef";
const UPSTREAM_KEYS = [
  "sk-upstream-metrics-one-0a1b2c3d4e5f",
  "sk-upstream-metrics-two-8293a4b5c6d7",
];
const MODEL = "gpt-4o-mini";
/** Every served request reports these counts (the mock's `usage` option). */
const USAGE = { prompt: 11, completion: 7, cached: 3, reasoning: 2 };

interface Running {
  gateway: Gateway;
  server: Server;
  base: string;
}
const running: Running[] = [];

async function start(options: Partial<GatewayOptions> = {}): Promise<Running> {
  const gateway = createGateway({
    store: memoryStore(),
    secret: SECRET,
    logger: false,
    usage: { flushIntervalMs: 10 },
    ...options,
  });
  const server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const r = { gateway, server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
  running.push(r);
  return r;
}

async function stop(r: Running): Promise<void> {
  const at = running.indexOf(r);
  if (at >= 0) running.splice(at, 1);
  r.server.closeAllConnections();
  await new Promise((done) => r.server.close(done));
  await r.gateway.close();
}

async function scrape(
  r: Running,
  authorization = `Bearer ${MANAGEMENT_KEY}`,
): Promise<{ status: number; type: string | null; text: string }> {
  const res = await fetch(`${r.base}/metrics`, { headers: { authorization } });
  return { status: res.status, type: res.headers.get("content-type"), text: await res.text() };
}

let mock: MockUpstream;

beforeAll(async () => {
  mock = await createMockUpstream({
    apiKeys: UPSTREAM_KEYS,
    usage: () => ({
      prompt_tokens: USAGE.prompt,
      completion_tokens: USAGE.completion,
      prompt_tokens_details: { cached_tokens: USAGE.cached },
      completion_tokens_details: { reasoning_tokens: USAGE.reasoning },
    }),
  });
});

afterEach(async () => {
  for (const r of [...running]) await stop(r);
  mock.reset();
});

afterAll(async () => {
  await mock.close();
});

async function addCredentials(gw: Gateway, models = [{ name: MODEL }]): Promise<string[]> {
  const ids: string[] = [];
  for (const apiKey of UPSTREAM_KEYS) {
    const c = await gw.credentials.add({
      provider: "openai",
      kind: "api-key",
      baseUrl: mock.url,
      secret: { apiKey },
      models,
    });
    ids.push(c.id);
  }
  return ids;
}

function client(r: Running, key: string): OpenAI {
  return new OpenAI({ apiKey: key, baseURL: `${r.base}/v1`, maxRetries: 0 });
}

const ask = (c: OpenAI, model = MODEL) =>
  c.chat.completions.create({ model, messages: [{ role: "user", content: "hello" }] });

describe("GET /metrics", () => {
  it("counts JSON, streamed, failed-over, quota-refused, rate-limited and queued requests exactly", async () => {
    const r = await start({ metrics: { token: METRICS_TOKEN } });
    await r.gateway.management.setKey(MANAGEMENT_KEY);
    const [first] = await addCredentials(r.gateway);
    const main = await r.gateway.keys.create({ name: "main-key", unlimitedQuota: true });
    const poor = await r.gateway.keys.create({ name: "poor-key", remainQuota: 1 });
    const limited = await r.gateway.keys.create({
      name: "limited-key",
      unlimitedQuota: true,
      limits: { rpm: 1 },
    });
    const queued = await r.gateway.keys.create({
      name: "queued-key",
      unlimitedQuota: true,
      limits: { maxConcurrency: 1, queueTimeoutMs: 5000 },
    });

    // JSON, stream.
    await ask(client(r, main.key));
    const stream = await client(r, main.key).chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "hello" }],
      stream: true,
    });
    for await (const _ of stream);
    // Failed over: the first credential tried answers 500, the other one serves.
    mock.fail({ status: 500 });
    await ask(client(r, main.key));
    // Refused for quota.
    await expect(ask(client(r, poor.key))).rejects.toBeInstanceOf(OpenAI.RateLimitError);
    // Rate-limited: rpm 1.
    await ask(client(r, limited.key));
    await expect(ask(client(r, limited.key))).rejects.toBeInstanceOf(OpenAI.RateLimitError);
    // Queued: two at once on a concurrency of 1, the upstream slow enough for the second to wait.
    mock.fail({ delayMs: 150, times: 2 });
    await Promise.all([ask(client(r, queued.key)), ask(client(r, queued.key))]);
    // A disabled credential.
    await r.gateway.credentials.update(first!, { enabled: false });

    const res = await scrape(r);
    expect(res.status).toBe(200);
    expect(res.type).toBe("text/plain; version=0.0.4; charset=utf-8");
    const m = parseExposition(res.text);

    const served = 6; // json, stream, failover, rpm's first, two queued
    const base = { format: "openai", model: MODEL, group: "default" };
    expect(sampleValue(m, "tokenpool_requests_total", { ...base, status_class: "2xx" })).toBe(
      served,
    );
    expect(sampleValue(m, "tokenpool_requests_total", { ...base, status_class: "4xx" })).toBe(2);
    expect(
      m.samples
        .filter((s) => s.name === "tokenpool_requests_total")
        .reduce((t, s) => t + s.value, 0),
    ).toBe(served + 2);
    expect(
      sampleValue(m, "tokenpool_request_errors_total", {
        format: "openai",
        type: "quota_exhausted",
      }),
    ).toBe(1);
    expect(
      sampleValue(m, "tokenpool_request_errors_total", { format: "openai", type: "rate_limited" }),
    ).toBe(1);
    for (const [type, n] of [
      ["input", USAGE.prompt],
      ["output", USAGE.completion],
      ["cached", USAGE.cached],
      ["reasoning", USAGE.reasoning],
    ] as const) {
      expect(sampleValue(m, "tokenpool_tokens_total", { type, model: MODEL })).toBe(served * n);
    }
    // Cost: what the usage records charged, to the unit.
    await r.gateway.usage.flush();
    const records = (await r.gateway.usage.list({ limit: 100 })).items;
    expect(records).toHaveLength(served + 2);
    const charged = records.reduce((t, x) => t + x.quota, 0);
    expect(charged).toBeGreaterThan(0);
    expect(
      sampleValue(m, "tokenpool_cost_quota_units_total", { model: MODEL, group: "default" }),
    ).toBe(charged);
    // Durations and first bytes: every served request (refusals have none).
    const fm = { format: "openai", model: MODEL };
    expect(sampleValue(m, "tokenpool_request_duration_seconds_count", fm)).toBe(served);
    expect(sampleValue(m, "tokenpool_time_to_first_byte_seconds_count", fm)).toBe(served);
    expect(sampleValue(m, "tokenpool_request_duration_seconds_sum", fm)).toBeGreaterThan(0.3); // queued waits
    // Upstream calls: 6 answered 2xx, one 5xx.
    const up = (c: string) =>
      sampleValue(m, "tokenpool_upstream_duration_seconds_count", {
        provider: "openai",
        status_class: c,
      });
    expect(up("2xx")).toBe(served);
    expect(up("5xx")).toBe(1);
    expect(sampleValue(m, "tokenpool_upstream_retries_total")).toBe(1);
    expect(sampleValue(m, "tokenpool_failovers_total", { result: "served" })).toBe(1);
    expect(sampleValue(m, "tokenpool_failovers_total", { result: "failed" })).toBe(0);
    // Refusals, from the events.
    expect(sampleValue(m, "tokenpool_quota_refusals_total", { reason: "key_quota" })).toBe(1);
    expect(sampleValue(m, "tokenpool_limit_refusals_total", { scope: "key", limit: "rpm" })).toBe(
      1,
    );
    // Queue waits: both queued requests admitted, the second after the first's 150 ms.
    expect(sampleValue(m, "tokenpool_queue_wait_seconds_count", { result: "admitted" })).toBe(2);
    expect(sampleValue(m, "tokenpool_queue_wait_seconds_count", { result: "refused" })).toBe(0);
    expect(
      sampleValue(m, "tokenpool_queue_wait_seconds_sum", { result: "admitted" }),
    ).toBeGreaterThan(0.1);
    // Credentials: one disabled; the other active, or cooling after the 500 it may have answered.
    const cred = (state: string) =>
      sampleValue(m, "tokenpool_credentials", { provider: "openai", state });
    expect(cred("disabled")).toBe(1);
    expect(cred("active") + cred("cooling")).toBe(1);
    expect(m.types.get("tokenpool_credentials")).toBe("gauge");
    expect(m.types.get("tokenpool_requests_total")).toBe("counter");
    expect(m.types.get("tokenpool_upstream_duration_seconds")).toBe("histogram");

    // No key ids, key names, keys or upstream secrets in the output.
    for (const secret of [main.key, poor.key, limited.key, ...UPSTREAM_KEYS, METRICS_TOKEN])
      expect(res.text).not.toContain(secret);
    for (const name of ["main-key", "poor-key", "limited-key", "queued-key"])
      expect(res.text).not.toContain(name);
    expect(res.text).not.toMatch(/key="/);
    expect(res.text).not.toMatch(/tokenpool_key_/);

    // The registry itself gives the same text, without the HTTP route.
    expect(await r.gateway.metrics.registry.metrics()).toContain(
      `tokenpool_requests_total{format="openai",model="${MODEL}",status_class="2xx",group="default"} ${served}`,
    );
    expect(r.gateway.metrics.enabled).toBe(true);
  });

  it("answers 401 without credentials or with a wrong one, 200 with the metrics token", async () => {
    const r = await start({ metrics: { token: METRICS_TOKEN } });
    await r.gateway.management.setKey(MANAGEMENT_KEY);
    const none = await fetch(`${r.base}/metrics`);
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toContain("Bearer");
    expect(await none.json()).toMatchObject({ error: expect.stringContaining("unauthorized") });
    expect((await scrape(r, "Bearer not-the-token-at-all-0000")).status).toBe(401);
    expect((await scrape(r, `Bearer ${METRICS_TOKEN}`)).status).toBe(200);
    expect((await scrape(r, `Bearer ${MANAGEMENT_KEY}`)).status).toBe(200);
    // Only GET.
    const post = await fetch(`${r.base}/metrics`, { method: "POST" });
    expect(post.status).toBe(405);
  });

  it("without a metrics token only the management key reads it; none set: 401 saying how", async () => {
    const r = await start();
    const res = await scrape(r, "Bearer anything-0123456789");
    expect(res.status).toBe(401);
    expect(res.text).toContain("metrics.token");
    await r.gateway.management.setKey(MANAGEMENT_KEY);
    expect((await scrape(r)).status).toBe(200);
    expect((await scrape(r, "Bearer wrong-management-key-000000")).status).toBe(401);
  });

  it("is a 404 when metrics are off, and the gateway keeps none", async () => {
    for (const metrics of [false, { enabled: false }] as const) {
      const r = await start({ metrics });
      await r.gateway.management.setKey(MANAGEMENT_KEY);
      await addCredentials(r.gateway);
      const { key } = await r.gateway.keys.create({ name: "k", unlimitedQuota: true });
      await ask(client(r, key));
      const res = await scrape(r);
      expect(res.status).toBe(404);
      expect(r.gateway.metrics.enabled).toBe(false);
      expect(await r.gateway.metrics.registry.metrics()).toBe("\n");
      await stop(r);
    }
  });
});

describe("label cardinality", () => {
  it("keyLabels adds per-key families labelled with the key id, nothing else", async () => {
    const r = await start({ metrics: { keyLabels: true } });
    await r.gateway.management.setKey(MANAGEMENT_KEY);
    await addCredentials(r.gateway);
    const k = await r.gateway.keys.create({ name: "labelled", unlimitedQuota: true });
    await ask(client(r, k.key));
    await ask(client(r, k.key));
    const m = parseExposition((await scrape(r)).text);
    const id = String(k.record.id);
    expect(sampleValue(m, "tokenpool_key_requests_total", { key: id, status_class: "2xx" })).toBe(
      2,
    );
    expect(sampleValue(m, "tokenpool_key_tokens_total", { key: id, type: "input" })).toBe(
      2 * USAGE.prompt,
    );
    expect(sampleValue(m, "tokenpool_key_cost_quota_units_total", { key: id })).toBeGreaterThan(0);
    expect((await scrape(r)).text).not.toContain(k.key);
  });

  it("keeps at most maxLabelValues models and groups; unknown models never become labels", async () => {
    const r = await start({ metrics: { maxLabelValues: 1 } });
    await r.gateway.management.setKey(MANAGEMENT_KEY);
    await addCredentials(r.gateway, []);
    const k = await r.gateway.keys.create({ name: "k", unlimitedQuota: true });
    const vip = await r.gateway.keys.create({ name: "v", unlimitedQuota: true, group: "vip" });
    await r.gateway.credentials.add({
      provider: "openai",
      kind: "api-key",
      baseUrl: mock.url,
      secret: { apiKey: UPSTREAM_KEYS[0]! },
      groups: ["vip"],
    });
    await ask(client(r, k.key), "gpt-4o-mini");
    await ask(client(r, k.key), "gpt-4o");
    await ask(client(r, vip.key), "gpt-4o-mini");
    const m = parseExposition((await scrape(r)).text);
    const requests = m.samples.filter((s) => s.name === "tokenpool_requests_total");
    expect(new Set(requests.map((s) => s.labels.model))).toEqual(new Set(["gpt-4o-mini", "other"]));
    expect(new Set(requests.map((s) => s.labels.group))).toEqual(new Set(["default", "other"]));
    expect(requests.reduce((t, s) => t + s.value, 0)).toBe(3);

    // A model no credential serves (404) is counted as `other`, whatever its name.
    const strict = await start({ metrics: { maxLabelValues: 50 } });
    await strict.gateway.management.setKey(MANAGEMENT_KEY);
    await addCredentials(strict.gateway);
    const sk = await strict.gateway.keys.create({ name: "k", unlimitedQuota: true });
    await expect(ask(client(strict, sk.key), "made-up-model-123")).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );
    const text = (await scrape(strict)).text;
    expect(text).not.toContain("made-up-model-123");
    expect(
      sampleValue(parseExposition(text), "tokenpool_requests_total", {
        format: "openai",
        model: "other",
        status_class: "4xx",
        group: "default",
      }),
    ).toBe(1);
  });
});

describe("registries", () => {
  it("several gateways in one process each have their own registry by default", async () => {
    const a = await start();
    const b = await start();
    expect(a.gateway.metrics.registry).not.toBe(b.gateway.metrics.registry);
    expect(await a.gateway.metrics.registry.metrics()).toContain("tokenpool_requests_total");
  });

  it("a registry passed in is shared only under distinct prefixes, and freed on close", async () => {
    const registry = new Registry();
    const a = await start({ metrics: { registry } });
    let error: unknown;
    try {
      createGateway({ store: memoryStore(), secret: SECRET, logger: false, metrics: { registry } });
    } catch (e) {
      error = e;
    }
    expect(isGatewayError(error) && error.code === "INVALID_OPTIONS").toBe(true);
    expect((error as Error).message).toContain("metrics.prefix");
    const b = await start({ metrics: { registry, prefix: "second_" } });
    const text = await registry.metrics();
    expect(text).toContain("tokenpool_requests_total");
    expect(text).toContain("second_requests_total");
    expect(b.gateway.metrics.registry).toBe(registry);
    await stop(a);
    expect(await registry.metrics()).not.toContain("tokenpool_requests_total");
    const c = await start({ metrics: { registry } });
    expect(c.gateway.metrics.registry).toBe(registry);
  });

  it("serves an OpenMetrics registry in its own format, and unregisters from it on close", async () => {
    const registry = new Registry<OpenMetricsContentType>();
    registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    const r = await start({ metrics: { registry } });
    await r.gateway.management.setKey(MANAGEMENT_KEY);
    await addCredentials(r.gateway);
    const { key } = await r.gateway.keys.create({ name: "k", unlimitedQuota: true });
    await ask(client(r, key));
    const res = await scrape(r);
    expect(res.type).toBe(Registry.OPENMETRICS_CONTENT_TYPE);
    expect(res.text).toContain("# TYPE tokenpool_requests counter");
    expect(res.text).toMatch(/^tokenpool_requests_total\{format="openai".*\} 1$/m);
    expect(res.text.endsWith("# EOF\n")).toBe(true);
    await stop(r);
    expect(registry.getMetricsAsArray()).toHaveLength(0);
  });

  it("rejects bad metrics options with a message naming the option", () => {
    const bad: [unknown, string][] = [
      [{ token: "short" }, "metrics.token"],
      [{ buckets: { duration: [1, 0.5] } }, "metrics.buckets.duration"],
      [{ prefix: "9bad" }, "metrics.prefix"],
      [{ color: "red" }, "metrics.color"],
      [{ registry: {} }, "metrics.registry"],
    ];
    for (const [metrics, path] of bad) {
      expect(() =>
        createGateway({
          store: memoryStore(),
          secret: SECRET,
          logger: false,
          metrics: metrics as GatewayOptions["metrics"],
        }),
      ).toThrow(path);
    }
  });
});

describe("OAuth refreshes", () => {
  let oauth: MockOAuthServer;
  let upstream: MockUpstream;
  const REFRESH = "1//0metrics-refresh-token-AAAAAAAAAAAAAAAA";

  afterEach(async () => {
    await oauth.close();
    await upstream.close();
  });

  it("counts a refresh after a 401 as a success and a refused one as a failure", async () => {
    oauth = await createMockOAuth({ refreshTokens: [REFRESH], clientId: "tp-test" });
    upstream = await createMockUpstream({ authorize: (t) => oauth.accepts(t) });
    const r = await start({
      oauth: {
        providers: { openai: { tokenUrl: oauth.url, clientId: "tp-test" } },
        scanIntervalMs: 0,
      },
    });
    await r.gateway.management.setKey(MANAGEMENT_KEY);
    await r.gateway.credentials.add({
      provider: "openai",
      kind: "oauth",
      baseUrl: upstream.url,
      secret: {
        accessToken: "stale-token",
        refreshToken: REFRESH,
        expiresAt: Date.now() + 3_600_000,
      },
    });
    const bad = await r.gateway.credentials.add({
      provider: "openai",
      kind: "oauth",
      baseUrl: upstream.url,
      enabled: false,
      secret: {
        accessToken: "other-token",
        refreshToken: "1//0unknown-refresh-token-BBBBBBBB",
        expiresAt: Date.now() + 3_600_000,
      },
    });
    const { key } = await r.gateway.keys.create({ name: "k", unlimitedQuota: true });
    await ask(client(r, key));
    await expect(r.gateway.credentials.refresh(bad.id)).rejects.toThrow();
    const m = parseExposition((await scrape(r)).text);
    expect(
      sampleValue(m, "tokenpool_oauth_refreshes_total", { provider: "openai", result: "success" }),
    ).toBe(1);
    expect(
      sampleValue(m, "tokenpool_oauth_refreshes_total", { provider: "openai", result: "failure" }),
    ).toBe(1);
    // The upstream's 401 before the refresh is an upstream call too.
    expect(
      sampleValue(m, "tokenpool_upstream_duration_seconds_count", {
        provider: "openai",
        status_class: "4xx",
      }),
    ).toBe(1);
  });
});

describe("the exposition parser", () => {
  it("refuses malformed text", () => {
    expect(() => parseExposition("x_total 1\n")).toThrow("before its TYPE");
    expect(() => parseExposition('# TYPE x counter\nx{a="1} 1\n')).toThrow();
    expect(() =>
      parseExposition(
        '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
      ),
    ).toThrow("decrease");
    expect(parseExposition('# TYPE x counter\nx{a="q\\"\\\\\\n"} 3\n').samples[0]!.labels.a).toBe(
      'q"\\\n',
    );
  });
});
