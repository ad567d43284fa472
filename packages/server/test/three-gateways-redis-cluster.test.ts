/** The three-gateway tests ({@link describeThreeGateways}) on a Redis Cluster of three masters (each gateway gets the cluster's `redis://h1:p1,h2:p2,h3:p3` URL). */
import { redisClusterBackend } from "./shared-stores.js";
import { describeThreeGateways } from "./three-gateways.js";

describeThreeGateways(redisClusterBackend);
