/**
 * Credential limits of the management lists live in `config.yaml` as the items' extra fields
 * (`rpm-limit`, `tpm-limit`, `max-concurrency`, `spend-limit-day`, `spend-limit-month`): written
 * there by the management API, read back on the next start, and taken from a hand edit.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createGateway, type Gateway } from "@tokenpool/core";
import { afterEach, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { fileStore } from "../src/index.js";

const SECRET = "file-store-limits-secret-0123456789-abcdef";
const MANAGEMENT_KEY = "tp-mgmt-file-limits-0123456789abcdef";
const dirs: string[] = [];

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function open(dir: string): Promise<Gateway> {
  const gateway = createGateway({ store: fileStore({ dir }), secret: SECRET, logger: false });
  await gateway.ready;
  return gateway;
}

function mgmt(gateway: Gateway, method: string, path: string, body?: unknown) {
  return gateway.handler(
    new Request(`http://127.0.0.1/v0/management${path}`, {
      method,
      headers: {
        authorization: `Bearer ${MANAGEMENT_KEY}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    }),
    { remoteAddress: "127.0.0.1" },
  );
}

describe("credential limits in config.yaml", () => {
  it("are written by the management API, read back on restart, and taken from a hand edit", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tp-file-limits-"));
    dirs.push(dir);
    let gateway = await open(dir);
    await gateway.management.setKey(MANAGEMENT_KEY);
    const put = await mgmt(gateway, "PUT", "/claude-api-key", [
      { "api-key": "sk-a", "rpm-limit": 7, "max-concurrency": 1 },
      { "api-key": "sk-b" },
    ]);
    expect(put.status).toBe(200);
    await gateway.close();

    const file = join(dir, "config.yaml");
    expect(parse(readFileSync(file, "utf8"))["claude-api-key"]).toEqual([
      { "api-key": "sk-a", "base-url": "", "rpm-limit": 7, "max-concurrency": 1 },
      { "api-key": "sk-b", "base-url": "" },
    ]);

    gateway = await open(dir);
    // The limits set: a field at 0 is none (a hand edit's 0 may stay stored as 0).
    const limits = () =>
      gateway.credentials.pool
        .list()
        .map((c) => [
          c.secret.apiKey,
          Object.fromEntries(Object.entries(c.limits ?? {}).filter(([, n]) => n > 0)),
        ]);
    expect(limits()).toEqual([
      ["sk-a", { rpm: 7, maxConcurrency: 1 }],
      ["sk-b", {}],
    ]);
    await gateway.close();

    // A hand edit: a limit changed, one added, one removed with 0.
    const config = parse(readFileSync(file, "utf8"));
    config["claude-api-key"][0] = {
      ...config["claude-api-key"][0],
      "rpm-limit": 9,
      "spend-limit-month": 5000,
      "max-concurrency": 0,
    };
    writeFileSync(file, stringify(config));
    gateway = await open(dir);
    expect(limits()).toEqual([
      ["sk-a", { rpm: 9, spendPerMonth: 5000 }],
      ["sk-b", {}],
    ]);
    await gateway.close();
  });
});
