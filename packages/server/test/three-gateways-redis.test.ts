/** The three-gateway tests ({@link describeThreeGateways}) on one redis-server. */
import { redisBackend } from "./shared-stores.js";
import { describeThreeGateways } from "./three-gateways.js";

describeThreeGateways(redisBackend);
