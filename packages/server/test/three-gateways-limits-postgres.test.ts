/** The admission tests across three gateways ({@link describeThreeGatewaysLimits}) on one PostgreSQL database. */
import { postgresBackend } from "./shared-stores.js";
import { describeThreeGatewaysLimits } from "./three-gateways-limits.js";

describeThreeGatewaysLimits(postgresBackend);
