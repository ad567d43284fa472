import { randomBytes } from "node:crypto";
import {
  KeyStatus,
  type NewApiKey,
  type NewCredential,
  type NewUsageRecord,
  type NewUser,
} from "@tokenpool/core";
import { credentialDefaults } from "@tokenpool/core/store-kernel";

let counter = 0;
/** A short string that no other fixture of this process has used. */
const unique = (): string => `${(++counter).toString(36)}${randomBytes(4).toString("hex")}`;
const nowSeconds = (): number => Math.floor(Date.now() / 1000);

/**
 * Builders of valid store inputs for tests. Every call returns a new object with unique values
 * where the store requires uniqueness (`keyHash`, `username`, `requestId`); `overrides` replace
 * the defaults field by field.
 *
 * @example
 * ```ts
 * const user = await store.users.create(fixtures.user({ quota: 50 }));
 * const key = await store.keys.create(fixtures.key({ userId: user.id, remainQuota: 100 }));
 * ```
 */
export const fixtures = {
  /** A {@link NewApiKey}: enabled, 500000 units (1 USD), no owner, never expires. */
  key(overrides: Partial<NewApiKey> = {}): NewApiKey {
    const u = unique();
    return {
      userId: null,
      name: `key ${u}`,
      keyHash: `hash-${u}`,
      keyCipher: null,
      keyHint: `sk-${u.slice(0, 4)}****${u.slice(-4)}`,
      status: KeyStatus.Enabled,
      remainQuota: 500_000,
      usedQuota: 0,
      unlimitedQuota: false,
      expiredTime: -1,
      modelLimitsEnabled: false,
      modelLimits: [],
      allowIps: [],
      group: "default",
      createdTime: nowSeconds(),
      accessedTime: 0,
      ...overrides,
    };
  },

  /** A {@link NewUser}: an enabled `user` with 500000 units and no access token. */
  user(overrides: Partial<NewUser> = {}): NewUser {
    const u = unique();
    return {
      username: `user-${u}`,
      displayName: `User ${u}`,
      role: "user",
      status: 1,
      group: "default",
      quota: 500_000,
      usedQuota: 0,
      accessTokenHash: null,
      createdTime: nowSeconds(),
      ...overrides,
    };
  },

  /** A {@link NewCredential}: an enabled OpenAI API key without an id (the store generates one). */
  credential(overrides: Partial<NewCredential> = {}): NewCredential {
    const u = unique();
    return {
      provider: "openai",
      kind: "api-key",
      label: `credential ${u}`,
      baseUrl: "https://api.openai.com/v1",
      secret: { apiKey: `sk-test-${u}` },
      ...credentialDefaults(),
      ...overrides,
    };
  },

  /** A {@link NewUsageRecord}: a successful, non-streamed chat completion made now. */
  usage(overrides: Partial<NewUsageRecord> = {}): NewUsageRecord {
    return {
      timestamp: Date.now(),
      requestId: `req-${unique()}`,
      keyId: null,
      userId: null,
      credentialId: null,
      provider: "openai",
      route: "POST /v1/chat/completions",
      model: "gpt-4o-mini",
      stream: false,
      status: 200,
      success: true,
      inputTokens: 10,
      outputTokens: 20,
      reasoningTokens: 0,
      cachedTokens: 0,
      totalTokens: 30,
      quota: 15,
      durationMs: 100,
      error: null,
      ...overrides,
    };
  },
};
