/**
 * Upstream secrets at rest: credential secrets are sealed with the server secret (the same
 * AES-256-GCM {@link SecretBox} that protects downstream keys) before they reach an adapter
 * whose format is ours (memory, SQLite, Redis), and opened when they are read back.
 *
 * The sealing happens once, here, between the adapter and everything in core: a gateway runs on
 * {@link sealedStore}, a view of the adapter whose `credentials` collection seals on
 * create/update and opens on get/list (the pool's loads and its change-notification reloads
 * included). Stored, a secret is `{ sealed: "v1.<iv>.<tag>.<ciphertext>" }` and nothing else.
 * An adapter whose format is the seeds' plaintext (store-file) declares
 * `capabilities.plaintextSecrets` and gets plain records.
 *
 * @module
 */

import type { Logger } from "../logger.js";
import type { SecretBox } from "../util/secrets.js";
import type {
  CredentialCollection,
  CredentialPatch,
  CredentialRecord,
  CredentialSecret,
  Store,
} from "./types.js";
import { REFRESH_LOCK_PREFIX } from "./types.js";

/**
 * The `disabledReason` of a credential whose stored secret does not open with this gateway's
 * server secret: it is loaded disabled (never picked), and left as stored.
 */
export const UNREADABLE_SECRET_REASON =
  "secret unreadable: it was sealed with another server secret (TOKENPOOL_SECRET); start with that secret, or rotate from it with `tokenpool rotate-secret`";

/** Whether a stored secret is in sealed form. */
export function isSealedSecret(secret: CredentialSecret): secret is { sealed: string } {
  return typeof secret.sealed === "string";
}

/** Whether a stored secret holds plaintext material (written by a version before sealing). */
export function hasPlaintextSecret(secret: CredentialSecret): boolean {
  return !isSealedSecret(secret) && Object.keys(secret).length > 0;
}

/** Seals a plain secret to its stored form; a secret already sealed is kept as it is. */
export function sealSecret(box: SecretBox, secret: CredentialSecret): CredentialSecret {
  if (isSealedSecret(secret)) return { sealed: secret.sealed };
  return { sealed: box.encrypt(JSON.stringify(secret)) };
}

/**
 * Opens a stored secret: the plain secret, the secret itself when it is plaintext (an earlier
 * version wrote it), or null when it was sealed with another server secret (or tampered with).
 */
export function openSecret(box: SecretBox, secret: CredentialSecret): CredentialSecret | null {
  if (!isSealedSecret(secret)) return secret;
  const plain = box.decrypt(secret.sealed);
  if (plain === null) return null;
  try {
    const v = JSON.parse(plain) as unknown;
    return typeof v === "object" && v !== null && !Array.isArray(v)
      ? (v as CredentialSecret)
      : null;
  } catch {
    return null;
  }
}

/**
 * The credentials collection of `inner` with secrets sealed on the way in and opened on the way
 * out. `update` keeps the adapters' semantics: a `secret` in a patch replaces the whole stored
 * secret, sealed or not. A record whose secret does not open is returned with an empty secret,
 * disabled, with {@link UNREADABLE_SECRET_REASON}; `onUnreadable` is told its id.
 */
export function sealedCredentials(
  inner: CredentialCollection,
  box: SecretBox,
  onUnreadable: (id: string, readable: boolean) => void = () => {},
): CredentialCollection {
  const open = (rec: CredentialRecord): CredentialRecord => {
    const secret = openSecret(box, rec.secret);
    onUnreadable(rec.id, secret !== null);
    if (secret !== null) return { ...rec, secret };
    return {
      ...rec,
      secret: {},
      enabled: false,
      state: { ...rec.state, disabledReason: UNREADABLE_SECRET_REASON },
    };
  };
  return {
    async create(input) {
      return open(await inner.create({ ...input, secret: sealSecret(box, input.secret) }));
    },
    async get(id) {
      const rec = await inner.get(id);
      return rec && open(rec);
    },
    async list() {
      return (await inner.list()).map(open);
    },
    async update(id, patch) {
      let sealed: CredentialPatch =
        patch.secret === undefined ? patch : { ...patch, secret: sealSecret(box, patch.secret) };
      // The reason is this view's, not the record's: a state written back from it must not keep it.
      if (sealed.state?.disabledReason === UNREADABLE_SECRET_REASON)
        sealed = { ...sealed, state: { ...sealed.state, disabledReason: null } };
      const rec = await inner.update(id, sealed);
      return rec && open(rec);
    },
    delete: (id) => inner.delete(id),
  };
}

/**
 * The view of `store` a gateway runs on: the same adapter, with {@link sealedCredentials} as its
 * `credentials`. An adapter with `capabilities.plaintextSecrets` is returned as it is. An
 * unreadable secret is logged once per credential (its id and the cause, never a secret).
 *
 * @example
 * ```ts
 * const view = sealedStore(sqliteStore({ filename }), new SecretBox(secret), logger);
 * await view.credentials.create({ ...input, secret: { apiKey } }); // the file holds { sealed }
 * ```
 */
export function sealedStore(store: Store, box: SecretBox, logger: Logger): Store {
  if (store.capabilities.plaintextSecrets === true) return store;
  const reported = new Set<string>();
  const credentials = sealedCredentials(store.credentials, box, (id, readable) => {
    if (readable) {
      reported.delete(id);
      return;
    }
    if (reported.has(id)) return;
    reported.add(id);
    logger.error("credential secret cannot be decrypted; the credential stays disabled", {
      credentialId: id,
      cause: "sealed with another server secret (TOKENPOOL_SECRET changed?)",
    });
  });
  const bound = new Map<PropertyKey, unknown>();
  // A Proxy rather than a copy: every other member (and any a later contract adds) reaches the
  // adapter itself, with `this` bound to it (adapters may be classes with private fields).
  return new Proxy(store, {
    get(target, prop) {
      if (prop === "credentials") return credentials;
      const v = Reflect.get(target, prop, target) as unknown;
      if (typeof v !== "function") return v;
      let f = bound.get(prop);
      if (f === undefined) {
        f = (v as (...args: unknown[]) => unknown).bind(target);
        bound.set(prop, f);
      }
      return f;
    },
  });
}

/**
 * Runs `fn` under the store lock that refreshes of credential `id` take, so that a secret
 * rewritten here never overwrites a token a refresh has just stored. Resolves with `undefined`
 * when the lock could not be taken within `waitMs`.
 */
export async function withCredentialLock<T>(
  store: Store,
  id: string,
  fn: () => Promise<T>,
  waitMs = 10_000,
): Promise<T | undefined> {
  const name = `${REFRESH_LOCK_PREFIX}${id}`;
  const deadline = Date.now() + waitMs;
  for (;;) {
    const token = await store.acquireLock(name, 60_000);
    if (token !== null) {
      try {
        return await fn();
      } finally {
        await store.releaseLock(name, token).catch(() => false);
      }
    }
    if (Date.now() > deadline) return undefined;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Rewrites sealed every credential secret an earlier version stored in plaintext; a gateway does
 * it when it starts. Each rewrite re-reads the record under the credential's refresh lock and
 * patches only `secret`, so several instances starting together seal each record once (the
 * others find it sealed) and a refresh in flight is never lost. Resolves with how many were
 * sealed. Does nothing on an adapter with `capabilities.plaintextSecrets`.
 */
export async function sealPlaintextSecrets(
  store: Store,
  box: SecretBox,
  logger: Logger,
): Promise<number> {
  if (store.capabilities.plaintextSecrets === true) return 0;
  let sealed = 0;
  for (const rec of await store.credentials.list()) {
    if (!hasPlaintextSecret(rec.secret)) continue;
    const done = await withCredentialLock(store, rec.id, async () => {
      const now = await store.credentials.get(rec.id);
      if (!now || !hasPlaintextSecret(now.secret)) return false;
      await store.credentials.update(rec.id, { secret: sealSecret(box, now.secret) });
      return true;
    });
    if (done === undefined)
      logger.warn("could not seal a plaintext credential secret now (its lock is busy)", {
        credentialId: rec.id,
      });
    else if (done) sealed++;
  }
  if (sealed > 0) logger.info("sealed plaintext credential secrets", { count: sealed });
  return sealed;
}
