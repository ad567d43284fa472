import type { Transport } from "./http.js";

/**
 * The calls new-api's token and user resources share (`api/token`, `api/user`): list, search,
 * get, update and delete by id, on the console envelope. Each method is generic in its answer,
 * so that `tokensApi` and `usersApi` give them their own types.
 */
export function consoleResource(t: Transport, path: "api/token" | "api/user") {
  const auth = "console" as const;
  return {
    list: <T>(query?: object) => t.envelope<T>("GET", `${path}/`, { auth, query: { ...query } }),
    search: <T>(query: object) =>
      t.envelope<T>("GET", `${path}/search`, { auth, query: { ...query } }),
    get: <T>(id: number) => t.envelope<T>("GET", `${path}/${id}`, { auth }),
    update: <T>(body: object) => t.envelope<T>("PUT", `${path}/`, { auth, json: body }),
    delete: async (id: number): Promise<void> => {
      await t.envelope("DELETE", `${path}/${id}`, { auth });
    },
  };
}
