/** The three-gateway tests ({@link describeThreeGateways}) on one PostgreSQL database. */
import { postgresBackend } from "./shared-stores.js";
import { describeThreeGateways } from "./three-gateways.js";

describeThreeGateways(postgresBackend);
