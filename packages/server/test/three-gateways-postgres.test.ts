/** The three-gateway tests ({@link describeThreeGateways}) on one PostgreSQL database. */
import { postgresStore } from "@tokenpool/store-postgres";
import { startPostgresServer } from "@tokenpool/testing/postgres-server";
import { describeThreeGateways } from "./three-gateways.js";

describeThreeGateways({
  name: "PostgreSQL",
  async start(tag) {
    const pg = await startPostgresServer();
    const schema = `tp_${tag.replace(/\W/g, "_")}`;
    return {
      spec: `${pg.url}?schema=${schema}`,
      open: () => postgresStore({ connectionString: pg.url, schema }),
      stop: () => pg.stop(),
    };
  },
});
