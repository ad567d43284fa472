/**
 * The OpenAI-style billing routes one-api and new-api expose (`/v1/dashboard/billing/subscription`
 * and `/v1/dashboard/billing/usage`, also without `/v1`), which chat front-ends read to show a
 * key's balance. Each answers for the presented key only; errors are OpenAI's error object.
 *
 * @module
 */
import { json } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import {
  authorizeBalanceReader,
  type BalanceDeps,
  billingSubscription,
  billingUsage,
} from "../balance.js";
import { openaiError } from "./routes.js";

/**
 * `GET [/v1]/dashboard/billing/subscription` and `GET [/v1]/dashboard/billing/usage`. An
 * expired or exhausted key may read (a balance of 0 says more than an error); an unknown or
 * disabled key is a 401, and the key's IP allowlist applies.
 */
export function billingRoutes(deps: BalanceDeps): Route[] {
  const routes: Route[] = [];
  const add = (name: string, view: typeof billingSubscription | typeof billingUsage) => {
    const handle: Route["handle"] = async (ex) =>
      json(200, view((await authorizeBalanceReader(deps, ex)).key));
    for (const prefix of ["/v1", ""])
      routes.push({
        method: "GET",
        path: `${prefix}/dashboard/billing/${name}`,
        onError: openaiError,
        handle,
      });
  };
  add("subscription", billingSubscription);
  add("usage", billingUsage);
  return routes;
}
