import { describe, expect, it } from "vitest";
import { eventData, SseFramer } from "../src/formats/sse.js";
import { IpAllowList, resolveClientIp, validateIpEntry } from "../src/keys/ip.js";
import { findUsageObject } from "../src/providers/openai.js";
import { maskSecret, redactSecrets, SecretBox } from "../src/util/secrets.js";

describe("SseFramer", () => {
  const frame = (stream: string, step: number) => {
    const f = new SseFramer();
    const out: string[] = [];
    for (let i = 0; i < stream.length; i += step) {
      out.push(...f.push(Buffer.from(stream.slice(i, i + step))).map(String));
    }
    return { out, rest: f.rest() };
  };

  it("yields complete events across arbitrary chunk boundaries", () => {
    const stream = 'data: {"a":1}\n\ndata: {"b":2}\n\ndata: [DONE]\n\n';
    for (const step of [1, 5, 13, stream.length]) {
      const { out, rest } = frame(stream, step);
      expect(out).toEqual(['data: {"a":1}\n\n', 'data: {"b":2}\n\n', "data: [DONE]\n\n"]);
      expect(rest).toBeNull();
    }
    expect(eventData(Buffer.from('data: {"b":2}\n\n'))).toBe('{"b":2}');
    expect(eventData(Buffer.from("data: [DONE]\n\n"))).toBeUndefined();
  });

  it("handles CRLF streams and keeps an unterminated tail", () => {
    const { out, rest } = frame('data: {"a":1}\r\n\r\ndata: {"b":2}\r\n\r\ndata: {"c"', 3);
    expect(out).toEqual(['data: {"a":1}\r\n\r\n', 'data: {"b":2}\r\n\r\n']);
    expect(String(rest)).toBe('data: {"c"');
  });
});

describe("findUsageObject", () => {
  it("finds the usage object without being fooled by strings", () => {
    const body = {
      choices: [{ message: { content: 'tricky "usage": {"prompt_tokens": 999} }' } }],
      usage: { prompt_tokens: 3, completion_tokens: 4 },
    };
    expect(findUsageObject(Buffer.from(JSON.stringify(body)))).toEqual({
      prompt_tokens: 3,
      completion_tokens: 4,
    });
    expect(findUsageObject(Buffer.from('{"usage": {"prompt_tokens": 1, "x": "}"}}'))).toEqual({
      prompt_tokens: 1,
      x: "}",
    });
    expect(findUsageObject(Buffer.from("not json"))).toBeUndefined();
  });
});

describe("IP allowlists", () => {
  it("matches IPv4 and IPv6 addresses and CIDR ranges, including IPv4-mapped peers", () => {
    const list = new IpAllowList(["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]);
    expect(list.allows("10.1.2.3")).toBe(true);
    expect(list.allows("::ffff:10.1.2.3")).toBe(true);
    expect(list.allows("192.168.1.7")).toBe(true);
    expect(list.allows("192.168.1.8")).toBe(false);
    expect(list.allows("2001:db8::1")).toBe(true);
    expect(list.allows("2001:db9::1")).toBe(false);
    expect(list.allows("garbage")).toBe(false);
  });

  it("validates entries", () => {
    expect(validateIpEntry("10.0.0.0/8")).toBeNull();
    expect(validateIpEntry("::1")).toBeNull();
    expect(validateIpEntry("10.0.0.0/33")).toMatch(/CIDR/);
    expect(validateIpEntry("300.1.1.1")).toMatch(/invalid/);
  });

  it("believes X-Forwarded-For only from trusted proxies", () => {
    const trusted = new IpAllowList(["127.0.0.1", "10.0.0.0/8"]);
    expect(resolveClientIp("127.0.0.1", "203.0.113.9, 10.0.0.2", trusted)).toBe("203.0.113.9");
    expect(resolveClientIp("198.51.100.1", "203.0.113.9", trusted)).toBe("198.51.100.1");
    expect(resolveClientIp("127.0.0.1", "203.0.113.9", null)).toBe("127.0.0.1");
  });
});

describe("secrets", () => {
  it("hashes deterministically, encrypts reversibly, and rejects another secret's cipher", () => {
    const a = new SecretBox("a".repeat(32));
    const b = new SecretBox("b".repeat(32));
    expect(a.hash("sk-1")).toBe(a.hash("sk-1"));
    expect(a.hash("sk-1")).not.toBe(b.hash("sk-1"));
    const sealed = a.encrypt("sk-secret-value");
    expect(sealed).not.toContain("sk-secret-value");
    expect(a.decrypt(sealed)).toBe("sk-secret-value");
    expect(b.decrypt(sealed)).toBeNull();
  });

  it("masks and redacts", () => {
    expect(maskSecret("sk-abcdefghijklmnopqrstuvwxyz")).toBe("sk-abcd****wxyz");
    expect(maskSecret("short")).toBe("s****");
    expect(redactSecrets("Incorrect key: Bearer sk-abcdefghijklmnop")).not.toContain(
      "abcdefghijklmnop",
    );
  });
});

describe("hourBucket", () => {
  it("gives the UTC hour, also when consecutive calls cross an hour or go back in time", async () => {
    const { hourBucket } = await import("../src/store/util.js");
    const t = Date.UTC(2024, 4, 20, 9, 59, 59, 999);
    expect(hourBucket(t)).toBe("2024-05-20T09");
    expect(hourBucket(t + 1)).toBe("2024-05-20T10");
    expect(hourBucket(t)).toBe("2024-05-20T09");
    expect(hourBucket(Date.UTC(2023, 0, 1, 0, 0, 0))).toBe("2023-01-01T00");
    expect(hourBucket(t - 3_600_000)).toBe("2024-05-20T08");
  });
});
