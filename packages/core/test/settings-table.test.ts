import { describe, expect, expectTypeOf, it } from "vitest";
import { GatewayEmitter } from "../src/events.js";
import { SettingsService } from "../src/settings/service.js";
import {
  acceptsSetting,
  acceptsSettingField,
  DEFAULT_SETTINGS,
  RUNTIME_SETTINGS,
} from "../src/settings/table.js";
import { memoryStore } from "../src/store/memory.js";

describe("runtime settings table", () => {
  it("builds the defaults from the table, without settings that have none", () => {
    expect(DEFAULT_SETTINGS).toMatchObject({
      "routing-strategy": "round-robin",
      "credential-max-failures": 5,
      "credential-failure-window-ms": 60_000,
      debug: false,
      "proxy-url": "",
      "request-retry": 3,
      "max-retry-interval": 30,
      "request-log": false,
      "quota-exceeded": { "switch-project": true, "switch-preview-model": true },
      "allow-localhost-unauthenticated": false,
      "force-gpt-5-codex": false,
      "usage-retention-days": 30,
      "reasoning-ratio": {},
      "group-ratio": { default: 1 },
      "preview-model-fallbacks": {},
    });
    expect(Object.hasOwn(DEFAULT_SETTINGS, "remote-management")).toBe(false);
    for (const [name, d] of Object.entries(RUNTIME_SETTINGS))
      if (d.default !== undefined) expect(DEFAULT_SETTINGS[name]).toBe(d.default);
  });

  it("types settings.get by name and reads odd stored values as the engine always did", async () => {
    const store = memoryStore();
    const settings = new SettingsService(store, new GatewayEmitter(), {});
    expectTypeOf(settings.get("request-retry")).toEqualTypeOf<number>();
    expectTypeOf(settings.get("debug")).toEqualTypeOf<boolean>();
    expectTypeOf(settings.get("proxy-url")).toEqualTypeOf<string>();
    expect(settings.get("request-retry")).toBe(3);
    // @ts-expect-error an undeclared name is a type error (`raw` reads it)
    expect(settings.get("no-such-setting")).toBeUndefined();
    // Odd values as stored by older versions or a hand-edited store file (the service itself
    // refuses them: see below).
    await store.settings.set({
      "request-retry": "7",
      "max-retry-interval": "soon",
      debug: "yes",
      "proxy-url": null,
      "quota-exceeded": "off",
      "usage-retention-days": -2,
      "credential-max-failures": -1,
      "routing-strategy": "lru",
      custom: { a: 1 },
    });
    await settings.load();
    expect(settings.get("request-retry")).toBe(7);
    expect(settings.get("max-retry-interval")).toBe(0);
    expect(settings.get("debug")).toBe(false);
    expect(settings.get("proxy-url")).toBe("");
    expect(settings.get("quota-exceeded")).toEqual({});
    expect(settings.get("usage-retention-days")).toBe(0);
    expect(settings.get("credential-max-failures")).toBeUndefined();
    expect(settings.get("routing-strategy")).toBe("least-recently-used");
    expect(settings.raw("request-retry")).toBe("7");
    expect(settings.raw("custom")).toEqual({ a: 1 });
    expect(settings.get("remote-management")).toEqual({});
  });

  it("refuses a write with a bad value of a declared setting, writing nothing, without echoing it", async () => {
    const store = memoryStore();
    const settings = new SettingsService(store, new GatewayEmitter(), {});
    await settings.set({ "request-retry": 5, custom: "anything" });
    for (const bad of [
      { "request-retry": "7" },
      { "request-retry": 101 },
      { debug: "yes" },
      { "proxy-url": "ftp://user:hunter2-secret@proxy" },
      { "group-limits": [] },
    ]) {
      const write = settings.set({ "max-retry-interval": 9, ...bad });
      await expect(write).rejects.toMatchObject({ code: "INVALID_REQUEST" });
      await expect(write).rejects.toThrow(`setting ${Object.keys(bad)[0]}`);
      await expect(write).rejects.not.toThrow("hunter2");
    }
    // Nothing of a refused write was stored, nor cached.
    expect(await store.settings.get("max-retry-interval")).toBeUndefined();
    expect(settings.get("max-retry-interval")).toBe(RUNTIME_SETTINGS["max-retry-interval"].default);
    expect(settings.get("request-retry")).toBe(5);
    // null (a reset to the default by readers) and undeclared names are written as they are.
    await settings.set({ "proxy-url": null, custom: { b: 2 } });
    expect(settings.raw("custom")).toEqual({ b: 2 });
  });

  it("validates writes by type and range", () => {
    expect(acceptsSetting("request-retry", 100)).toBe(true);
    expect(acceptsSetting("request-retry", 101)).toBe(false);
    expect(acceptsSetting("request-retry", 1.5)).toBe(false);
    expect(acceptsSetting("proxy-url", "socks5://127.0.0.1:1080")).toBe(true);
    expect(acceptsSetting("proxy-url", "ftp://x")).toBe(false);
    expect(acceptsSetting("debug", "true")).toBe(false);
    expect(acceptsSetting("usage-retention-days", -1)).toBe(false);
    expect(acceptsSettingField("quota-exceeded", "switch-project", false)).toBe(true);
    expect(acceptsSettingField("quota-exceeded", "switch-project", 0)).toBe(false);
    expect(acceptsSettingField("quota-exceeded", "other", true)).toBe(false);
  });
});
