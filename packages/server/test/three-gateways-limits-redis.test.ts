/** The admission tests across three gateways ({@link describeThreeGatewaysLimits}) on one redis-server. */
import { redisBackend } from "./shared-stores.js";
import { describeThreeGatewaysLimits } from "./three-gateways-limits.js";

describeThreeGatewaysLimits(redisBackend);
