import type {
  PoolTokenAddBody,
  PoolTokenAddedData,
  PoolTokenUpdateBody,
  PoolTokenView,
} from "@tokenpool/core";
import type { Transport } from "./http.js";

/** `client.pool`: antigravity2api's token API under `/v1/tokens` (the pool's OAuth accounts). */
export interface PoolApi {
  /** `GET /v1/tokens`: refresh tokens masked. */
  list(): Promise<PoolTokenView[]>;
  /** `POST /v1/tokens`: resolves with the new credential's id. */
  add(body: PoolTokenAddBody): Promise<PoolTokenAddedData>;
  /** `PUT /v1/tokens/{key}`, where `key` is the credential id (preferred) or its refresh token. */
  update(key: string, body: PoolTokenUpdateBody): Promise<void>;
  /** `DELETE /v1/tokens/{key}`. */
  delete(key: string): Promise<void>;
  /** `POST /v1/tokens/reload`: reloads the pool from the store. */
  reload(): Promise<void>;
}

export function poolApi(t: Transport): PoolApi {
  const auth = "console" as const;
  const path = (key: string) => `v1/tokens/${encodeURIComponent(key)}`;
  return {
    list: () => t.envelope("GET", "v1/tokens", { auth }),
    add: (body) => t.envelope("POST", "v1/tokens", { auth, json: body }),
    update: async (key, body) => {
      await t.envelope("PUT", path(key), { auth, json: body });
    },
    delete: async (key) => {
      await t.envelope("DELETE", path(key), { auth });
    },
    reload: async () => {
      await t.envelope("POST", "v1/tokens/reload", { auth });
    },
  };
}
